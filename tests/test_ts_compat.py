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
        ("ts.torch_handler.vision_handler", "hookserve.handlers.vision_handler", "VisionHandler"),
        ("ts.torch_handler.image_segmenter", "hookserve.handlers.image_segmenter", "ImageSegmenter"),
        ("ts.torch_handler.object_detector", "hookserve.handlers.object_detector", "ObjectDetector"),
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


SUPPORTED_MODULES = [
    "ts",
    "ts.context",
    "ts.version",
    "ts.handler_utils",
    "ts.handler_utils.distributed",
    "ts.handler_utils.micro_batching",
    "ts.handler_utils.preprocess",
    "ts.handler_utils.text_utils",
    "ts.handler_utils.timer",
    "ts.handler_utils.utils",
    "ts.metrics",
    "ts.metrics.caching_metric",
    "ts.metrics.dimension",
    "ts.metrics.metric_abstract",
    "ts.metrics.metric_cache_abstract",
    "ts.metrics.metric_cache_errors",
    "ts.metrics.metric_type_enum",
    "ts.metrics.unit",
    "ts.model_service",
    "ts.torch_handler",
    "ts.torch_handler.base_handler",
    "ts.torch_handler.contractions",
    "ts.torch_handler.densenet_handler",
    "ts.torch_handler.distributed",
    "ts.torch_handler.image_classifier",
    "ts.torch_handler.image_segmenter",
    "ts.torch_handler.object_detector",
    "ts.torch_handler.request_envelope",
    "ts.torch_handler.request_envelope.base",
    "ts.torch_handler.request_envelope.body",
    "ts.torch_handler.request_envelope.json",
    "ts.torch_handler.text_classifier",
    "ts.torch_handler.text_handler",
    "ts.torch_handler.vision_handler",
    "ts.utils",
    "ts.utils.timeit_decorator",
    "ts.utils.util",
]
# Supported where the library they wrap is installed, as in TorchServe.
NEEDS_LIBRARY = {
    "ts.handler_utils.hf_batch_streamer": "transformers",
    "ts.utils.hf_utils": "huggingface_hub",
}
UNSUPPORTED_MODULES = {
    "ts.handler_utils.preprocess.dali": "DALI",
    "ts.handler_utils.distributed.deepspeed": "DeepSpeed",
    "ts.handler_utils.distributed.pt_pippy": "PiPPy",
    "ts.metrics.metric": "context.metrics",
    "ts.metrics.metric_cache_yaml_impl": "TorchServe's server",
    "ts.metrics.metric_collector": "TorchServe's server",
    "ts.metrics.metric_encoder": "TorchServe's server",
    "ts.metrics.metrics_store": "context.metrics",
    "ts.metrics.process_memory_metric": "TorchServe's server",
    "ts.metrics.system_metrics": "TorchServe's server",
    "ts.model_service.model_service": "legacy",
    "ts.torch_handler.dali_handler": "DALI",
    "ts.torch_handler.dali_image_classifier": "DALI",
    "ts.torch_handler.distributed.base_deepspeed_handler": "DeepSpeed",
    "ts.torch_handler.distributed.base_pippy_handler": "PiPPy",
    "ts.torch_handler.request_envelope.kserve": "KServe",
    "ts.torch_handler.request_envelope.kservev2": "KServe",
    "ts.torch_handler.trt_llm_handler": "TensorRT-LLM",
    "ts.torch_handler.vllm_handler": "vLLM",
    "ts.utils.setup_model_venv": "useVenv",
}
# TorchServe's server itself (its worker, launcher, frontend protocol) and its own tests:
# hookserve is the server, so no handler imports these and hookserve-ts has none of them.
SERVER_MODULES = {
    "ts.arg_parser",
    "ts.async_service",
    "ts.launcher",
    "ts.llm_launcher",
    "ts.model_loader",
    "ts.model_server",
    "ts.model_service_worker",
    "ts.protocol",
    "ts.protocol.otf_message_handler",
    "ts.service",
}


