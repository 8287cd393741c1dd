#!/usr/bin/env python3
"""The benchmark MLP on LitServe 0.2.19, with the contract of ../shared/bench's handler_mlp.py.

    python litserve_mlp.py --port 8090 --state mlp_state.pt --model-py ../shared/bench/model.py \
        [--workers 2] [--max-batch-size 8 --batch-timeout 0.005] [--no-fast-queue]

POST /predictions/mlp with a JSON list of 64 floats -> {"class": argmax, "scores": [10 floats]}.
The work per batch is the TorchServe handler's: one [N, 64] tensor from the N bodies, one
forward under inference_mode, argmax + tolist once, one dict per request.

LitServe 0.2.19 API used (read from its source, litserve/api.py and server.py):
  LitAPI(max_batch_size, batch_timeout, api_path)   -- batching moved from LitServer to LitAPI
  LitServer(api, accelerator="cpu", workers_per_device=N, fast_queue=...)
  LitServer.run(host, port, log_level, generate_client_file)
With accelerator="cpu" there is one device, so workers_per_device=N gives N inference worker
processes; run() starts as many uvicorn API-server processes (num_api_servers defaults to the
number of inference workers).  fast_queue=True (ZeroMQ responses; the docs recommend it above
100 req/s) and log_level="warning" (no per-request access log) are its fast settings.
Loopback only.  SIGTERM is turned into LitServe's own graceful shutdown.
"""

import argparse
import importlib.util
import os
import signal

import litserve as ls
import torch

IN_FEATURES = 64


def load_mlp_class(path):
    spec = importlib.util.spec_from_file_location("bench_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MLP


def check_row(row):
    if isinstance(row, dict):  # handler_mlp.py also accepts {"data": [...]}
        row = row.get("data", row)
    if not isinstance(row, list) or len(row) != IN_FEATURES:
        raise ValueError(f"expected a JSON list of {IN_FEATURES} numbers")
    return row


def replies(scores):
    classes = scores.argmax(dim=1).tolist()
    return [{"class": int(c), "scores": s} for c, s in zip(classes, scores.tolist(), strict=True)]


class MLPAPI(ls.LitAPI):
    def __init__(self, state_path, model_py, **kwargs):
        super().__init__(**kwargs)
        self.state_path = state_path
        self.model_py = model_py

    def setup(self, device):
        torch.set_num_threads(1)
        model = load_mlp_class(self.model_py)()
        model.load_state_dict(torch.load(self.state_path, map_location="cpu", weights_only=True))
        self.model = model.eval()

    def decode_request(self, request):
        return check_row(request)

    def predict(self, x):
        with torch.inference_mode():
            return replies(self.model(torch.tensor([x], dtype=torch.float32)))[0]

    def encode_response(self, output):
        return output


class BatchedMLPAPI(MLPAPI):
    """max_batch_size > 1: decode_request per request -> batch -> predict -> unbatch -> encode_response."""

    def batch(self, inputs):
        return torch.tensor(inputs, dtype=torch.float32)

    def predict(self, x):
        with torch.inference_mode():
            return self.model(x)

    def unbatch(self, output):
        return replies(output)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state", required=True, help="mlp_state.pt from make_models.py")
    ap.add_argument("--model-py", required=True, help="../shared/bench/model.py")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-batch-size", type=int, default=1)
    ap.add_argument("--batch-timeout", type=float, default=0.0, help="seconds")
    ap.add_argument("--no-fast-queue", dest="fast_queue", action="store_false")
    ap.add_argument("--log-level", default="warning")
    a = ap.parse_args()

    cls = BatchedMLPAPI if a.max_batch_size > 1 else MLPAPI
    api = cls(
        a.state, a.model_py, max_batch_size=a.max_batch_size, batch_timeout=a.batch_timeout, api_path="/predictions/mlp"
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=a.workers, fast_queue=a.fast_queue)

    main_pid = os.getpid()

    def on_term(signum, frame):
        if os.getpid() != main_pid:  # a forked uvicorn API server re-raising the SIGTERM it was sent
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt  # LitServer.run() shuts down its workers on KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    server.run(host="127.0.0.1", port=a.port, log_level=a.log_level, generate_client_file=False)


if __name__ == "__main__":
    main()
