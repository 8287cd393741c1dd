"""docs/handlers.md, run: every file block is written out, every command is run, every curl is
replayed against a real server and must give the answer the page prints under it
(``doc_pages`` reads the page's marked examples). The tests below name every block they
run, and ``test_every_example_is_run`` fails when the page gains an example no test runs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import time
import zipfile
from pathlib import Path

import pytest
import requests
import yaml

import doc_pages
from doc_pages import DocPage, cli, matches, run_command, serve_args
from helpers import Server, archive, pythonpath, wait_for

DOC = Path(__file__).resolve().parents[1] / "docs" / "handlers.md"

# The blocks each test runs; test_every_example_is_run checks this against the page.
RUN_BLOCKS = {
    "pack",
    "serve",
    "ping",
    "inputs",
    "no-content-type",
    "context",
    "replies",
    "stream",
    "plugin",
    "plugin-requests",
    "disable",
}
FILE_BLOCKS = {
    "inspect_handler.py",
    "shout.py",
    "tiny_model.py",
    "make_weights.py",
    "tiny_handler.py",
    "tiny_raw.py",
    "streamer.py",
    "model-config.yaml",
    "gpu-config.yaml",
    "hookserve-stopwatch/pyproject.toml",
    "hookserve-stopwatch/hookserve_stopwatch/plugin.py",
}

# Test-only handler: shows the context and breaks the reply contract on demand.
PROBE = """
    from hookserve.errors import BadRequest

    def handle(data, context):
        if data is None:
            return None
        command = data[0].get("body")
        if command == "notlist":
            return {"not": "a list"}
        if command == "wronglen":
            return [1, 2]
        if command == "tensor":
            import torch
            return [torch.zeros(2)]
        if command == "refuse":
            raise BadRequest("no thanks")
        if command == "item_bad_request":
            return [BadRequest("this one is bad")]
        if command == "item_error":
            return [KeyError("pixels")]
        if command == "numpy":
            import numpy
            return [numpy.arange(3)]
        if command == "ctype":
            context.set_response_content_type(0, "application/x-probe")
            return [b"raw"]
        if command == "memory":
            raise MemoryError("pretend")
        if command == "metrics":
            m = context.metrics
            m.add_counter("Probes", 1)
            m.add_time("ProbeTime", 1.5)
            m.add_size("ProbeSize", 2.0)
            m.add_percent("ProbePercent", 50)
            m.add_metric("ProbeMetric", 3, "count")
            m.add_error("ProbeError", 1)
            return ["recorded"]
        if str(command).startswith("mixed"):
            return [BadRequest(f"{row['body']} refused") if row["body"].endswith("bad") else f"{row['body']}/{len(data)}"
                    for row in data]
        return [{
            "model_name": context.model_name,
            "manifest_model": context.manifest["model"],
            "system_properties": context.system_properties,
            "model_yaml_config": context.model_yaml_config,
            "request_ids": {str(k): v for k, v in context.request_ids.items()},
            "header": context.get_request_header(0, "X-Probe"),
            "all_headers": context.get_all_request_header(0),
        }]