def test_every_torchserve_module_is_provided_or_refused(torchserve: Path) -> None:
    """TorchServe 0.12's own module list, against this package's: nothing left out."""
    root = torchserve / "ts"
    theirs = {
        ".".join(path.relative_to(torchserve).with_suffix("").parts).removesuffix(".__init__")
        for path in root.rglob("*.py")
        if "unit_tests" not in path.parts and "built-in" not in path.parts
    }
    classified = set(SUPPORTED_MODULES) | set(NEEDS_LIBRARY) | set(UNSUPPORTED_MODULES) | SERVER_MODULES
    assert theirs - classified == set()
    assert classified - theirs == set()


@pytest.mark.parametrize("module, library", sorted(NEEDS_LIBRARY.items()))
def test_modules_of_optional_libraries_import_where_the_library_is(module, library):
    if importlib.util.find_spec(library) is None:
        with pytest.raises(ImportError, match=library):
            importlib.import_module(module)
    else:
        assert importlib.import_module(module).__doc__


@pytest.mark.parametrize("module", SUPPORTED_MODULES)
def test_supported_modules_import(module):
    assert importlib.import_module(module).__doc__


@pytest.mark.parametrize("module, what", sorted(UNSUPPORTED_MODULES.items()))
def test_unsupported_modules_refuse_to_import_and_say_why(module, what):
    with pytest.raises(ImportError, match=f"^{module} is not supported by hookserve .*{what}") as refused:
        importlib.import_module(module)
    assert refused.value.name == module
    assert module not in sys.modules  # a second import fails the same way


def test_body_and_json_envelopes_unwrap_requests_and_wrap_replies():
    from ts.torch_handler.request_envelope.base import BaseEnvelope
    from ts.torch_handler.request_envelope.body import BodyEnvelope
    from ts.torch_handler.request_envelope.json import JSONEnvelope

    seen = []

    def handle(data, context):
        seen.append(data)
        return [len(item) for item in data] if data else data

    assert issubclass(BodyEnvelope, BaseEnvelope) and issubclass(JSONEnvelope, BaseEnvelope)
    assert BodyEnvelope(handle).handle([{"body": "abc"}, {"data": "de"}], None) == [3, 2]
    assert seen[-1] == ["abc", "de"]

    envelope = JSONEnvelope(handle)
    batch = [
        {"body": {"instances": ["a", "bc"]}},
        {"data": {"instances": [{"b64": "aGVsbG8="}]}},
        {"instances": [{"text": {"b64": "aGk="}, "n": 1}]},
    ]
    replies = envelope.handle(batch, None)
    assert seen[-1] == ["a", "bc", b"hello", {"text": b"hi", "n": 1}]
    assert [json.loads(reply) for reply in replies] == [
        {"predictions": [1, 2]},
        {"predictions": [5]},
        {"predictions": [2]},
    ]
    assert envelope.handle([], None) == []  # empty batches pass through


def hookserve_context(yaml_config: dict | None = None):
    from hookserve.context import Context

    return Context("m", "/nonexistent", {"model": {}}, 1, None, model_yaml_config=yaml_config)


def test_timed_adds_the_method_time_to_hookserves_metrics_only_when_profiling():
    from ts.handler_utils.timer import timed

    class Handler:
        def __init__(self, context):
            self.context = context

        @timed
        def preprocess(self, data):
            return [x * 2 for x in data]

    profiled = hookserve_context({"handler": {"profile": True}})
    assert Handler(profiled).preprocess([1, 2]) == [2, 4]
    assert Handler(profiled).preprocess([3]) == [6]
    timing = profiled.metrics.values["ts_handler_preprocess"]
    assert (timing.unit, timing.count) == ("ms", 2) and timing.total >= 0
    for config in ({"handler": {"profile": False}}, {"handler": {}}, None):
        quiet = hookserve_context(config)
        assert Handler(quiet).preprocess([1]) == [2]
        assert quiet.metrics.values == {}


def test_handler_utils_import_class_and_stream_only_within_a_batch():
    from ts.handler_utils.utils import import_class, send_intermediate_predict_response

    from hookserve.handlers.base_handler import BaseHandler

    assert import_class("base_handler.BaseHandler", module_prefix="ts.torch_handler") is BaseHandler
    assert import_class("hookserve.handlers.base_handler.BaseHandler") is BaseHandler
    with pytest.raises(ImportError, match="class:Nope not found in module:ts.context"):
        import_class("ts.context.Nope")
    # streaming itself is tested through HTTP in test_streaming.py
    with pytest.raises(RuntimeError, match="no batch is running"):
        send_intermediate_predict_response(["partial"], {0: "id"}, "Intermediate", 200, hookserve_context())


