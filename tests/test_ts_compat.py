"""hookserve-ts: handlers written for TorchServe (``import ts...``) run unchanged on hookserve.

Needs the ``contrib/hookserve-ts`` distribution installed (tox installs it after the
project); skipped when no ``ts`` is importable. The end-to-end tests serve TorchServe's own
benchmark handler and model (``tests/data/torchserve_bench/``, copied from
``../shared/bench/``), packed once by ``hookserve archive`` and once by the real
torch-model-archiver, and compare the replies with the model's output computed here.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from helpers import Server, archive, post, serving
from hookserve.cli import main as hookserve_main

ts = pytest.importorskip("ts")

BENCH = Path(__file__).resolve().parent / "data" / "torchserve_bench"
ROW = [0.03 * i - 1.0 for i in range(64)]
LABELS = {str(i): f"class-{i}" for i in range(10)}
HAS_MODEL_ARCHIVER = importlib.util.find_spec("model_archiver") is not None


# ---------------------------------------------------------------------- import paths


def test_ts_is_provided_by_hookserve_ts():
    assert "hookserve-ts" in importlib.metadata.packages_distributions().get("ts", [])
    assert "hookserve" in importlib.metadata.distribution("hookserve-ts").requires
    assert ts.__version__ == "0.12.0"


@pytest.mark.parametrize(
    "ts_module, hookserve_module, name",
    [
        ("ts.context", "hookserve.context", "Context"),
        ("ts.context", "hookserve.context", "RequestProcessor"),
        ("ts.torch_handler.base_handler", "hookserve.handlers.base_handler", "BaseHandler"),
        ("ts.torch_handler.image_classifier", "hookserve.handlers.image_classifier", "ImageClassifier"),
        ("ts.torch_handler.text_classifier", "hookserve.handlers.text_classifier", "TextClassifier"),
        ("ts.utils.util", "hookserve.handlers.label_mapping", "load_label_mapping"),
        ("ts.utils.util", "hookserve.handlers.label_mapping", "map_class_to_label"),
        ("ts.utils.util", "hookserve.worker.module_loading", "list_classes_from_module"),
    ],
)
def test_names_are_hookserves_own_objects(ts_module, hookserve_module, name):
    ours = getattr(importlib.import_module(hookserve_module), name)
    assert getattr(importlib.import_module(ts_module), name) is ours


def test_util_helpers_keep_torchserves_contracts(tmp_path):
    from ts.utils.util import get_yaml_config, list_classes_from_module, load_label_mapping, map_class_to_label

    (tmp_path / "index_to_name.json").write_text(json.dumps({"0": ["n01", "cat"], "1": "dog"}))
    mapping = load_label_mapping(str(tmp_path / "index_to_name.json"))
    assert mapping == {"0": "cat", "1": "dog"}
    assert load_label_mapping(str(tmp_path / "missing.json")) is None
    assert map_class_to_label([[0.25, 0.75]], mapping) == [{"cat": 0.25, "dog": 0.75}]
    assert map_class_to_label([[0.75]], mapping, [[1]]) == [{"dog": 0.75}]
    assert map_class_to_label([[0.5, 0.5]]) == [{"0": 0.5, "1": 0.5}]

    (tmp_path / "model-config.yaml").write_text("minWorkers: 1\nhandler:\n  topk: 3\n")
    assert get_yaml_config(str(tmp_path / "model-config.yaml")) == {"minWorkers": 1, "handler": {"topk": 3}}

    from ts.torch_handler.base_handler import BaseHandler

    module = types.ModuleType("handler_module")
    exec(
        "from ts.torch_handler.base_handler import BaseHandler\nclass Mine(BaseHandler): pass\nclass Other: pass",
        module.__dict__,
    )
    assert [c.__name__ for c in list_classes_from_module(module)] == ["Mine", "Other"]
    assert [c.__name__ for c in list_classes_from_module(module, BaseHandler)] == ["Mine"]


def test_prediction_exception_carries_its_status_as_a_hookserve_error():
    from ts.utils.util import PredictionException

    from hookserve.errors import HookserveError, PredictionError

    error = PredictionException("input too long", 413)
    assert isinstance(error, PredictionError) and isinstance(error, HookserveError)
    assert (error.message, error.error_code, error.code) == ("input too long", 413, 413)
    assert str(error) == "input too long : 413"  # TorchServe's __str__
    assert error.to_dict() == {"code": 413, "type": "PredictionException", "message": "input too long"}
    default = PredictionException("no status given")
    assert (default.error_code, default.code) == (500, 500)
    # The class default stays as it was: a status belongs to one instance only.
    assert PredictionError.code == 500 and PredictionException.code == 500


# ---------------------------------------------------------------------- end to end

LABELLED_HANDLER = '''
    """A TorchServe-style classifier: the top classes by name, with TorchServe's helpers."""
    import torch
    from ts.context import Context
    from ts.torch_handler.base_handler import BaseHandler
    from ts.utils.util import map_class_to_label


    class LabelledMLP(BaseHandler):
        topk = 5

        def initialize(self, context: Context) -> None:
            super().initialize(context)
            self.topk = int(context.model_yaml_config.get("handler", {}).get("topk", self.topk))

        def preprocess(self, data: list) -> torch.Tensor:
            return torch.tensor([row.get("data") or row.get("body") for row in data], dtype=torch.float32)

        def postprocess(self, data: torch.Tensor) -> list:
            probs, classes = torch.topk(torch.softmax(data, dim=1), self.topk, dim=1)
            return map_class_to_label(probs.tolist(), self.mapping, classes.tolist())

        def handle(self, data: list, context: Context) -> list:
            replies = super().handle(data, context)
            for idx in range(len(replies)):
                context.set_response_header(idx, "x-topk", str(self.topk))
            return replies