"""
PROBE_CONFIG = "batchSize: 3\nhandler:\n  colour: blue\n"


# --------------------------------------------------------------------------- the page

PAGE = DocPage(DOC)
files = PAGE.files
commands = PAGE.commands


def test_every_example_is_run():
    PAGE.check_every_example_is_run(RUN_BLOCKS, FILE_BLOCKS)


def test_matches_treats_dots_as_any_lines():
    assert matches(["a", "b", "c"], ["...", "b", "c"])
    assert matches(["a", "b", "c"], ["a", "...", "c"])
    assert matches(["a", "b", "c"], ["a", "b", "c", "..."])
    assert not matches(["a", "x", "b"], ["...", "a", "b"])  # the shown lines are consecutive
    assert not matches(["a", "b"], ["a", "b", "c"])


def replay(server: Server, block: str, cwd: Path) -> list[requests.Response]:
    return doc_pages.replay(server, PAGE, block, cwd)


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The reader's folder: the page's files written out and its pack commands run."""
    work = tmp_path_factory.mktemp("docs-handlers")
    PAGE.write_files(work)
    (work / "hookserve-stopwatch" / "hookserve_stopwatch" / "__init__.py").write_text("")  # "(empty)"
    for command in commands("pack"):
        run_command(command, work, {})
    # Test-only archives next to the page's: the context probe, `file.py:fn`, a tgz archive.
    archive(
        work,
        "probe",
        "probe.py",
        files={"probe.py": PROBE, "probe.yaml": PROBE_CONFIG},
        flags=["--config-file", "probe.yaml"],
    )
    renamed = files()["inspect_handler.py"].replace("def handle(", "def other(")
    assert "def other(" in renamed
    archive(work, "inspect_other", "inspect_other.py:other", files={"inspect_other.py": renamed})
    archive(
        work,
        "inspect_tgz",
        "inspect_handler.py",
        files={"inspect_handler.py": files()["inspect_handler.py"]},
        archive_format="tgz",
    )
    for path in (work / "store").iterdir():  # helpers.archive writes there; serve them from the page's store
        path.rename(work / "model_store" / path.name)
    return work


def start(args: list[str], work: Path, extra_models: list[str] = (), env: dict | None = None) -> Server:
    """A healthy server started in the page's working folder, so its relative paths hold."""
    args = list(args)
    if extra_models:
        at = args.index("--models") + 1
        while at < len(args) and not args[at].startswith("--"):
            at += 1
        args[at:at] = list(extra_models)
    server = Server(args, work, env, cwd=work).start()
    try:
        server.wait_healthy(120)
    except BaseException:
        server.kill_group()
        raise
    return server