def test_metric_names_feed_hookserves_metrics():
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    context = hookserve_context()
    context.metrics.keep_records("1.0")
    dimension = Dimension("ModelName", "m")
    assert (str(dimension), dimension.to_dict()) == ("ModelName:m", {"Name": "ModelName", "Value": "m"})
    assert [t.value for t in MetricTypes] == ["counter", "gauge", "histogram"]
    context.metrics.add_counter("Loops", 3, dimensions=[dimension], metric_type=MetricTypes.COUNTER)
    assert [(r.name, r.value, r.dimensions) for r in context.metrics.take_records()] == [
        ("Loops", 3.0, {"ModelName": "m"})
    ]


def test_util_pt2_backends_and_deprecated():
    from ts.utils.util import CLEANUP_REGEX, PT2Backend, check_valid_pt2_backend, deprecated

    assert check_valid_pt2_backend("inductor") and PT2Backend("inductor") is PT2Backend.INDUCTOR
    assert not check_valid_pt2_backend("warp-drive")
    assert CLEANUP_REGEX.sub("", "<b>fish</b> &amp; chips") == "fish  chips"

    @deprecated("0.13", "new_fn")
    def old_fn(x):
        return x + 1

    with pytest.warns(PendingDeprecationWarning, match="old_fn is deprecated in 0.13 and moved to new_fn"):
        assert old_fn(1) == 2


def test_text_handler_cleans_and_tokenizes_without_torchtext():
    from ts.torch_handler.text_handler import TextHandler

    from hookserve.handlers.base_handler import BaseHandler

    class Texts(TextHandler):
        pass

    handler = Texts()
    assert isinstance(handler, BaseHandler) and handler.source_vocab is None
    assert handler._remove_html_tags("<p>caf&eacute; ok</p>") == "caf ok"
    assert handler._remove_accented_characters("café naïve") == "cafe naive"
    assert handler._remove_punctuation("a, b! c.") == handler._remove_puncutation("a, b! c.") == "a b c"
    # torchtext's basic_english tokenizer, token for token.
    assert handler._tokenize("Hello, World! It's (fine).") == [
        "hello",
        ",",
        "world",
        "!",
        "it",
        "'",
        "s",
        "(",
        "fine",
        ")",
        ".",
    ]
    # TorchServe's contraction table: first letter's case kept, apostrophes dropped after.
    assert handler._expand_contractions("Don't stop, it's y'all's") == "Do not stop, it is you alls"


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

ENVELOPED_HANDLER = '''
    """TensorFlow-Serving-style JSON in and out through TorchServe's JSONEnvelope, steps timed."""
    import torch
    from ts.handler_utils.timer import timed
    from ts.torch_handler.base_handler import BaseHandler
    from ts.torch_handler.request_envelope.json import JSONEnvelope


    class Enveloped(BaseHandler):
        @timed
        def preprocess(self, data):
            return torch.tensor(data, dtype=torch.float32)

        @timed
        def postprocess(self, data):
            return data.argmax(dim=1).tolist()

        def handle(self, data, context):
            return JSONEnvelope(super().handle).handle(data, context)
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
    archive(
        work,
        "enveloped",
        "handler.py",
        files={"handler.py": ENVELOPED_HANDLER, "model-config.yaml": "handler:\n  profile: true\n"},
        flags=[*weights, "--config-file", "model-config.yaml"],
    )
    models += ["labelled=labelled.mar", "refusing=refusing.mar", "enveloped=enveloped.mar"]

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


def test_json_envelope_handler_answers_instances_with_predictions(server, bench):
    _, model = bench
    rows = [ROW, [0.5] * 64, [-0.25] * 64]
    expected = outputs(model, rows).argmax(dim=1).tolist()
    reply = post(server, "/predictions/enveloped", json={"instances": rows})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": expected}
    reply = post(server, "/predictions/enveloped", json={"instances": [rows[2]]})
    assert reply.json() == {"predictions": expected[2:]}
