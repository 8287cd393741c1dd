"""The floor of the ResNet-18 workload, measured in-process with one torch thread, and the
reference top-5 each server must return.

    python floor.py WORKLOAD_DIR BATCH_SIZES REPS > floor.json     (e.g. "1 8" 20)

For each JPEG: preprocessing (decode + TorchServe's image_classifier transforms: Resize(256),
CenterCrop(224), ToTensor, Normalize) in ms per image, the reference top-5 (softmax, topk,
labels from index_to_name.json, as TorchServe's ``image_classifier`` replies), and per batch
size the model forward in ms per image (``inference_mode``, the batch made of copies of the
preprocessed image), medians over REPS after two unrecorded runs; and per batch size the
images per second of two processes preprocessing and forwarding batches at the same time
(``two_processes_rps``): the same work with both cores busy, as a 2-worker server has it.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms


def median_ms(fn, reps: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def two_processes_rps(serve_batch, batch_size: int, rounds: int) -> float:
    """Images per second of two processes each running ``rounds`` batches (preprocess and
    forward) at the same time: the floor of a 2-worker server measured with both cores busy,
    where they slow each other down (shared caches, memory bandwidth, the hypervisor)."""
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(2), ctx.Queue()

    def run() -> None:
        serve_batch()  # warm
        start.wait()
        t = time.perf_counter()
        for _ in range(rounds):
            serve_batch()
        results.put(time.perf_counter() - t)

    procs = [ctx.Process(target=run) for _ in range(2)]
    for proc in procs:
        proc.start()
    elapsed = max(results.get() for _ in procs)
    for proc in procs:
        proc.join()
    return 2 * rounds * batch_size / elapsed


def main(workload: Path, batch_sizes: list[int], reps: int) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, str(workload / "artifacts"))
    from model import ImageClassifier  # noqa: PLC0415 - the workload's own model file

    model = ImageClassifier()
    model.load_state_dict(torch.load(workload / "artifacts" / "resnet18_state.pt", weights_only=True))
    model.eval()
    labels = json.loads((workload / "artifacts" / "index_to_name.json").read_text())
    prep = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "images": {}}
    for entry in json.loads((workload / "images.json").read_text()):
        data = (workload / "images" / f"{entry['name']}.jpg").read_bytes()

        def preprocess(data=data) -> torch.Tensor:
            return prep(Image.open(io.BytesIO(data)))

        x = preprocess()
        with torch.inference_mode():
            probs = torch.softmax(model(x[None]), dim=1)
            p, c = torch.topk(probs, 5, dim=1)
        result = {
            "preprocess_ms": round(median_ms(preprocess, reps), 3),
            "top5": [[labels[str(int(k))], float(v)] for k, v in zip(c[0], p[0], strict=True)],
            "forward_ms_per_image": {},
        }
        result["two_processes_rps"] = {}
        for bs in batch_sizes:
            batch = x[None].repeat(bs, 1, 1, 1)

            def forward(batch=batch) -> None:
                with torch.inference_mode():
                    model(batch)

            result["forward_ms_per_image"][str(bs)] = round(median_ms(forward, max(3, reps // bs)) / bs, 3)

            def serve_batch(bs=bs, preprocess=preprocess) -> None:
                with torch.inference_mode():
                    model(torch.stack([preprocess() for _ in range(bs)]))

            result["two_processes_rps"][str(bs)] = round(two_processes_rps(serve_batch, bs, max(3, reps // bs)), 2)
        out["images"][entry["name"]] = result
        print(entry["name"], result, file=sys.stderr)
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(b) for b in sys.argv[2].split()], int(sys.argv[3]))
