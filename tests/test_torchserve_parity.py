"""``BaseHandler``'s default stages against TorchServe 0.12's own (issue 14, parity).

Each case is one archive built by the real ``torch-model-archiver`` 0.12: TorchServe's backend
runs it extracted (``torchserve_reference``), hookserve serves the ``.mar`` over HTTP with
``batch_size`` 3, and every reply must equal TorchServe's (``parity.compare``). The vision
handlers' parity needs torchvision and lives in ``tests/torchvision``.
"""

from __future__ import annotations

import inspect
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from helpers import Server, post, serving
from parity import compare, torch_model_archiver
from torchserve_reference import Field, extract_archive, torchserve_replies

BATCH = 3


class Affine(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.tanh(self.linear(x))


# The eager archive's model file: the class above, for TorchServe's and hookserve's loaders.
MODEL_SOURCE = "import torch\n\n\n" + inspect.getsource(Affine)
# TorchServe's import path, unchanged: hookserve-ts provides it beside hookserve.
ROWS_HANDLER = """
import torch
from ts.torch_handler.base_handler import BaseHandler


class RowsHandler(BaseHandler):
    \"\"\"Only preprocess is the handler's: each request's JSON body is one row of the batch.\"\"\"

    def preprocess(self, data):
        return torch.tensor([row.get("data") or row.get("body") for row in data], dtype=torch.float32)
"""
# hookserve applies no service_envelope from the server config; a handler wraps its own handle.
ENVELOPED_HANDLER = """
from ts.torch_handler.base_handler import BaseHandler
from ts.torch_handler.request_envelope.json import JSONEnvelope


class EnvelopedHandler(BaseHandler):
    def handle(self, data, context):
        return JSONEnvelope(super().handle).handle(data, context)
"""
ROWS = [[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.75, 3.0], [-2.0, 0.125, 1.0, -0.5]]
INSTANCES = [ROWS[:2], ROWS[2:], ROWS]


def affine() -> torch.nn.Module:
    torch.manual_seed(14)
    return Affine().eval()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """The three archives: TorchScript + a preprocess-only subclass, eager ``--model-file`` + the
    same subclass, and TorchScript under ``base_handler`` (the JSON envelope case)."""
    work = tmp_path_factory.mktemp("base-parity")
    model = affine()
    torch.jit.script(model).save(str(work / "affine.pt"))
    torch.save(model.state_dict(), work / "affine_state.pt")
    for name, text in {"model.py": MODEL_SOURCE, "rows.py": ROWS_HANDLER, "enveloped.py": ENVELOPED_HANDLER}.items():
        (work / name).write_text(text)
    store = work / "store"
    torch_model_archiver(
        store, "scripted", "--serialized-file", str(work / "affine.pt"), "--handler", str(work / "rows.py")
    )
    torch_model_archiver(
        store,
        "eager",
        "--model-file",
        str(work / "model.py"),
        "--serialized-file",
        str(work / "affine_state.pt"),
        "--handler",
        str(work / "rows.py"),
    )
    torch_model_archiver(store, "base", "--serialized-file", str(work / "affine.pt"), "--handler", "base_handler")
    torch_model_archiver(
        store, "enveloped", "--serialized-file", str(work / "affine.pt"), "--handler", str(work / "enveloped.py")
    )
    return store


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory):
    names = ("scripted", "eager", "enveloped")
    args = ["--model-store", str(store), "--workers", "1", "--batch-size", str(BATCH), "--max-batch-delay", "3000"]
    srv = Server([*args, "--models", *[f"{name}={name}.mar" for name in names]], tmp_path_factory.mktemp("base-serve"))
    with serving(srv):
        yield srv


def served(server: Server, model: str, bodies: list) -> list:
    """hookserve's replies to ``bodies`` sent at once, so that they make one batch."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda body: post(server, f"/predictions/{model}", json=body), bodies))
    for reply in replies:
        assert reply.status_code == 200, reply.text
    return [json.loads(reply.content) for reply in replies]


def reference(torchserve: Path, store: Path, model: str, bodies: list, tmp: Path, **options) -> list:
    """TorchServe's replies to ``bodies`` as one batch, on the same archive extracted."""
    model_dir = extract_archive(store / f"{model}.mar", tmp / model)
    requests = [{"body": Field(json.dumps(body).encode(), "application/json")} for body in bodies]
    replies = torchserve_replies(torchserve, model_dir, requests, model_name=model, **options)
    for reply in replies:
        assert reply.status == 200, reply.body
    return [reply.json() for reply in replies]


def expected_rows(rows: list) -> list:
    with torch.inference_mode():
        return affine()(torch.tensor(rows)).tolist()


@pytest.mark.parametrize("model", ["scripted", "eager"])
def test_default_inference_and_postprocess(model, torchserve, store, server, tmp_path, parity_figures):
    """A subclass overriding only ``preprocess``: TorchServe's default ``inference`` (the model
    under inference_mode) and ``postprocess`` (``tolist``), TorchScript and eager models."""
    ours = served(server, model, ROWS)
    theirs = reference(torchserve, store, model, ROWS, tmp_path)
    parity_figures[f"base_handler {model}"] = compare(ours, theirs)
    compare(ours, expected_rows(ROWS))  # and both are the model's output, not just each other's


def test_json_envelope(torchserve, store, server, tmp_path, parity_figures):
    """TorchServe's ``base_handler`` behind its ``json`` service envelope, against hookserve's
    ``base_handler`` wrapped in hookserve-ts's ``JSONEnvelope`` by the handler (hookserve has no
    ``service_envelope`` setting): ``{"instances": ...}`` in, ``{"predictions": ...}`` out."""
    bodies = [{"instances": rows} for rows in INSTANCES]
    ours = served(server, "enveloped", bodies)
    theirs = reference(torchserve, store, "base", bodies, tmp_path, envelope="json")
    # The envelope's replies are JSON text: TorchServe's and hookserve's alike.
    ours, theirs = (
        [json.loads(reply) if isinstance(reply, str) else reply for reply in side] for side in (ours, theirs)
    )
    parity_figures["base_handler json envelope"] = compare(ours, theirs)
    compare(ours, [{"predictions": expected_rows(rows)} for rows in INSTANCES])
