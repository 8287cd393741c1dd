"""BaseHandler, the builtin loader and stages, and handler_plugin, with real torch models
and a real plugin manager."""

from __future__ import annotations

from pathlib import Path

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
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.plugins.handler_plugin import handler_plugin

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
    context = Context(archive.name, str(archive.model_dir), archive.manifest, 2, gpu, model_yaml_config=archive.config)
    context.hooks = Hooks(pm)
    context.archive = archive
    return context


def start(handler: BaseHandler, context: Context, headers: dict | None = None, batch: int = 2) -> None:
    """What the worker does: register the handler's overrides, initialize, open a batch."""
    plugin = handler_plugin(handler)
    if plugin is not None:
        context.hooks.pm.register(plugin)
    handler.initialize(context)
    context.start_batch([f"id{i}" for i in range(batch)], [headers or {"content-type": "application/json"}] * batch)


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return create_plugin_manager(third_party=False)


@pytest.fixture
def eager(tmp_path: Path) -> ModelArchive:
    (tmp_path / "model.py").write_text(MODEL_SOURCE)
    torch.save(WEIGHTS, tmp_path / "weights.pt")
    return make_archive(tmp_path, modelFile="model.py", serializedFile="weights.pt", handler="base_handler")


class Tracer:
    """A third-party wrapper: sees every stage of every handler."""

    def __init__(self) -> None:
        self.calls: list[str] = []

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
    def hookserve_preprocess(self, data):
        self.preprocessed = True
        return torch.zeros(len(data), 3)

    @hookimpl
    def hookserve_infer(self, handler, data):
        return handler.model(data) + 100


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


def test_without_hooks_is_a_clear_error(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    context = make_context(eager, pm)
    context.hooks = None
    with pytest.raises(RuntimeError, match="context.hooks is not set"):
        BaseHandler().initialize(context)


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


def test_describe_header(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    class Described(BaseHandler):
        def describe_handle(self):
            return {"inputs": "3 floats"}

    tracer = Tracer()
    pm.register(tracer)
    handler = Described()
    context = make_context(eager, pm)
    start(handler, context, headers={"describe": "True"}, batch=1)

    assert handler.handle([[1.0, 2.0, 3.0]], context) == [{"inputs": "3 floats"}]
    assert tracer.calls == []


def test_explain_header(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    tracer = Tracer()
    pm.register(tracer)
    handler = RowsHandler()
    context = make_context(eager, pm)
    start(handler, context, headers={"explain": "True"})

    rows = [{"data": [1.0, 2.0, 3.0], "target": 1}, {"data": [4.0, 5.0, 6.0]}]
    assert handler.handle(rows, context) == [{"target": 1, "raw": [1.0, 2.0, 3.0], "shape": [2, 3]}]
    assert handler.explain
    assert tracer.calls == ["preprocess", "explain"]


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
    handler = BaseHandler()
    context = make_context(eager, pm)
    start(handler, context)

    assert handler.handle(BATCH, context) == EXPECTED
    assert tracer.calls == ["preprocess", "infer", "postprocess"]


def test_handler_override_beats_plugins_which_beat_defaults(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    third_party = ThirdParty()
    pm.register(third_party)
    handler = RowsHandler()
    context = make_context(eager, pm)
    start(handler, context)

    rows = [{"data": [1.0, 2.0, 3.0]}, {"data": [4.0, 5.0, 6.0]}]
    # RowsHandler.preprocess ran (not the plugin's zeros), then the plugin's infer (+100),
    # then BaseHandler's postprocess.
    assert handler.handle(rows, context) == [[101.0, 102.0], [104.0, 105.0]]
    assert not third_party.preprocessed


def test_overridden_handle_runs_exactly_as_written(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    class OwnHandle(RowsHandler):
        def handle(self, data, context):
            return [f"own {self.preprocess(data).sum().item()}"]

    tracer, third_party = Tracer(), ThirdParty()
    pm.register(tracer)
    pm.register(third_party)
    handler = OwnHandle()
    context = make_context(eager, pm)
    start(handler, context, batch=1)

    assert handler.handle([{"data": [1.0, 2.0, 3.0]}], context) == ["own 6.0"]
    assert tracer.calls == []
    assert not third_party.preprocessed


def test_handler_plugin_answers_only_for_its_own_handler(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    rows_handler = RowsHandler()
    start(rows_handler, make_context(eager, pm))
    plain = BaseHandler()
    context = make_context(eager, pm)
    start(plain, context)

    assert plain.handle(BATCH, context) == EXPECTED


def test_handler_plugin_implements_only_overridden_stages(pm: pluggy.PluginManager) -> None:
    class Overrides(BaseHandler):
        def inference(self, data, *args, **kwargs):
            return data

        def explain_handle(self, data_preprocess, raw_data):
            return []

    assert handler_plugin(BaseHandler()) is None
    assert handler_plugin(object()) is None
    plugin = handler_plugin(Overrides())
    pm.register(plugin)
    hooks = {caller.name for caller in pm.get_hookcallers(plugin)}
    assert hooks == {"hookserve_infer", "hookserve_explain"}


def test_a_plugin_adapts_a_handler_the_builtin_does_not(eager: ModelArchive, pm: pluggy.PluginManager) -> None:
    """``hookserve_handler_plugin``: the worker asks the plugins to adapt the model's handler;
    a plugin's adapter comes before the builtin's (which knows only BaseHandler subclasses)."""
    from hookserve.worker.bootstrap import load_model

    class Stages:
        def __init__(self, handler):
            self.handler = handler

        @hookimpl(tryfirst=True)
        def hookserve_postprocess(self, handler, data):
            return ["adapted"] * len(data) if handler is self.handler else None

    class Adapter:
        seen: list = []

        @hookimpl
        def hookserve_handler_plugin(self, handler):
            self.seen.append(handler)
            return Stages(handler)

    adapter = Adapter()
    pm.register(adapter)
    entry, context = load_model(eager, Hooks(pm), batch_size=2)
    assert adapter.seen == [entry.handler] and pm.has_plugin(f"handler:{eager.name}")
    context.start_batch(["a", "b"], [{"content-type": "application/json"}] * 2)
    assert entry.handler.handle(BATCH, context) == ["adapted", "adapted"]
    assert Hooks(create_plugin_manager(third_party=False)).handler_plugin(handler=object()) is None
