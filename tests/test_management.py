"""The management API end to end (TorchServe 0.12's), against one real server on loopback.

Register (query string and JSON body, sync and async), errors with TorchServe's codes and
messages, a failing ``initialize`` and a ``startup_timeout`` that leave nothing behind,
scaling up and down, listing with pages, describe with TorchServe's fields (and the
handler's ``describe_handle``), versions side by side, set-default, unregister, and the
settings' precedence: API parameters > ``model-config.yaml`` > server config > defaults.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from helpers import (
    Server,
    alive,
    archive,
    cmdline,
    fake_distribution,
    mgmt,
    mlp_archive,
    parent_pid,
    pythonpath,
    scale_archive,
    serving,
    wait_for,
)

# Says which batch size its worker was started with.
CONFIG_HANDLER = """
    import os


    def handle(data, context):
        if data is None:
            return None
        return [{"batch_size": context.system_properties["batch_size"], "pid": os.getpid()} for _ in data]


    def shout(data, context):
        if data is None:
            return None
        return [{"handler": "shout"} for _ in data]
"""

MODEL_CONFIG = """
    minWorkers: 2
    maxWorkers: 3
    batchSize: 4
    maxBatchDelay: 37
    responseTimeout: 55
    startupTimeout: 66
"""

BROKEN_HANDLER = """
    class Broken:
        def initialize(self, context):
            raise RuntimeError("initialize exploded on purpose")

        def handle(self, data, context):
            return data
"""

# Dies in initialize without a word: no exception for the worker to report.
EXITING_HANDLER = """
    import os


    class Exits:
        def initialize(self, context):
            os._exit(3)

        def handle(self, data, context):
            return data
"""

SLOW_HANDLER = """
    import time


    class Slow:
        def initialize(self, context):
            time.sleep(300)

        def handle(self, data, context):
            return data
"""

# An installed plugin that places workers of models named gpuish* on two pretend GPUs, as
# the builtin round-robin does with real ones (the handler falls back to the CPU without CUDA).
FAKE_GPU_PLUGIN = """
from hookserve.hookspecs import hookimpl


@hookimpl
def hookserve_select_device(request):
    if request.model_name.startswith("gpuish"):
        return f"cuda:{request.worker_index % 2}"
    return None
"""


# The server's own setting, between model-config.yaml and the built-in default of 100 ms.
SERVER_MAX_BATCH_DELAY = 42

DESCRIBE_KEYS = {
    "modelName",
    "modelVersion",
    "modelUrl",
    "runtime",
    "minWorkers",
    "maxWorkers",
    "batchSize",
    "maxBatchDelay",
    "responseTimeout",
    "startupTimeout",
    "deviceType",
    "loadedAtStartup",
    "workers",
    "jobQueueStatus",
}
WORKER_KEYS = {"id", "startTime", "status", "pid", "gpu", "memoryUsage"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("management")
    store = work / "store"
    mlp_archive(work)
    scale_archive(work, "2.0", 10.0, "ver-2")  # first: both are packed as ver.mar
    scale_archive(work, "1.0", 1.0, "ver")
    archive(
        work,
        "cfg",
        "handler.py",
        files={"handler.py": CONFIG_HANDLER, "model-config.yaml": MODEL_CONFIG},
        flags=["--config-file", "model-config.yaml"],
    )
    archive(work, "broken", "handler.py", files={"handler.py": BROKEN_HANDLER})
    archive(work, "folder", "handler.py", files={"handler.py": CONFIG_HANDLER}, archive_format="no-archive")
    archive(work, "slow", "handler.py", files={"handler.py": SLOW_HANDLER})
    archive(work, "exits", "handler.py", files={"handler.py": EXITING_HANDLER})
    site = work / "site"
    fake_distribution(site, "fake-gpus", "1.0", {"fakegpus": "fake_gpus_plugin"}, {"fake_gpus_plugin": FAKE_GPU_PLUGIN})
    srv = Server(
        [
            "--model-store",
            str(store),
            "--models",
            "mlp=mlp.mar",
            "--workers",
            "1",
            "--max-batch-delay",
            str(SERVER_MAX_BATCH_DELAY),
        ],
        work,
        env={"PYTHONPATH": pythonpath(site)},
    )
    with serving(srv):
        yield srv


# --- helpers -------------------------------------------------------------------------


def predict(server: Server, path: str, value: float = 3.0) -> requests.Response:
    return requests.post(server.url(path), json=value, timeout=60)


def describe(server: Server, path: str) -> list[dict]:
    reply = mgmt(server, "GET", path)
    assert reply.status_code == 200, reply.text
    return reply.json()


def manager_pid(server: Server) -> int:
    for pid in server.pids():
        if "hookserve.manager" in cmdline(pid):
            return pid
    raise AssertionError("no model manager process")


def run_dir(server: Server) -> Path:
    args = cmdline(manager_pid(server))
    return Path(args[args.index("hookserve.manager") + 1])


def worker_pids(server: Server) -> set[int]:
    """The model manager's live children: every model worker, whatever its model."""
    manager = manager_pid(server)
    return {pid for pid in server.pids() if alive(pid) and parent_pid(pid) == manager}


