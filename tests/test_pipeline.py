"""The worker owns the pipeline: a plugin installed as a real distribution wraps the
whole-batch hook of every kind of handler, decodes a request body and encodes a reply, on a
real server; a stage that no plugin answers is an error that names it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import requests
import torch

from helpers import Server, archive, fake_distribution, folder_archive, pythonpath, serving
from hookserve.hookspecs import hookimpl
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.wire.framing import Field, WorkRequest
from hookserve.worker.batch import BatchRunner
from hookserve.worker.bootstrap import load_model
from hookserve.worker.handler_entry import HandlerEntry

# A third-party plugin: sees every batch, reads text/csv bodies, writes {"csv": [...]} replies as CSV.
PLUGIN = """
    from hookserve.hookspecs import hookimpl
    from hookserve.pipeline_types import EncodedOutput


    @hookimpl(wrapper=True)
    def hookserve_handle_batch(model, batch, context):
        replies = yield
        for idx in range(len(batch)):
            context.set_response_header(idx, "x-batch-seen", f"{model.name} {batch.kind} {len(batch)}")
        return replies


    @hookimpl
    def hookserve_decode_input(content_type, data):
        if content_type.startswith("text/csv"):
            return [float(value) for value in data.decode().split(",")]
        return None


    @hookimpl
    def hookserve_encode_output(item):
        if isinstance(item, dict) and list(item) == ["csv"]:
            return EncodedOutput(",".join(str(v) for v in item["csv"]).encode(), "text/csv")
        return None
"""

FUNCTION_HANDLER = """
    def handle(data, context):
        if data is None:
            return None
        return [{"csv": row["body"]} for row in data]
"""

PLAIN_CLASS = """
    class Plain:
        def initialize(self, context):
            self.ready = True

        def handle(self, data, context):
            return [{"csv": row["body"]} for row in data]
"""

OWN_HANDLE = """
    import torch

    from hookserve.handlers import BaseHandler


    class OwnHandle(BaseHandler):
        def handle(self, data, context):
            with torch.inference_mode():
                scores = self.model(torch.tensor([row["body"] for row in data]))
            return [{"csv": row} for row in scores.tolist()]
"""

STAGES = """
    import torch

    from hookserve.handlers import BaseHandler


    class Stages(BaseHandler):
        def preprocess(self, data):
            return torch.tensor([row["body"] for row in data])

        def postprocess(self, data):
            return [{"csv": row} for row in data.tolist()]