@pytest.fixture(scope="module")
def server(workdir):
    (command,) = commands("serve")
    srv = start(
        serve_args(command),
        workdir,
        ["probe=probe.mar", "inspect_other=inspect_other.mar", "inspect_tgz=inspect_tgz.tar.gz"],
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def plugin_env(workdir) -> dict[str, str]:
    """The page's plugin block up to `hookserve serve`: install, list, pack `words`."""
    site = workdir / "site"
    env = {"SITE": str(site), "PYTHONPATH": pythonpath(site)}
    for command in commands("plugin"):
        if command.argv[:2] != ["hookserve", "serve"]:
            run_command(command, workdir, env)
    return env


@pytest.fixture(scope="module")
def plugin_server(workdir, plugin_env):
    (command,) = [c for c in commands("plugin") if c.argv[:2] == ["hookserve", "serve"]]
    srv = start(serve_args(command), workdir, env={"PYTHONPATH": plugin_env["PYTHONPATH"]})
    try:
        yield srv
    finally:
        srv.stop()


@contextlib.contextmanager
def held_workers(server: Server, model: str):
    """Stop a model's workers (their pids from the management API) while the block queues
    requests for them, so that the queued requests are batched when they go on."""
    (info,) = requests.get(server.url(f"/models/{model}", "management"), timeout=10).json()
    pids = [w["pid"] for w in info["workers"]]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
        time.sleep(1.0)  # the requests reach the workers' sockets
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


# ----------------------------------------------------------- 1-2: forms, pack, serve


def test_pack_writes_the_archives_the_page_names(workdir):
    with zipfile.ZipFile(workdir / "model_store" / "tiny.mar") as zf:
        manifest = json.loads(zf.read("MAR-INF/MANIFEST.json"))
        assert {"tiny_model.py", "tiny.pt", "tiny_handler.py"} <= set(zf.namelist())
    assert manifest["model"] == {
        "modelName": "tiny",
        "serializedFile": "tiny.pt",
        "handler": "tiny_handler.py",
        "modelFile": "tiny_model.py",
        "modelVersion": "1.0",
    }
    with zipfile.ZipFile(workdir / "model_store" / "shout.mar") as zf:
        assert json.loads(zf.read("MAR-INF/MANIFEST.json"))["model"]["configFile"] == "model-config.yaml"


def test_ping(server, workdir):
    replay(server, "ping", workdir)


def test_inputs(server, workdir):
    replay(server, "inputs", workdir)


def test_curl_without_content_type_sends_raw_bytes(server, workdir):
    replay(server, "no-content-type", workdir)


def test_function_named_after_the_colon_and_tgz_archives(server):
    for model in ("inspect_other", "inspect_tgz"):
        reply = requests.post(server.url(f"/predictions/{model}"), json=[1], timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"body": {"list": [1]}}


def test_context_example(server, workdir):
    replay(server, "context", workdir)


def test_context_contents(server, workdir):
    reply = requests.post(
        server.url("/predictions/probe"),
        json={"x": 1},
        headers={"X-Probe": "yes", "X-Request-Id": "probe-1"},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    seen = reply.json()
    assert seen["model_name"] == "probe"
    assert seen["manifest_model"]["handler"] == "probe.py"
    props = seen["system_properties"]
    assert set(props) == {
        "model_dir",
        "gpu_id",
        "batch_size",
        "server_name",
        "server_version",
        "limit_max_image_pixels",
    }
    assert props["gpu_id"] is None and props["batch_size"] == 3 and props["server_name"] == "hookserve"
    assert Path(props["model_dir"]).name.startswith("probe")
    assert seen["model_yaml_config"] == {"batchSize": 3, "handler": {"colour": "blue"}}
    assert seen["request_ids"] == {"0": "probe-1"}
    assert seen["header"] == "yes"
    assert seen["all_headers"]["x-probe"] == "yes" and seen["all_headers"]["content-type"] == "application/json"


def test_model_config_workers_and_batching(server, workdir):
    config = yaml.safe_load(files()["model-config.yaml"])
    (shout,) = requests.get(server.url("/models/shout", "management"), timeout=10).json()
    assert (
        shout["minWorkers"],
        shout["batchSize"],
        shout["maxBatchDelay"],
        shout["responseTimeout"],
        shout["startupTimeout"],
    ) == (
        config["minWorkers"],
        config["batchSize"],
        config["maxBatchDelay"],
        config["responseTimeout"],
        config["startupTimeout"],
    )
    assert len(shout["workers"]) == config["minWorkers"] and not any(w["gpu"] for w in shout["workers"])
    (tiny,) = requests.get(server.url("/models/tiny", "management"), timeout=10).json()
    assert len(tiny["workers"]) == 1  # --workers 1 where the archive does not say

    def ask(i: int) -> dict:
        reply = requests.post(
            server.url("/predictions/shout"),
            data=f"r{i}",
            headers={"Content-Type": "text/plain", "Accept": "application/json"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    # Twelve requests queue up while the workers are held; then they come in batches of at
    # most batchSize.
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        with held_workers(server, "shout"):
            futures = [pool.submit(ask, i) for i in range(12)]
        replies = [f.result() for f in futures]
    assert sorted(r["text"] for r in replies) == sorted(f"R{i}!!" for i in range(12))
    assert max(r["batch"] for r in replies) == config["batchSize"], [r["batch"] for r in replies]


# ------------------------------------------------------------- 4: replies and errors


def test_replies_and_handler_errors(server, workdir):
    replay(server, "replies", workdir)


def test_streaming_example(server, workdir):
    replay(server, "stream", workdir)
    assert "ValueError: expected 4 numbers, got 3" in server.log() and "Traceback" in server.log()


@pytest.mark.parametrize(
    "command, code, message",
    [
        ("notlist", 500, "handler returned dict, expected a list"),
        ("wronglen", 500, "handler returned 2 items for a batch of 1"),
        ("tensor", 500, "cannot be sent as JSON"),
        ("refuse", 400, "no thanks"),
        ("item_bad_request", 400, "this one is bad"),
        ("item_error", 500, "KeyError"),
        ("memory", 507, "MemoryError: pretend"),
    ],
)
def test_reply_contract_errors(server, command, code, message):
    reply = requests.post(
        server.url("/predictions/probe"), data=command, headers={"Content-Type": "text/plain"}, timeout=30
    )
    assert reply.status_code == code, reply.text
    assert reply.json()["code"] == code and message in reply.json()["message"]


def test_exception_item_fails_one_request_of_a_batch(server):
    def ask(body: str) -> requests.Response:
        return requests.post(
            server.url("/predictions/probe"), data=body, headers={"Content-Type": "text/plain"}, timeout=30
        )

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        with held_workers(server, "probe"):
            futures = {body: pool.submit(ask, body) for body in ("mixed-1", "mixed-bad", "mixed-2")}
        replies = {body: f.result() for body, f in futures.items()}
    assert replies["mixed-bad"].status_code == 400, replies["mixed-bad"].text
    assert replies["mixed-bad"].json()["message"] == "mixed-bad refused"
    assert [replies[b].status_code for b in ("mixed-1", "mixed-2")] == [200, 200]
    assert [replies[b].text for b in ("mixed-1", "mixed-2")] == ["mixed-1/3", "mixed-2/3"]  # one batch


def test_other_reply_types(server):
    def ask(command: str) -> requests.Response:
        return requests.post(
            server.url("/predictions/probe"), data=command, headers={"Content-Type": "text/plain"}, timeout=30
        )

    numpy_reply = ask("numpy")
    assert numpy_reply.status_code == 200 and numpy_reply.json() == [0, 1, 2]
    ctype = ask("ctype")
    assert ctype.headers["content-type"] == "application/x-probe" and ctype.content == b"raw"
    metrics = ask("metrics")
    assert metrics.status_code == 200 and metrics.text == "recorded"


def test_plus_json_is_decoded_and_bad_text_is_400(server):
    reply = requests.post(
        server.url("/predictions/inspect"),
        data=b'{"a": 1}',
        headers={"Content-Type": "application/vnd.api+json"},
        timeout=30,
    )
    assert reply.json() == {"body": {"dict": {"a": 1}}}
    reply = requests.post(
        server.url("/predictions/inspect"), data=b"\xff\xfe", headers={"Content-Type": "text/plain"}, timeout=30
    )
    assert reply.status_code == 400 and "not UTF-8" in reply.json()["message"]


def test_bad_json_body_is_400_before_the_handler(server):
    reply = requests.post(
        server.url("/predictions/inspect"), data=b"{nope", headers={"Content-Type": "application/json"}, timeout=30
    )
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["message"]


# ----------------------------------------------------------------------- 5: devices


def test_gpu_round_robin_of_the_page_config():
    from hookserve.plugin_types import DeviceRequest
    from hookserve.pluginmanager import Hooks, create_plugin_manager

    config = yaml.safe_load(files()["gpu-config.yaml"])
    hooks = Hooks(create_plugin_manager(third_party=False))

    def devices(gpu_count: int, device_type=config["deviceType"]) -> list[str]:
        return [
            hooks.select_device(
                request=DeviceRequest(
                    model_name="m",
                    worker_index=i,
                    gpu_count=gpu_count,
                    device_type=device_type,
                    device_ids=tuple(config["deviceIds"]),
                )
            )
            for i in range(config["minWorkers"])
        ]

    assert devices(4) == ["cuda:1", "cuda:3", "cuda:1", "cuda:3"]
    assert devices(0) == ["cpu"] * 4
    assert devices(4, device_type="cpu") == ["cpu"] * 4


def test_base_handler_device_follows_gpu_id():
    from hookserve.context import Context
    from hookserve.handlers.base_handler import worker_device

    assert str(worker_device(Context("m", "/tmp", {}, 1, None))) == "cpu"


# ----------------------------------------------------------------------- 6: plugins


def test_stage_wrapper_needs_the_plugin_installed(server):
    reply = requests.post(server.url("/predictions/tiny"), json=[0.5, -1.0, 2.0, 0.0], timeout=30)
    assert reply.status_code == 200 and "x-stopwatch-ms" not in reply.headers


def test_plugin_requests(plugin_server, workdir):
    replies = replay(plugin_server, "plugin-requests", workdir)
    assert float(replies[-1].headers["x-stopwatch-ms"]) >= 0


def test_stage_wrapper_skips_handlers_without_stages(plugin_server):
    for model, body in (("inspect", [1]), ("tiny_raw", [0.5, -1.0, 2.0, 0.0])):
        reply = requests.post(plugin_server.url(f"/predictions/{model}"), json=body, timeout=30)
        assert reply.status_code == 200 and "x-stopwatch-ms" not in reply.headers, model


def test_disable_plugin(plugin_env, workdir):
    listed = cli(["plugins"], workdir, {"PYTHONPATH": plugin_env["PYTHONPATH"]})
    assert "stopwatch  [hookserve-stopwatch 0.1.0]" in listed.stdout
    for command in commands("disable"):
        result = run_command(command, workdir, {"PYTHONPATH": plugin_env["PYTHONPATH"]})
        assert result.stderr == "" and "stopwatch" not in result.stdout, command.argv
        assert "gpu  [builtin: hookserve " in result.stdout


def test_disabled_plugin_handler_name_is_not_served(plugin_env, workdir):
    args = ["--model-store", "model_store", "--workers", "1", "--models", "words=words.mar", "inspect.mar"]
    srv = Server(
        [*args, "--disable-plugin", "stopwatch"], workdir, {"PYTHONPATH": plugin_env["PYTHONPATH"]}, cwd=workdir
    )
    srv.start()
    try:
        # never healthy: /ping names the start-up model that failed to load
        def words_failed() -> bool:
            try:
                reply = requests.get(srv.url("/ping"), timeout=5)
            except requests.ConnectionError:
                return False
            problems = reply.json().get("problems", [])
            return reply.json()["status"] != "Healthy" and any(
                "words: failed to load at start-up" in p for p in problems
            )

        wait_for(words_failed, timeout=120, what="words reported by /ping")
        reply = requests.post(
            srv.url("/predictions/words"), data="a b", headers={"Content-Type": "text/plain"}, timeout=30
        )
        assert reply.status_code == 404 and "word_count" in reply.json()["message"]
    finally:
        srv.stop()


def test_device_policy_hook_comes_before_the_builtin(workdir):
    import importlib.util

    from hookserve.plugin_types import DeviceRequest
    from hookserve.pluginmanager import Hooks, create_plugin_manager

    path = workdir / "hookserve-stopwatch" / "hookserve_stopwatch" / "plugin.py"
    spec = importlib.util.spec_from_file_location("doc_stopwatch_plugin", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pm = create_plugin_manager(third_party=False)
    pm.register(module, name="stopwatch")
    hooks = Hooks(pm)
    assert hooks.select_device(request=DeviceRequest(model_name="small-net", worker_index=0, gpu_count=2)) == "cpu"
    assert hooks.select_device(request=DeviceRequest(model_name="big-net", worker_index=1, gpu_count=2)) == "cuda:1"
    assert "word_count" in hooks.handler_classes()


def test_torchserve_import_path_is_hookserves():
    util = pytest.importorskip("ts.utils.util", reason="hookserve-ts is not installed")
    from ts.torch_handler.base_handler import BaseHandler as TsBaseHandler

    from hookserve.handlers.base_handler import BaseHandler

    assert TsBaseHandler is BaseHandler and callable(util.list_classes_from_module)