def unregister_all(server: Server, name: str) -> None:
    """Remove every version of ``name`` (non-default versions first)."""
    reply = mgmt(server, "GET", f"/models/{name}/all")
    if reply.status_code == 404:
        return
    entries = reply.json()
    default = mgmt(server, "GET", f"/models/{name}").json()[0]["modelVersion"]
    for entry in sorted(entries, key=lambda e: e["modelVersion"] == default):
        assert mgmt(server, "DELETE", f"/models/{name}/{entry['modelVersion']}").status_code == 200


@pytest.fixture
def cleanup(server):
    names: list[str] = []
    yield names
    for name in names:
        unregister_all(server, name)


# --- registration --------------------------------------------------------------------


def test_register_with_query_parameters_is_synchronous_by_default(server, cleanup):
    cleanup.append("regq")
    reply = mgmt(
        server,
        "POST",
        "/models",
        params={
            "url": "ver.mar",
            "model_name": "regq",
            "initial_workers": "1",
            "batch_size": "2",
            "max_batch_delay": "15",
            "response_timeout": "30",
            "runtime": "python",
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"status": 'Model "regq" Version: 1.0 registered with 1 initial workers'}
    # synchronous: the worker is up by the time the answer comes
    [entry] = describe(server, "/models/regq")
    assert entry["modelName"] == "regq" and entry["modelVersion"] == "1.0" and entry["modelUrl"] == "ver.mar"
    assert (entry["batchSize"], entry["maxBatchDelay"], entry["responseTimeout"]) == (2, 15, 30)
    assert entry["loadedAtStartup"] is False
    [worker] = entry["workers"]
    assert worker["status"] == "READY" and alive(worker["pid"])
    answer = predict(server, "/predictions/regq", 3.0)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"version": "1.0", "y": 3.0, "pid": worker["pid"]}


def test_register_with_a_json_body(server, cleanup):
    cleanup.append("regjson")
    body = {
        "url": "ver-2.mar",
        "model_name": "regjson",
        "initial_workers": 2,
        "batch_size": 3,
        "max_batch_delay": 11,
        "synchronous": True,
    }
    reply = mgmt(server, "POST", "/models", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"status": 'Model "regjson" Version: 2.0 registered with 2 initial workers'}
    [entry] = describe(server, "/models/regjson")
    assert (entry["batchSize"], entry["maxBatchDelay"], entry["minWorkers"]) == (3, 11, 2)
    assert [w["status"] for w in entry["workers"]] == ["READY", "READY"]
    assert len({w["pid"] for w in entry["workers"]}) == 2
    assert predict(server, "/predictions/regjson", 2.0).json()["y"] == 20.0