'''

REFUSING_HANDLER = '''
    """Refuses bad input the TorchServe way: PredictionException with a status."""
    import torch
    from ts.torch_handler.base_handler import BaseHandler
    from ts.utils.util import PredictionException


    class Refusing(BaseHandler):
        def preprocess(self, data):
            rows = [row.get("data") or row.get("body") for row in data]
            for row in rows:
                if row == "no status":
                    raise PredictionException("refused without a status")
                if not isinstance(row, list) or len(row) != 64:
                    raise PredictionException(f"expected 64 numbers, got {row!r}", 422)
            return torch.tensor(rows, dtype=torch.float32)

        def postprocess(self, data):
            return data.argmax(dim=1).tolist()
'''


def bench_model_class() -> type:
    """The benchmark's ``MLP``, imported from the fixture under a private module name."""
    spec = importlib.util.spec_from_file_location("torchserve_bench_model", BENCH / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MLP


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The benchmark's files and a state dict in one source folder, and the model: (folder, model)."""
    src = tmp_path_factory.mktemp("ts-bench-src")
    for name in ("handler_mlp.py", "model.py"):
        shutil.copy(BENCH / name, src / name)
    mlp = bench_model_class()
    torch.manual_seed(7)
    torch.save(mlp().state_dict(), src / "state.pt")
    model = mlp()
    model.load_state_dict(torch.load(src / "state.pt", weights_only=True))
    return src, model.eval()


def outputs(model: torch.nn.Module, rows: list[list[float]]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor(rows, dtype=torch.float32))


# torch-model-archiver's flags, exactly as a TorchServe user runs it.
def archiver_flags(src: Path, name: str, store: Path) -> list[str]:
    return [
        "--model-name",
        name,
        "--version",
        "1.0",
        "--model-file",
        str(src / "model.py"),
        "--serialized-file",
        str(src / "state.pt"),
        "--handler",
        str(src / "handler_mlp.py"),
        "--export-path",
        str(store),
    ]


@pytest.fixture(scope="module")
def server(tmp_path_factory, bench):
    src, _ = bench
    work = tmp_path_factory.mktemp("ts-serve")
    store = work / "store"
    store.mkdir()
    models = []

    assert hookserve_main(["archive", *archiver_flags(src, "bench_hookserve", store)]) == 0
    models.append("bench_hookserve=bench_hookserve.mar")
    if HAS_MODEL_ARCHIVER:
        packed = subprocess.run(
            [sys.executable, "-m", "model_archiver.model_packaging", *archiver_flags(src, "bench_tma", store)],
            capture_output=True,
            text=True,
        )
        assert packed.returncode == 0, packed.stderr
        models.append("bench_tma=bench_tma.mar")

    weights = ["--model-file", str(src / "model.py"), "--serialized-file", str(src / "state.pt")]
    archive(
        work,
        "labelled",
        "handler.py",
        files={
            "handler.py": LABELLED_HANDLER,
            "index_to_name.json": json.dumps(LABELS),
            "model-config.yaml": "handler:\n  topk: 3\n",
        },
        flags=[*weights, "--extra-files", "index_to_name.json", "--config-file", "model-config.yaml"],
    )
    archive(work, "refusing", "handler.py", files={"handler.py": REFUSING_HANDLER}, flags=weights)
    models += ["labelled=labelled.mar", "refusing=refusing.mar"]

    with serving(Server(["--model-store", str(store), "--workers", "1", "--models", *models], work)) as srv:
        yield srv


@pytest.mark.parametrize("packer", ["hookserve", "tma"])
def test_torchserve_benchmark_handler_serves_the_models_output(server, bench, packer):
    if packer == "tma" and not HAS_MODEL_ARCHIVER:
        pytest.skip("torch-model-archiver is not installed")
    _, model = bench
    other = [0.5] * 64
    expected = outputs(model, [ROW, other])
    for row, scores in zip([ROW, other], expected, strict=True):
        reply = post(server, f"/predictions/bench_{packer}", json=row)
        assert reply.status_code == 200, reply.text
        assert reply.json()["class"] == int(scores.argmax())
        assert reply.json()["scores"] == pytest.approx(scores.tolist(), abs=1e-5)
    # The handler's other accepted bodies ({"data": ...}, {"instances": [...]}) reach it unchanged.
    assert post(server, f"/predictions/bench_{packer}", json={"data": ROW}).json()["class"] == int(expected[0].argmax())
    wrapped = post(server, f"/predictions/bench_{packer}", json={"instances": [other]})
    assert wrapped.json()["scores"] == pytest.approx(expected[1].tolist(), abs=1e-5)


def test_handler_with_ts_helpers_replies_with_named_top_classes(server, bench):
    _, model = bench
    probs, classes = torch.topk(torch.softmax(outputs(model, [ROW]), dim=1), 3, dim=1)
    reply = post(server, "/predictions/labelled", json=ROW)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-topk"] == "3"
    expected = {LABELS[str(c)]: p for c, p in zip(classes[0].tolist(), probs[0].tolist(), strict=True)}
    assert list(reply.json()) == list(expected)  # most probable first, as torch.topk orders them
    assert reply.json() == pytest.approx(expected, abs=1e-5)


def test_prediction_exception_sets_the_reply_status_and_message(server, bench):
    reply = post(server, "/predictions/refusing", json=[1, 2, 3])
    assert reply.status_code == 422, reply.text
    assert reply.json() == {
        "code": 422,
        "type": "PredictionException",
        "message": "expected 64 numbers, got [1, 2, 3]",
    }
    reply = post(server, "/predictions/refusing", data="no status", headers={"content-type": "text/plain"})
    assert reply.status_code == 500
    assert reply.json()["message"] == "refused without a status"
    # The worker keeps serving after a refusal.
    reply = post(server, "/predictions/refusing", json=ROW)
    assert reply.status_code == 200, reply.text
    assert reply.json() == int(outputs(bench[1], [ROW])[0].argmax())
