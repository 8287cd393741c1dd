"""BaseHandler, the builtin loader and stages, and handler_plugin, with real torch models
and a real plugin manager; the stage hooks run as a model worker runs them (load_model, then
a batch through BatchRunner)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pluggy
import pytest
import torch

from helpers import folder_archive
from hookserve.archive.reading import ModelArchive
from hookserve.context import Context
from hookserve.errors import ArchiveError
from hookserve.handlers.base_handler import BaseHandler
from hookserve.handlers.label_mapping import load_label_mapping, map_class_to_label
from hookserve.hookspecs import hookimpl
from hookserve.pipeline_types import Model
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.plugins.handler_plugin import handler_plugin
from hookserve.wire.framing import Field, Reply, WorkRequest
from hookserve.worker.batch import BatchRunner
from hookserve.worker.bootstrap import ArchiveLoader, load_model
from hookserve.worker.handler_entry import HandlerEntry

pytestmark = pytest.mark.usefixtures("forget_archive_modules")

# y = (x0, x1): predictable outputs without training.
WEIGHTS = {"linear.weight": torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), "linear.bias": torch.zeros(2)}
MODEL_SOURCE = """
import torch



class FirstTwo(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.linear(x)
"""
BATCH = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
EXPECTED = [[1.0, 2.0], [4.0, 5.0]]


class FirstTwo(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.linear.load_state_dict({k.removeprefix("linear."): v for k, v in WEIGHTS.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def make_archive(model_dir: Path, **model: str) -> ModelArchive:
    return folder_archive(model_dir, name="tiny", **model)


def make_context(archive: ModelArchive, pm: pluggy.PluginManager, gpu: int | None = None) -> Context:
    """A context whose ``load_model()`` reaches ``hookserve_load``, as a worker's does."""
    context = Context(archive.name, str(archive.model_dir), archive.manifest, 2, gpu, model_yaml_config=archive.config)
    context.model_loader = ArchiveLoader(Hooks(pm), archive, context)
    return context


def start(handler: BaseHandler, context: Context, headers: dict | None = None, batch: int = 2) -> None:
    """TorchServe's way: initialize, open a batch; ``handler.handle(data, context)`` runs it."""
    handler.initialize(context)
    context.start_batch([f"id{i}" for i in range(batch)], [headers or {"content-type": "application/json"}] * batch)


def load_in_worker(archive: ModelArchive, pm: pluggy.PluginManager, handler: object) -> BatchRunner:
    """What a model worker does with ``handler``: adapt it into its plugin, initialize it."""
    hooks = Hooks(pm)
    model, context = load_model(
        archive, hooks, batch_size=2, entry=HandlerEntry(handler, handler.initialize, handler.handle)
    )
    return BatchRunner(model, context)


def run_batch(runner: BatchRunner, rows: list, kind: str = "predict") -> list[Reply]:
    """One batch as the worker gets it from a frontend: each row's keys are JSON fields."""
    requests = [
        WorkRequest(f"id{i}", kind, {}, [Field(k, "application/json", orjson.dumps(v)) for k, v in row.items()], i)
        for i, row in enumerate(rows)
    ]
    return runner.run(requests)


def answers(replies: list[Reply]) -> list:
    assert all(r.status == 200 for r in replies), [r.body for r in replies]
    return [orjson.loads(r.body) if r.content_type == "application/json" else r.body.decode() for r in replies]


def serve(archive: ModelArchive, pm: pluggy.PluginManager, handler: object, rows: list, kind: str = "predict") -> list:
    return answers(run_batch(load_in_worker(archive, pm, handler), rows, kind))


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return create_plugin_manager(third_party=False)


@pytest.fixture
def eager(tmp_path: Path) -> ModelArchive:
    (tmp_path / "model.py").write_text(MODEL_SOURCE)
    torch.save(WEIGHTS, tmp_path / "weights.pt")
    return make_archive(tmp_path, modelFile="model.py", serializedFile="weights.pt", handler="base_handler")


def twin(archive: ModelArchive, name: str) -> ModelArchive:
    """Another model with the same files, so two models share one plugin manager."""
    folder = archive.model_dir / name
    folder.mkdir()
    files = {f: (archive.model_dir / f).read_text() for f in ("model.py",)}
    (folder / "weights.pt").write_bytes((archive.model_dir / "weights.pt").read_bytes())
    return folder_archive(folder, files, name=name, modelFile="model.py", serializedFile="weights.pt")


class Tracer:
    """A third-party wrapper: sees every stage of every handler."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl(wrapper=True)
    def hookserve_handle_batch(self, batch):
        self.calls.append(f"batch {batch.kind} {len(batch)}")
        return (yield)

    @hookimpl(wrapper=True)
    def hookserve_preprocess(self):
        self.calls.append("preprocess")
        return (yield)

    @hookimpl(wrapper=True)
    def hookserve_infer(self):
        self.calls.append("infer")
        return (yield)

    @hookimpl(wrapper=True)
    def hookserve_postprocess(self):
        self.calls.append("postprocess")
        return (yield)

    @hookimpl(wrapper=True)
    def hookserve_explain(self):
        self.calls.append("explain")
        return (yield)


class ThirdParty:
    """An installed plugin with its own preprocess and infer."""

    def __init__(self) -> None:
        self.preprocessed = False

    @hookimpl
    def hookserve_preprocess(self, batch):
        self.preprocessed = True
        return torch.zeros(len(batch), 3)

    @hookimpl
    def hookserve_infer(self, model, data):
        return model.loaded(data) + 100


class RowsHandler(BaseHandler):
    """Takes ``{"data": [...], "target": n}`` rows: overrides preprocess only."""

    def preprocess(self, data):
        return torch.tensor([row["data"] for row in data])

    def get_insights(self, tensor_data, raw_data, target):
        return [{"target": target, "raw": raw_data, "shape": list(tensor_data.shape)}]


# --- loading ---------------------------------------------------------------------------


def test_eager_model_file_and_state_dict(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    handler = BaseHandler()
    context = make_context(eager, pm)
    start(handler, context)

    assert type(handler.model).__name__ == "FirstTwo"
    assert not handler.model.training
    assert handler.device == torch.device("cpu") and handler.map_location == "cpu"
    assert handler.manifest["model"]["modelName"] == "tiny"
    assert handler.initialized
    assert handler.handle(BATCH, context) == EXPECTED
    assert context.metrics.values["HandlerTime"].count == 1
    assert context.metrics.values["HandlerTime"].unit == "ms"


def test_torchscript(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    torch.jit.script(FirstTwo()).save(str(tmp_path / "model.pt"))
    archive = make_archive(tmp_path, serializedFile="model.pt", handler="base_handler")
    handler = BaseHandler()
    context = make_context(archive, pm)
    start(handler, context)

    assert isinstance(handler.model, torch.jit.ScriptModule)
    assert handler.handle(BATCH, context) == EXPECTED


def test_torch_export_program(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    program = torch.export.export(
        FirstTwo().eval(), (torch.zeros(2, 3),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, tmp_path / "model.pt2")
    archive = make_archive(tmp_path, serializedFile="model.pt2", handler="base_handler")
    handler = BaseHandler()
    context = make_context(archive, pm)
    start(handler, context, batch=3)

    assert handler.handle(BATCH + [[7.0, 8.0, 9.0]], context) == EXPECTED + [[7.0, 8.0]]


def test_gpu_id_without_cuda_runs_on_cpu(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    handler = BaseHandler()
    start(handler, make_context(eager, pm, gpu=0))
    assert handler.device == torch.device("cpu")


def test_no_model_files_is_a_clear_error(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    archive = make_archive(tmp_path, handler="base_handler")
    with pytest.raises(RuntimeError, match="no plugin could load model 'tiny': serialized file None"):
        BaseHandler().initialize(make_context(archive, pm))


def test_model_file_needs_exactly_one_module_class(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    (tmp_path / "model.py").write_text(MODEL_SOURCE + "\n\nclass Other(torch.nn.Module):\n    pass\n")
    archive = make_archive(tmp_path, modelFile="model.py")
    expected = (
        r"model 'tiny': .*model.py must define exactly one torch.nn.Module subclass, found \['FirstTwo', 'Other'\]"
    )
    with pytest.raises(ArchiveError, match=expected):
        BaseHandler().initialize(make_context(archive, pm))


def test_state_dict_is_loaded_weights_only(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    (tmp_path / "model.py").write_text(MODEL_SOURCE)
    torch.save(FirstTwo(), tmp_path / "weights.pt")  # a pickled module, not a state dict
    archive = make_archive(tmp_path, modelFile="model.py", serializedFile="weights.pt")
    with pytest.raises(
        ArchiveError, match=r"model 'tiny': cannot load .* state dict 'weights.pt' \(weights_only=True\)"
    ):
        BaseHandler().initialize(make_context(archive, pm))


def test_state_dict_without_model_file_explains_itself(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    torch.save(WEIGHTS, tmp_path / "weights.pt")
    archive = make_archive(tmp_path, serializedFile="weights.pt")
    with pytest.raises(ArchiveError, match=r"cannot load 'weights.pt' as TorchScript \(for a state dict, name"):
        BaseHandler().initialize(make_context(archive, pm))


def test_torchserve_style_initialize_with_loading_helpers(tmp_path: Path, pm: pluggy.PluginManager) -> None:
    (tmp_path / "model.py").write_text(MODEL_SOURCE)
    torch.save(WEIGHTS, tmp_path / "weights.pt")
    torch.jit.script(FirstTwo()).save(str(tmp_path / "scripted.pt"))
    archive = make_archive(tmp_path, modelFile="model.py", serializedFile="weights.pt")

    class OwnInitialize(BaseHandler):
        def initialize(self, context):
            model_dir = context.system_properties["model_dir"]
            self.device = torch.device("cpu")
            self.eager = self._load_pickled_model(model_dir, "model.py", f"{model_dir}/weights.pt")
            self.model = self._load_torchscript_model(f"{model_dir}/scripted.pt")
            self.initialized = True

    handler = OwnInitialize()
    context = make_context(archive, pm)
    start(handler, context)

    assert type(handler.eager).__name__ == "FirstTwo"
    assert handler.eager(torch.tensor(BATCH)).tolist() == EXPECTED
    assert handler.handle(BATCH, context) == EXPECTED


def test_without_a_model_loader_is_a_clear_error(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    context = make_context(eager, pm)
    context.model_loader = None
    with pytest.raises(RuntimeError, match="model 'tiny': this context has no model loader"):
        BaseHandler().initialize(context)


def test_the_model_is_loaded_once_and_only_when_asked(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    """``super().initialize`` loads once; a class that sets ``self.model`` itself loads nothing."""

    class Counter:
        loads = 0

        @hookimpl(tryfirst=True)
        def hookserve_load(self, archive, context):
            self.loads += 1

    counter = Counter()
    pm.register(counter)

    class Extends(RowsHandler):
        def initialize(self, context):
            super().initialize(context)
            self.again = context.load_model()

    runner = load_in_worker(eager, pm, Extends())
    assert counter.loads == 1 and runner.model.handler.again is runner.model.loaded
    assert answers(run_batch(runner, [{"data": row} for row in BATCH])) == EXPECTED

    class OwnModel(RowsHandler):
        def initialize(self, context):
            self.device = torch.device("cpu")
            self.model = FirstTwo().eval()

    runner = load_in_worker(folder_archive(eager.model_dir / "own", name="own"), pm, OwnModel())
    assert counter.loads == 1
    assert answers(run_batch(runner, [{"data": row} for row in BATCH])) == EXPECTED


# --- index_to_name.json ----------------------------------------------------------------


def test_index_to_name_mapping(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    handler = BaseHandler()
    handler.initialize(make_context(eager, pm))
    assert handler.mapping is None

    (eager.model_dir / "index_to_name.json").write_text('{"0": "cat", "1": ["n02", "dog"]}')
    handler.initialize(make_context(eager, pm))
    assert handler.mapping == {"0": "cat", "1": "dog"}
    assert map_class_to_label([[0.3, 0.7]], handler.mapping) == [{"cat": 0.3, "dog": 0.7}]
    assert map_class_to_label([[0.9], [0.8]], handler.mapping, [[1], [0]]) == [{"dog": 0.9}, {"cat": 0.8}]
    assert map_class_to_label([[0.3, 0.7]]) == [{"0": 0.3, "1": 0.7}]


def test_label_mapping_forms(tmp_path: Path) -> None:
    path = tmp_path / "index_to_name.json"
    path.write_text('{"object_type_names": ["person", "bicycle"]}')
    assert load_label_mapping(path) == {"0": "person", "1": "bicycle"}
    path.write_text('["cat"]')
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_label_mapping(path)
    path.write_text('{"0": 3}')
    with pytest.raises(ValueError, match="label of class '0' must be a str"):
        load_label_mapping(path)


# --- describe and explain headers ------------------------------------------------------


class Described(BaseHandler):
    def describe_handle(self):
        return {"inputs": "3 floats"}


def test_describe_header(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    """TorchServe's handle: the describe header picks describe_handle."""
    handler = Described()
    context = make_context(eager, pm)
    start(handler, context, headers={"describe": "True"}, batch=1)

    assert handler.handle([[1.0, 2.0, 3.0]], context) == [{"inputs": "3 floats"}]


def test_describe_batch(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    tracer = Tracer()
    pm.register(tracer)
    runner = load_in_worker(eager, pm, Described())

    assert answers(run_batch(runner, [{}], kind="describe")) == [{"inputs": "3 floats"}]
    assert tracer.calls == ["batch describe 1"]  # no stage ran
    assert answers(run_batch(load_in_worker(twin(eager, "b"), pm, BaseHandler()), [{}], kind="describe")) == [None]


def test_explain_header(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    """TorchServe's handle: the explain header picks explain_handle."""
    handler = RowsHandler()
    context = make_context(eager, pm)
    start(handler, context, headers={"explain": "True"})

    rows = [{"data": [1.0, 2.0, 3.0], "target": 1}, {"data": [4.0, 5.0, 6.0]}]
    assert handler.handle(rows, context) == [{"target": 1, "raw": [1.0, 2.0, 3.0], "shape": [2, 3]}]
    assert handler.explain


def test_explain_batch(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    """The typed batch kind picks the explain stage; the handler still finds TorchServe's header."""
    tracer = Tracer()
    pm.register(tracer)

    class Headers(RowsHandler):
        def get_insights(self, tensor_data, raw_data, target):
            return [self.context.get_request_header(0, "explain")] * len(tensor_data)

    runner = load_in_worker(eager, pm, Headers())
    rows = [{"data": [1.0, 2.0, 3.0], "target": 1}, {"data": [4.0, 5.0, 6.0]}]
    assert answers(run_batch(runner, rows, kind="explain")) == ["True", "True"]
    assert runner.model.handler.explain
    assert tracer.calls == ["batch explain 2", "preprocess", "explain"]


def test_explain_without_get_insights(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    handler = BaseHandler()
    context = make_context(eager, pm)
    start(handler, context, headers={"explain": "True"})
    with pytest.raises(NotImplementedError, match="BaseHandler cannot explain.*implement get_insights"):
        handler.handle(BATCH, context)


# --- stages as hooks -------------------------------------------------------------------


def test_wrapper_sees_every_stage_in_order(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    tracer = Tracer()
    pm.register(tracer)

    assert serve(eager, pm, RowsHandler(), [{"data": row} for row in BATCH]) == EXPECTED
    assert tracer.calls == ["batch predict 2", "preprocess", "infer", "postprocess"]


def test_handler_override_beats_plugins_which_beat_defaults(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    third_party = ThirdParty()
    pm.register(third_party)

    rows = [{"data": [1.0, 2.0, 3.0]}, {"data": [4.0, 5.0, 6.0]}]
    # RowsHandler.preprocess ran (not the plugin's zeros), then the plugin's infer (+100),
    # then BaseHandler's postprocess.
    assert serve(eager, pm, RowsHandler(), rows) == [[101.0, 102.0], [104.0, 105.0]]
    assert not third_party.preprocessed


def test_base_handler_handle_runs_its_own_methods(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    """``BaseHandler.handle`` is TorchServe's: plain method calls, whatever plugins are installed."""
    tracer, third_party = Tracer(), ThirdParty()
    pm.register(tracer)
    pm.register(third_party)
    handler = RowsHandler()
    context = make_context(eager, pm)
    start(handler, context)

    assert handler.handle([{"data": row} for row in BATCH], context) == EXPECTED
    assert tracer.calls == [] and not third_party.preprocessed


def test_overridden_handle_runs_exactly_as_written(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    class OwnHandle(RowsHandler):
        def handle(self, data, context):
            return [f"own {self.preprocess(data).sum().item()}"]

    tracer, third_party = Tracer(), ThirdParty()
    pm.register(tracer)
    pm.register(third_party)

    assert serve(eager, pm, OwnHandle(), [{"data": [1.0, 2.0, 3.0]}]) == ["own 6.0"]
    assert tracer.calls == ["batch predict 1"]  # the whole batch, none of its stages
    assert not third_party.preprocessed


def test_super_handle_runs_the_stages_as_methods(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    class Around(RowsHandler):
        def handle(self, data, context):
            return [{"wrapped": reply} for reply in super().handle(data, context)]

    tracer = Tracer()
    pm.register(tracer)
    rows = [{"data": row} for row in BATCH]
    assert serve(eager, pm, Around(), rows) == [{"wrapped": reply} for reply in EXPECTED]
    assert tracer.calls == ["batch predict 2"]


def test_handler_plugin_answers_only_for_its_own_handler(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    class Zeros(RowsHandler):
        def preprocess(self, data):
            return torch.zeros(len(data), 3)

    load_in_worker(twin(eager, "zeros"), pm, Zeros())
    assert serve(eager, pm, RowsHandler(), [{"data": row} for row in BATCH]) == EXPECTED


def test_handler_plugin_implements_only_overridden_stages(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    class Overrides(BaseHandler):
        def inference(self, data, *args, **kwargs):
            return data

        def explain_handle(self, data_preprocess, raw_data):
            return []

    class Plain:
        def initialize(self, context):
            pass

        def handle(self, data, context):
            return data

    def adapted(handler: object) -> object:
        return handler_plugin(Model("m", "1.0", eager, handler, "cpu", Hooks(pm)))

    def hooks_of(plugin: object) -> set[str]:
        pm.register(plugin)
        return {caller.name for caller in pm.get_hookcallers(plugin)}

    assert adapted(BaseHandler()) is None
    assert adapted(object()) is None
    assert hooks_of(adapted(Overrides())) == {"hookserve_infer", "hookserve_explain"}
    # what owns its handle implements the whole batch
    assert hooks_of(adapted(Plain())) == {"hookserve_handle_batch"}
    assert hooks_of(adapted(lambda data, context: data)) == {"hookserve_handle_batch"}


def test_a_plugin_adapts_a_handler_the_builtin_does_not(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    """``hookserve_handler_plugin``: the worker asks the plugins to adapt the model's handler;
    a plugin's adapter comes before the builtin's."""

    class Stages:
        def __init__(self, handler):
            self.handler = handler

        @hookimpl(tryfirst=True)
        def hookserve_preprocess(self, model, batch):
            return torch.tensor([row["data"] for row in batch.data]) if model.handler is self.handler else None

        @hookimpl(tryfirst=True)
        def hookserve_postprocess(self, model, data):
            return ["adapted"] * len(data) if model.handler is self.handler else None

    class Adapter:
        seen: list = []

        @hookimpl
        def hookserve_handler_plugin(self, model):
            self.seen.append(model)
            return Stages(model.handler)

    adapter = Adapter()
    pm.register(adapter)
    hooks = Hooks(pm)
    model, context = load_model(eager, hooks, batch_size=2)
    assert adapter.seen == [model] and pm.has_plugin(f"handler:{eager.name}")
    assert answers(run_batch(BatchRunner(model, context), [{"data": row} for row in BATCH])) == [
        "adapted",
        "adapted",
    ]
    nothing = Model("m", "1.0", eager, object(), "cpu", hooks)
    assert Hooks(create_plugin_manager(third_party=False)).handler_plugin(model=nothing) is None