def test_register_with_another_handler(server, cleanup):
    cleanup.append("shouted")
    params = {"url": "cfg.mar", "model_name": "shouted", "handler": "handler:shout", "initial_workers": "1"}
    assert mgmt(server, "POST", "/models", params=params).status_code == 200
    assert predict(server, "/predictions/shouted").json() == {"handler": "shout"}
    # and the archive's own handler without the parameter
    cleanup.append("unshouted")
    params = {"url": "cfg.mar", "model_name": "unshouted", "initial_workers": "1"}
    assert mgmt(server, "POST", "/models", params=params).status_code == 200
    assert "batch_size" in predict(server, "/predictions/unshouted").json()


def test_register_asynchronously_is_202_and_the_workers_follow(server, cleanup):
    cleanup.append("regasync")
    reply = mgmt(
        server,
        "POST",
        "/models",
        params={"url": "ver.mar", "model_name": "regasync", "initial_workers": "1", "synchronous": "false"},
    )
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"status": "Processing worker updates..."}
    # registered at once; ready soon after
    assert mgmt(server, "GET", "/models/regasync").status_code == 200
    wait_for(
        lambda: [w["status"] for w in describe(server, "/models/regasync")[0]["workers"]] == ["READY"],
        what="the async registration's worker ready",
    )
    assert predict(server, "/predictions/regasync").status_code == 200