"""

ROW = [1.0, 2.0, 3.0]
# y = (x0, x1): predictable outputs without training.
FIRST_TWO = "1.0,2.0"


def first_two(path: Path) -> Path:
    """A TorchScript ``Linear(3, 2)`` that answers the first two inputs."""
    linear = torch.nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        linear.bias.zero_()
    torch.jit.script(linear).save(str(path))
    return path


@pytest.fixture(scope="module")
def plugin_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    site = work / "site"
    fake_distribution(site, "batch-seen", "0.1", {"batch_seen": "batch_seen_plugin"}, {"batch_seen_plugin": PLUGIN})
    weights = ["--serialized-file", str(first_two(work / "first_two.pt"))]
    archive(work, "fn", "fn_handler.py", files={"fn_handler.py": FUNCTION_HANDLER})
    archive(work, "plain", "plain.py", files={"plain.py": PLAIN_CLASS})
    archive(work, "own", "own.py", files={"own.py": OWN_HANDLE}, flags=weights)
    archive(work, "stages", "stages.py", files={"stages.py": STAGES}, flags=weights)
    models = ["fn.mar", "plain.mar", "own.mar", "stages.mar"]
    server = Server(
        ["--model-store", str(work / "store"), "--workers", "1", "--models", *models],
        work,
        {"PYTHONPATH": pythonpath(site)},
    )
    with serving(server):
        yield server


@pytest.mark.parametrize(
    ("model", "answer"), [("fn", "1.0,2.0,3.0"), ("plain", "1.0,2.0,3.0"), ("own", FIRST_TWO), ("stages", FIRST_TWO)]
)
def test_a_batch_wrapper_decoder_and_encoder_see_every_kind_of_handler(plugin_server, model, answer):
    reply = requests.post(
        plugin_server.url(f"/predictions/{model}"), data="1,2,3", headers={"Content-Type": "text/csv"}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    # the handler got the plugin's floats, the client gets the plugin's CSV
    assert reply.headers["content-type"] == "text/csv" and reply.text == answer
    assert reply.headers["x-batch-seen"] == f"{model} predict 1"


def test_builtin_codecs_still_answer_what_the_plugin_leaves(plugin_server):
    reply = requests.post(plugin_server.url("/predictions/stages"), json=ROW, timeout=30)
    assert reply.status_code == 200 and reply.text == FIRST_TWO
    reply = requests.post(
        plugin_server.url("/predictions/fn"), data=b"{", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert reply.status_code == 400 and "body declared as application/json is not valid JSON" in reply.json()["message"]
    assert "x-batch-seen" not in reply.headers  # refused before any batch ran


@pytest.mark.usefixtures("forget_archive_modules")
def test_a_stage_no_plugin_answers_is_an_error_naming_it(tmp_path):
    """A plugin adapts a plain handler into stages but has no ``infer``: the batch fails with
    an error that names the stage and the model, instead of passing ``None`` on."""

    class Plain:
        def initialize(self, context):
            pass

        def handle(self, data, context):
            raise AssertionError("adapted into stages: handle is not called")

    class Stages:
        def __init__(self, handler):
            self.handler = handler

        @hookimpl(tryfirst=True)
        def hookserve_preprocess(self, model, batch):
            return torch.tensor([row["body"] for row in batch.data]) if model.handler is self.handler else None

        @hookimpl(tryfirst=True)
        def hookserve_postprocess(self, model, data):
            return data.tolist() if model.handler is self.handler else None

    class Adapter:
        @hookimpl
        def hookserve_handler_plugin(self, model):
            return Stages(model.handler) if isinstance(model.handler, Plain) else None

    class Tracer:
        stages: list[str] = []

        @hookimpl(wrapper=True)
        def hookserve_infer(self):
            self.stages.append("infer")
            return (yield)

    pm = create_plugin_manager(third_party=False)
    tracer = Tracer()
    pm.register(Adapter())
    pm.register(tracer)
    hooks = Hooks(pm)
    handler = Plain()
    model, context = load_model(
        folder_archive(tmp_path, name="partial"), hooks, entry=HandlerEntry(handler, handler.initialize, handler.handle)
    )
    runner = BatchRunner(model, context)
    (reply,) = runner.run([WorkRequest("r1", "predict", {}, [Field("body", "application/json", orjson.dumps(ROW))], 1)])

    assert reply.status == 500
    assert reply.error["message"] == (
        "no plugin produced a result for stage 'infer' of model 'partial' "
        "(every implementation of hookserve_infer returned None)"
    )
    assert tracer.stages == ["infer"]


def test_a_worker_calls_a_lone_builtin_directly_and_any_plugin_through_the_hook(monkeypatch):
    """The per-request fast path changes no answer: the builtin codecs and the whole-batch
    default are called directly only while they are alone; a plugin, a wrapper or hook
    tracing puts the hook call back, so they see every request."""
    from hookserve.plugins import codecs, stages

    hooks = Hooks(create_plugin_manager(third_party=False))
    assert hooks.input_decoder() is codecs.hookserve_decode_input
    assert hooks.batch_handler() is stages.hookserve_handle_batch
    assert hooks.output_encoder()({"a": 1}).body == b'{"a":1}'

    seen = []

    class Watcher:
        @hookimpl(wrapper=True)
        def hookserve_decode_input(self, content_type, data):
            seen.append(content_type)
            return (yield)

        @hookimpl
        def hookserve_encode_output(self, item):
            return None  # not mine: the builtin answers

    hooks.pm.register(Watcher())
    decode = hooks.input_decoder()
    assert decode is not codecs.hookserve_decode_input
    assert decode("application/json", b"[1]") == [1] and seen == ["application/json"]
    assert hooks.output_encoder()("text").content_type == "text/plain; charset=utf-8"

    monkeypatch.setenv("HOOKSERVE_TRACE_HOOKS", "1")
    traced = Hooks(create_plugin_manager(third_party=False))
    assert traced.input_decoder() is not codecs.hookserve_decode_input
    assert traced.input_decoder()("text/plain", b"hi") == "hi"