def test_register_with_zero_workers_then_scale_up(server, cleanup):
    cleanup.append("zero")
    reply = mgmt(
        server,
        "POST",
        "/models",
        params={"url": "ver.mar", "model_name": "zero", "initial_workers": "0", "response_timeout": "1"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "status": 'Model "zero" Version: 1.0 registered with 0 initial workers. '
        "Use scale workers API to add workers for the model."
    }
    [entry] = describe(server, "/models/zero")
    assert entry["workers"] == [] and entry["minWorkers"] == 0
    # no worker to serve it: a clear 503 once responseTimeout (1 s) has passed
    started = time.monotonic()
    refused = predict(server, "/predictions/zero")
    assert refused.status_code == 503 and time.monotonic() - started < 10
    scaled = mgmt(server, "PUT", "/models/zero", params={"min_worker": "1", "synchronous": "true"})
    assert scaled.status_code == 200, scaled.text
    assert scaled.json() == {"status": "Workers scaled to 1 for model: zero"}
    assert predict(server, "/predictions/zero").status_code == 200


@pytest.mark.parametrize(
    "params, code, type_, message",
    [
        ({"model_name": "nourl"}, 400, "BadRequestException", "Parameter url is required."),
        ({"url": "ver.mar", "batch_size": "many"}, 400, "BadRequestException", "batch_size"),
        ({"url": "ver.mar", "initial_workers": "1.5"}, 400, "BadRequestException", "initial_workers"),
        ({"url": "ver.mar", "model_name": "bad name"}, 400, "BadRequestException", "'bad name' is invalid"),
        ({"url": "ver.mar", "model_name": "-lead"}, 400, "BadRequestException", "is invalid"),
        ({"url": "ver.mar", "model_name": "x/y"}, 400, "BadRequestException", "is invalid"),
        ({"url": "ver.mar", "runtime": "cpp"}, 400, "BadRequestException", "runtime"),
        (
            {"url": "nothing-here.mar"},
            404,
            "ModelNotFoundException",
            "Model not found in model store: nothing-here.mar",
        ),
        (
            {"url": "mlp.mar"},
            409,
            "ConflictStatusException",
            "Model version 1.0 for model mlp already registered.",
        ),
    ],
)
def test_register_errors_have_torchserve_codes(server, params, code, type_, message):
    before = mgmt(server, "GET", "/models").json()
    reply = mgmt(server, "POST", "/models", params=params)
    assert reply.status_code == code, reply.text
    body = reply.json()
    assert body["code"] == code and body["type"] == type_
    assert message in body["message"]
    assert mgmt(server, "GET", "/models").json() == before


def test_register_errors_in_a_json_body(server):
    assert mgmt(server, "POST", "/models", json={"model_name": "x"}).status_code == 400
    assert mgmt(server, "POST", "/models", json={"url": "ver.mar", "batch_size": "x"}).status_code == 400
    for body in ({"url": 5}, {"url": ["ver.mar"]}, {"url": "ver.mar", "model_name": 7}):
        wrong_type = mgmt(server, "POST", "/models", json=body)
        assert wrong_type.status_code == 400, (body, wrong_type.text)
        assert wrong_type.json()["type"] == "BadRequestException"
    not_json = mgmt(server, "POST", "/models", data=b"{oops", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
    # a second registration of the same version, whatever the name it came from, is a conflict
    dup = mgmt(server, "POST", "/models", json={"url": "mlp.mar", "model_name": "mlp"})
    assert dup.status_code == 409


def test_duplicate_of_a_folder_model_keeps_the_folder(server, cleanup):
    cleanup.append("folder")
    folder = Path(server.args[server.args.index("--model-store") + 1]) / "folder"
    files = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    assert mgmt(server, "POST", "/models", params={"url": "folder"}).status_code == 200
    dup = mgmt(server, "POST", "/models", params={"url": "folder"})
    assert dup.status_code == 409, dup.text
    # a folder is served in place: refusing a second registration must not delete it
    assert sorted(p.relative_to(folder) for p in folder.rglob("*") if "__pycache__" not in p.parts) == files
    scaled = mgmt(server, "PUT", "/models/folder", params={"min_worker": "2", "synchronous": "true"})
    assert scaled.status_code == 200, scaled.text
    assert predict(server, "/predictions/folder").status_code == 200


def _leaves_nothing(server: Server, name: str, before: set[int]) -> None:
    assert mgmt(server, "GET", f"/models/{name}").status_code == 404
    assert name not in [m["modelName"] for m in mgmt(server, "GET", "/models").json()["models"]]
    wait_for(lambda: not (worker_pids(server) - before), what=f"{name}'s workers gone")
    models = run_dir(server) / "models"
    wait_for(lambda: not list(models.glob(f"{name}-*")), what=f"{name}'s extracted files removed")


def test_initialize_failure_is_500_with_the_reason_and_leaves_nothing(server):
    before = worker_pids(server)
    reply = mgmt(server, "POST", "/models", params={"url": "broken.mar", "initial_workers": "2"})
    assert reply.status_code == 500, reply.text
    body = reply.json()
    assert body["code"] == 500
    assert "RuntimeError" in body["message"] and "initialize exploded on purpose" in body["message"]
    _leaves_nothing(server, "broken", before)
    # nothing half-registered: the same registration fails the same way, not with 409
    again = mgmt(server, "POST", "/models", params={"url": "broken.mar", "initial_workers": "1"})
    assert again.status_code == 500 and "initialize exploded on purpose" in again.json()["message"]
    _leaves_nothing(server, "broken", before)


def test_a_worker_dying_in_initialize_is_500_and_leaves_nothing(server):
    before = worker_pids(server)
    started = time.monotonic()
    reply = mgmt(server, "POST", "/models", params={"url": "exits.mar", "initial_workers": "2"}, timeout=30)
    assert reply.status_code == 500, reply.text
    assert "exit code 3" in reply.json()["message"]
    assert time.monotonic() - started < 10
    _leaves_nothing(server, "exits", before)


def test_startup_timeout_is_500_and_leaves_nothing(server):
    before = worker_pids(server)
    started = time.monotonic()
    reply = mgmt(server, "POST", "/models", params={"url": "slow.mar", "initial_workers": "1", "startup_timeout": "2"})
    elapsed = time.monotonic() - started
    assert reply.status_code == 500, reply.text
    assert "startupTimeout=2" in reply.json()["message"]
    assert 2 <= elapsed < 20
    _leaves_nothing(server, "slow", before)


def test_unregister_during_a_synchronous_registration_answers_it(server):
    before = worker_pids(server)
    answers = []
    register = threading.Thread(
        target=lambda: answers.append(
            mgmt(server, "POST", "/models", params={"url": "slow.mar", "initial_workers": "1", "startup_timeout": "60"})
        )
    )
    register.start()
    try:
        wait_for(lambda: mgmt(server, "GET", "/models/slow").status_code == 200, what="slow registered")
        removed = mgmt(server, "DELETE", "/models/slow")
        assert removed.status_code == 200, removed.text
        # the waiting registration is told, rather than left hanging
        register.join(15)
        assert not register.is_alive(), "the synchronous registration got no answer"
        [reply] = answers
        assert reply.status_code == 500, reply.text
        assert "unregistered" in reply.json()["message"]
    finally:
        register.join(70)
    _leaves_nothing(server, "slow", before)


# --- scaling -------------------------------------------------------------------------


def test_scale_up_and_down_synchronously(server, cleanup):
    cleanup.append("scaled")
    reply = mgmt(server, "POST", "/models", params={"url": "ver.mar", "model_name": "scaled", "initial_workers": "1"})
    assert reply.status_code == 200, reply.text
    [first] = [w["pid"] for w in describe(server, "/models/scaled")[0]["workers"]]

    up = mgmt(server, "PUT", "/models/scaled", params={"min_worker": "3", "max_worker": "4", "synchronous": "true"})
    assert up.status_code == 200, up.text
    assert up.json() == {"status": "Workers scaled to 3 for model: scaled"}
    [entry] = describe(server, "/models/scaled")
    assert (entry["minWorkers"], entry["maxWorkers"]) == (3, 4)
    assert [w["status"] for w in entry["workers"]] == ["READY"] * 3
    pids = {w["pid"] for w in entry["workers"]}
    assert len(pids) == 3 and first in pids
    assert pids <= worker_pids(server)
    assert len({w["id"] for w in entry["workers"]}) == 3
    assert predict(server, "/predictions/scaled").status_code == 200

    down = mgmt(server, "PUT", "/models/scaled", params={"min_worker": "1", "max_worker": "1", "synchronous": "true"})
    assert down.status_code == 200, down.text
    assert down.json() == {"status": "Workers scaled to 1 for model: scaled"}
    [entry] = describe(server, "/models/scaled")
    assert (entry["minWorkers"], entry["maxWorkers"]) == (1, 1)
    assert [w["pid"] for w in entry["workers"]] == [first]
    gone = pids - {first}
    wait_for(lambda: not any(alive(pid) for pid in gone), timeout=10, what="scaled-down workers gone")
    assert not gone & worker_pids(server)
    assert predict(server, "/predictions/scaled").json()["pid"] == first


def test_scale_a_version_asynchronously(server, cleanup):
    cleanup.append("scaledv")
    assert mgmt(server, "POST", "/models", params={"url": "ver.mar", "model_name": "scaledv"}).status_code == 200
    reply = mgmt(server, "PUT", "/models/scaledv/1.0", params={"min_worker": "2"})
    # TorchServe's default for scaling is asynchronous
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"status": "Processing worker updates..."}
    wait_for(
        lambda: [w["status"] for w in describe(server, "/models/scaledv/1.0")[0]["workers"]] == ["READY"] * 2,
        what="two ready workers",
    )
    sync = mgmt(server, "PUT", "/models/scaledv/1.0", params={"min_worker": "1", "synchronous": "true"})
    assert sync.json() == {"status": "Workers scaled to 1 for model: scaledv, version: 1.0"}


@pytest.mark.parametrize(
    "path, params, code",
    [
        ("/models/mlp", {"min_worker": "3", "max_worker": "2"}, 400),
        ("/models/mlp", {"min_worker": "-1"}, 400),
        ("/models/mlp", {"min_worker": "two"}, 400),
        ("/models/nosuchmodel", {"min_worker": "1"}, 404),
        ("/models/mlp/9.9", {"min_worker": "1"}, 404),
    ],
)
def test_scale_errors(server, path, params, code):
    reply = mgmt(server, "PUT", path, params=params)
    assert reply.status_code == code, reply.text
    assert reply.json()["code"] == code
    [entry] = describe(server, "/models/mlp")
    assert entry["minWorkers"] == 1 and len(entry["workers"]) == 1


# --- listing and describing ----------------------------------------------------------


def test_list_models_in_pages(server, cleanup):
    names = [f"page{i}" for i in range(5)]
    cleanup.extend(names)
    for name in names:
        reply = mgmt(server, "POST", "/models", params={"url": "ver.mar", "model_name": name, "initial_workers": "0"})
        assert reply.status_code == 200, reply.text
    full = mgmt(server, "GET", "/models").json()
    assert "nextPageToken" not in full
    listed = [m["modelName"] for m in full["models"]]
    assert listed == sorted(listed) and set(names) | {"mlp"} <= set(listed)
    assert {"modelName": "page0", "modelUrl": "ver.mar"} in full["models"]
    assert {"modelName": "mlp", "modelUrl": "mlp.mar"} in full["models"]

    paged, token, pages = [], None, 0
    while True:
        params = {"limit": "2", **({"next_page_token": token} if token else {})}
        page = mgmt(server, "GET", "/models", params=params).json()
        assert 1 <= len(page["models"]) <= 2
        paged += page["models"]
        pages += 1
        token = page.get("nextPageToken")
        if token is None:
            break
        assert len(page["models"]) == 2
    assert paged == full["models"]
    assert pages == (len(listed) + 1) // 2
    assert mgmt(server, "GET", "/models", params={"limit": "x"}).status_code == 400


def test_describe_has_torchserve_fields_and_each_workers_device(server):
    [entry] = describe(server, "/models/mlp")
    assert DESCRIBE_KEYS <= set(entry)
    assert entry["modelName"] == "mlp" and entry["modelVersion"] == "1.0" and entry["modelUrl"] == "mlp.mar"
    assert entry["runtime"] == "python"
    assert entry["loadedAtStartup"] is True
    assert (entry["minWorkers"], entry["maxWorkers"], entry["batchSize"]) == (1, 1, 1)
    assert entry["maxBatchDelay"] == SERVER_MAX_BATCH_DELAY
    assert (entry["responseTimeout"], entry["startupTimeout"]) == (120, 120)
    assert entry["deviceType"] == "cpu"
    assert entry["jobQueueStatus"] == {"remainingCapacity": 100, "pendingRequests": 0}
    [worker] = entry["workers"]
    assert WORKER_KEYS <= set(worker)
    assert worker["status"] == "READY"
    assert worker["pid"] in worker_pids(server)
    assert worker["gpu"] is False and worker["device"] == "cpu"
    rss = int(Path(f"/proc/{worker['pid']}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    # a worker holding torch is tens of megabytes; the figure is the worker's own
    assert 10 * 2**20 < worker["memoryUsage"] and abs(worker["memoryUsage"] - rss) < rss / 2
    assert abs(datetime.fromisoformat(worker["startTime"]).timestamp() - time.time()) < 3600
    assert describe(server, "/models/mlp/1.0") == describe(server, "/models/mlp/all")
    assert describe(server, "/models/mlp/1.0")[0]["workers"][0]["pid"] == worker["pid"]


def test_describe_shows_each_workers_device(server, cleanup):
    cleanup.append("gpuish")
    params = {"url": "ver.mar", "model_name": "gpuish", "initial_workers": "3"}
    assert mgmt(server, "POST", "/models", params=params).status_code == 200
    [entry] = describe(server, "/models/gpuish")
    assert [(w["device"], w["gpu"]) for w in entry["workers"]] == [("cuda:0", True), ("cuda:1", True), ("cuda:0", True)]
    assert entry["deviceType"] == "gpu"
    # the placement reaches the handler as system_properties["gpu_id"]
    assert json.loads(describe(server, "/models/gpuish?customized=true")[0]["customizedMetadata"])["gpu_id"] in (0, 1)
    assert predict(server, "/predictions/gpuish", 2.0).json()["y"] == 2.0
    # models the plugin does not claim stay with the builtin placement: CPU here
    assert [w["device"] for w in describe(server, "/models/mlp")[0]["workers"]] == ["cpu"]


def test_describe_unknown_model_or_version_is_404(server):
    for path, type_ in (
        ("/models/nosuchmodel", "ModelNotFoundException"),
        ("/models/nosuchmodel/all", "ModelNotFoundException"),
        ("/models/mlp/9.9", "ModelNotFoundException"),
    ):
        reply = mgmt(server, "GET", path)
        assert reply.status_code == 404, path
        assert reply.json()["type"] == type_
    assert "9.9" in mgmt(server, "GET", "/models/mlp/9.9").json()["message"]


def test_customized_describe_runs_describe_handle(server, cleanup):
    cleanup.append("custom")
    params = {"url": "ver-2.mar", "model_name": "custom", "initial_workers": "1", "batch_size": "5"}
    assert mgmt(server, "POST", "/models", params=params).status_code == 200
    plain = describe(server, "/models/custom")[0]
    assert "customizedMetadata" not in plain
    [entry] = describe(server, "/models/custom?customized=true")
    assert json.loads(entry["customizedMetadata"]) == {
        "handler": "VersionHandler",
        "version": "2.0",
        "batch_size": 5,
        "gpu_id": None,
    }
    assert entry["modelName"] == "custom" and entry["workers"] == plain["workers"]


# --- versions ------------------------------------------------------------------------


def test_versions_side_by_side_default_and_set_default(server, cleanup):
    cleanup.append("ver")
    assert mgmt(server, "POST", "/models", params={"url": "ver.mar", "initial_workers": "1"}).status_code == 200
    second = mgmt(server, "POST", "/models", params={"url": "ver-2.mar", "initial_workers": "1"})
    assert second.status_code == 200, second.text
    assert second.json() == {"status": 'Model "ver" Version: 2.0 registered with 1 initial workers'}

    # the first version registered is the default
    assert predict(server, "/predictions/ver", 3.0).json()["version"] == "1.0"
    assert predict(server, "/predictions/ver", 3.0).json()["y"] == 3.0
    v1 = predict(server, "/predictions/ver/1.0", 3.0).json()
    v2 = predict(server, "/predictions/ver/2.0", 3.0).json()
    assert (v1["version"], v1["y"]) == ("1.0", 3.0)
    assert (v2["version"], v2["y"]) == ("2.0", 30.0)
    assert v1["pid"] != v2["pid"]
    missing = predict(server, "/predictions/ver/3.0")
    assert missing.status_code == 404 and "3.0" in missing.json()["message"]

    everything = describe(server, "/models/ver/all")
    assert sorted(e["modelVersion"] for e in everything) == ["1.0", "2.0"]
    assert {e["modelVersion"]: e["modelUrl"] for e in everything} == {"1.0": "ver.mar", "2.0": "ver-2.mar"}
    assert describe(server, "/models/ver")[0]["modelVersion"] == "1.0"
    listed = [m for m in mgmt(server, "GET", "/models").json()["models"] if m["modelName"] == "ver"]
    assert listed == [{"modelName": "ver", "modelUrl": "ver.mar"}]

    switched = mgmt(server, "PUT", "/models/ver/2.0/set-default")
    assert switched.status_code == 200, switched.text
    assert switched.json() == {"status": 'Default version successfully updated for model "ver" to "2.0"'}
    assert predict(server, "/predictions/ver", 3.0).json() == v2
    assert predict(server, "/predictions/ver/1.0", 3.0).json() == v1
    assert describe(server, "/models/ver")[0]["modelVersion"] == "2.0"
    assert [m for m in mgmt(server, "GET", "/models").json()["models"] if m["modelName"] == "ver"] == [
        {"modelName": "ver", "modelUrl": "ver-2.mar"}
    ]
    unknown = mgmt(server, "PUT", "/models/ver/7.0/set-default")
    assert unknown.status_code == 404
    assert mgmt(server, "PUT", "/models/nosuchmodel/1.0/set-default").status_code == 404

    # the default version cannot go while another exists
    refused = mgmt(server, "DELETE", "/models/ver/2.0")
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "InvalidModelVersionException"
    refused = mgmt(server, "DELETE", "/models/ver")
    assert refused.status_code == 403
    assert predict(server, "/predictions/ver/2.0").status_code == 200

    removed = mgmt(server, "DELETE", "/models/ver/1.0")
    assert removed.status_code == 200 and removed.json() == {"status": 'Model "ver" unregistered'}
    assert predict(server, "/predictions/ver/1.0").status_code == 404
    assert [e["modelVersion"] for e in describe(server, "/models/ver/all")] == ["2.0"]
    wait_for(lambda: not alive(v1["pid"]), timeout=10, what="version 1.0's worker gone")

    last = mgmt(server, "DELETE", "/models/ver")
    assert last.status_code == 200
    assert mgmt(server, "GET", "/models/ver").status_code == 404
    assert predict(server, "/predictions/ver").status_code == 404
    wait_for(lambda: not alive(v2["pid"]), timeout=10, what="version 2.0's worker gone")


def test_unregister_unknown_is_404(server):
    for path, type_ in (
        ("/models/nosuchmodel", "ModelNotFoundException"),
        ("/models/mlp/9.9", "ModelVersionNotFoundException"),
    ):
        reply = mgmt(server, "DELETE", path)
        assert reply.status_code == 404, reply.text
        assert reply.json()["type"] == type_
    assert mgmt(server, "GET", "/models/mlp").status_code == 200


# --- precedence ----------------------------------------------------------------------


def test_model_config_yaml_beats_the_server_config(server, cleanup):
    cleanup.append("cfg")
    reply = mgmt(server, "POST", "/models", params={"url": "cfg.mar"})
    assert reply.status_code == 200, reply.text
    # minWorkers: 2 in the archive beats the server's --workers 1
    assert reply.json() == {"status": 'Model "cfg" Version: 1.0 registered with 2 initial workers'}
    [entry] = describe(server, "/models/cfg")
    assert {k: entry[k] for k in ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay")} == {
        "minWorkers": 2,
        "maxWorkers": 3,
        "batchSize": 4,
        "maxBatchDelay": 37,
    }
    assert (entry["responseTimeout"], entry["startupTimeout"]) == (55, 66)
    assert len(entry["workers"]) == 2
    # the worker runs with it, not just describe
    assert predict(server, "/predictions/cfg").json()["batch_size"] == 4


def test_api_parameters_beat_model_config_yaml(server, cleanup):
    cleanup.append("cfgapi")
    body = {
        "url": "cfg.mar",
        "model_name": "cfgapi",
        "batch_size": 8,
        "max_batch_delay": 5,
        "initial_workers": 1,
        "response_timeout": 9,
        "startup_timeout": 30,
    }
    reply = mgmt(server, "POST", "/models", json=body)
    assert reply.status_code == 200, reply.text
    [entry] = describe(server, "/models/cfgapi")
    assert {k: entry[k] for k in ("minWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "startupTimeout")} == {
        "minWorkers": 1,
        "batchSize": 8,
        "maxBatchDelay": 5,
        "responseTimeout": 9,
        "startupTimeout": 30,
    }
    # what the API did not set still comes from the archive
    assert entry["maxWorkers"] == 3
    assert predict(server, "/predictions/cfgapi").json()["batch_size"] == 8


def test_server_config_beats_the_defaults(server, cleanup):
    cleanup.append("plain")
    assert mgmt(server, "POST", "/models", params={"url": "ver.mar", "model_name": "plain"}).status_code == 200
    [entry] = describe(server, "/models/plain")
    # --workers 1 and --max-batch-delay 42 from the server; the rest are the defaults
    assert (entry["minWorkers"], entry["maxWorkers"]) == (1, 1)
    assert entry["maxBatchDelay"] == SERVER_MAX_BATCH_DELAY
    assert (entry["batchSize"], entry["responseTimeout"], entry["startupTimeout"]) == (1, 120, 120)
