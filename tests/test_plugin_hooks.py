"""The hooks beyond the stages: configure, dependency installation, metrics sink, CLI commands.

Each hook is implemented by a plugin installed as a distribution (entry points discovered by
the real loading path) and shown in what the server or the command line does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import torch

from helpers import Server, archive, fake_distribution, mlp_archive, mlp_expected, pythonpath, serving, wait_for
from hookserve.config import ServerConfig
from hookserve.frontend.model_client import ModelClient
from hookserve.frontend.request_metrics import model_client
from hookserve.hookspecs import hookimpl
from hookserve.pluginmanager import Hooks, create_plugin_manager

# Takes the config at configure time; serves what it took and writes what it was sent as
# metrics into the model store it took, one file per process.
PROBE_PLUGIN = """
import json
import os
from pathlib import Path

from hookserve.hookspecs import hookimpl

TAKEN = {}


@hookimpl
def hookserve_configure(config):
    TAKEN["model_store"] = config.model_store
    with open(os.environ["PROBE_CONFIGURED_LOG"], "a") as log:
        log.write(f"{os.getpid()}\\n")


class Configured:
    async def on_get(self, req, resp):
        resp.media = {"model_store": TAKEN.get("model_store"), "pid": os.getpid()}


@hookimpl
def hookserve_http_routes(routes, config):
    routes.add("inference", "/configured", Configured())


@hookimpl
def hookserve_record_metrics(metrics):
    path = Path(TAKEN["model_store"]) / f"metrics-{os.getpid()}.jsonl"
    with open(path, "a") as out:
        for m in metrics:
            out.write(json.dumps([m.name, m.value, m.unit, m.model_name, m.model_version, m.dimensions]) + "\\n")
"""

# Puts a folder that holds a module of the model's own into its workers' sys.path.
DEPENDENCIES_PLUGIN = """
import os

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import ModelEnvironment


@hookimpl
def hookserve_install_dependencies(archive, config):
    if archive.name == "needs_lib":
        return ModelEnvironment(sys_path=(os.environ["PRIVATE_LIB_DIR"],), environ={"PRIVATE_LIB_FACTOR": "3"})
"""

# The module the handler imports, found only in the folder the plugin names.
PRIVATE_LIB = """
import os

import torch


def scale(rows):
    return (torch.tensor(rows, dtype=torch.float32) * float(os.environ["PRIVATE_LIB_FACTOR"])).tolist()
"""

LIB_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    import private_lib  # only importable through the model's environment

    return private_lib.scale([row.get("data") or row.get("body") for row in data])
"""


# A batcher written before ``arriving`` existed (two-argument ``wait_time``) that would wait
# 2 s for more whatever the queue holds; only for the model named "patient".
PATIENT_BATCHER = """
from hookserve.hookspecs import hookimpl


class Patient:
    def __init__(self, batch_size):
        self.batch_size = batch_size

    def on_arrival(self):
        pass

    def on_replied(self, count):
        pass

    def wait_time(self, queued, waited):
        return max(0.0, 2.0 - waited)


@hookimpl
def hookserve_batcher(settings):
    if settings.model_name == "patient":
        return Patient(settings.batch_size)
"""

BATCH_SIZE_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    return [{"batch": len(data)} for _ in data]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("hooks")
    site = work / "site"
    fake_distribution(site, "probe-plugin", "0.3", {"probe": "probe_plugin_mod"}, {"probe_plugin_mod": PROBE_PLUGIN})
    fake_distribution(site, "deps-plugin", "1.0", {"deps": "deps_plugin_mod"}, {"deps_plugin_mod": DEPENDENCIES_PLUGIN})
    fake_distribution(site, "patient-batcher", "0.1", {"patient": "patient_mod"}, {"patient_mod": PATIENT_BATCHER})
    lib = work / "private-lib"
    lib.mkdir()
    (lib / "private_lib.py").write_text(PRIVATE_LIB)
    mlp_archive(work)
    for name in ("needs_lib", "no_lib"):
        archive(work, name, "handler.py", files={"handler.py": LIB_HANDLER})
    env = {
        "PYTHONPATH": pythonpath(site),
        "PROBE_CONFIGURED_LOG": str(work / "configured.log"),
        "PRIVATE_LIB_DIR": str(lib),
    }
    args = ["--model-store", str(work / "store"), "--workers", "1", "--frontend-workers", "1"]
    server = Server([*args, "--models", "mlp.mar", "needs_lib.mar", "no_lib.mar"], work, env=env)
    with serving(server):
        yield server, work


def test_configure_reaches_the_master_the_manager_and_the_frontend(served):
    server, work = served
    reply = requests.get(server.url("/configured"), timeout=30)
    assert reply.status_code == 200
    assert reply.json()["model_store"] == str(work / "store")
    configured = [int(pid) for pid in (work / "configured.log").read_text().split()]
    frontend = reply.json()["pid"]
    assert server.process.pid in configured  # hookserve serve's master
    assert frontend in configured
    manager = [pid for pid in configured if pid not in (server.process.pid, frontend)]
    assert len(manager) == 1 and manager[0] in server.pids()
    assert len(configured) == 3  # once per process; model workers inherit the manager's


def test_configure_is_historic_for_plugins_registered_later():
    hooks = Hooks(create_plugin_manager(third_party=False))
    config = ServerConfig(model_store="/models/here")
    hooks.configure(config=config)

    class Late:
        seen: list = []

        @hookimpl
        def hookserve_configure(self, config):
            self.seen.append(config.model_store)

    hooks.pm.register(Late(), name="late")
    assert Late.seen == ["/models/here"]


def test_a_model_runs_because_its_environment_holds_its_dependency(served):
    server, _ = served
    reply = requests.post(server.url("/predictions/needs_lib"), json=[1.0, 2.0], timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json() == [3.0, 6.0]
    # the control: the same handler without the environment cannot import its module
    reply = requests.post(server.url("/predictions/no_lib"), json=[1.0, 2.0], timeout=30)
    assert reply.status_code == 500
    assert "No module named 'private_lib'" in reply.json()["message"]


def metric_lines(store: Path, pid: int | None = None) -> list[list]:
    files = [store / f"metrics-{pid}.jsonl"] if pid else sorted(store.glob("metrics-*.jsonl"))
    return [json.loads(line) for path in files if path.exists() for line in path.read_text().splitlines()]


def test_a_batcher_plugin_sets_the_wait_and_a_full_batch_runs_at_once(served):
    """The plugin's batcher, not ``max_batch_delay``, decides how long a lone request waits;
    once the queue fills a batch the worker runs it whatever the batcher would say."""
    server, work = served
    archive(work, "patient", "handler.py", files={"handler.py": BATCH_SIZE_HANDLER})
    reply = requests.post(
        server.url("/models", "management"),
        params={"url": "patient.mar", "batch_size": 2, "max_batch_delay": 100, "initial_workers": 1},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    url = server.url("/predictions/patient")
    started = time.monotonic()
    assert requests.post(url, json={}, timeout=30).json() == {"batch": 1}
    assert time.monotonic() - started >= 1.9  # the plugin's 2 s, not 100 ms
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = time.monotonic()
        replies = list(pool.map(lambda _: requests.post(url, json={}, timeout=30).json(), range(2)))
        elapsed = time.monotonic() - started
    assert replies == [{"batch": 2}, {"batch": 2}]
    assert elapsed < 1.5, elapsed


def test_metrics_sink_gets_worker_batches_and_frontend_requests(served):
    server, work = served
    store = work / "store"
    rows = [[float(i)] * 64 for i in range(3)]
    for row in rows:
        reply = requests.post(server.url("/predictions/mlp"), json=row, timeout=30)
        assert reply.status_code == 200 and reply.json() == mlp_expected([row])[0]
    bad = requests.post(server.url("/predictions/mlp"), json=[1.0, 2.0], timeout=30)  # wrong shape
    assert bad.status_code == 500
    frontend = requests.get(server.url("/configured"), timeout=30).json()["pid"]

    def latencies():
        found = [m for m in metric_lines(store, frontend) if m[0] == "ts_inference_latency_microseconds"]
        return found if len([m for m in found if m[3] == "mlp"]) >= 4 else None

    recorded = [m for m in wait_for(latencies, what="the frontend's request metrics") if m[3] == "mlp"]
    assert [m[5]["status"] for m in recorded][-4:] == ["200", "200", "200", "500"]
    assert all(m[2] == "us" and m[4] == "1.0" and m[1] > 0 for m in recorded)

    worker = [m for m in metric_lines(store) if m[3] == "mlp" and m[0] in ("PredictionTime", "HandlerTime")]
    predictions = [m for m in worker if m[0] == "PredictionTime"]
    assert len(predictions) >= 4 and all(m[2] == "ms" and m[1] > 0 and m[4] == "1.0" for m in predictions)
    assert {m[5]["batch_size"] for m in predictions} == {"1"}
    # BaseHandler's own context.metrics.add_time("HandlerTime", ...), once per successful batch
    assert len([m for m in worker if m[0] == "HandlerTime"]) >= 3


def test_without_a_metrics_sink_nothing_is_measured(tmp_path):
    hooks = Hooks(create_plugin_manager(third_party=False))
    assert not hooks.records_metrics()
    assert type(model_client(hooks, str(tmp_path), 10, 0.0)) is ModelClient


def run_cli(args: list[str], site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=pythonpath(site))
    return subprocess.run(
        [sys.executable, "-m", "hookserve.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def command_plugin(name: str) -> str:
    return f"""
from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import CliCommand


def add_arguments(parser):
    parser.add_argument("--times", type=int, default=1)


def run(args):
    import torch

    print("{name}:", torch.ones(args.times).sum().item())
    return 7


@hookimpl
def hookserve_cli_commands():
    return [CliCommand(name="{name}", help="sum some ones", add_arguments=add_arguments, run=run)]
"""


def test_a_plugin_adds_a_cli_command(tmp_path):
    fake_distribution(tmp_path, "ones-plugin", "0.1", {"ones": "ones_mod"}, {"ones_mod": command_plugin("ones")})
    result = run_cli(["ones", "--times", "4"], tmp_path)
    assert result.returncode == 7, result.stderr
    assert result.stdout.strip() == f"ones: {torch.ones(4).sum().item()}"
    listing = run_cli(["--help"], tmp_path).stdout
    assert "ones" in listing and "sum some ones" in listing and "demo" in listing


def test_a_command_name_given_twice_is_an_error_naming_both_plugins(tmp_path):
    fake_distribution(tmp_path, "one-plugin", "0.1", {"first": "first_mod"}, {"first_mod": command_plugin("same")})
    fake_distribution(tmp_path, "two-plugin", "0.2", {"second": "second_mod"}, {"second_mod": command_plugin("same")})
    result = run_cli(["plugins"], tmp_path)
    assert result.returncode == 2
    message = result.stderr
    assert message.startswith("hookserve: error: command 'same' is registered by plugin")
    assert "'first' (one-plugin 0.1)" in message and "'second' (two-plugin 0.2)" in message


def test_a_plugin_command_cannot_take_a_core_command_name(tmp_path):
    fake_distribution(
        tmp_path, "serve-plugin", "0.1", {"myserve": "myserve_mod"}, {"myserve_mod": command_plugin("serve")}
    )
    result = run_cli(["archive", "--help"], tmp_path)
    assert result.returncode == 2
    assert (
        "command 'serve' of plugin 'myserve' (serve-plugin 0.1) is taken by hookserve's core command" in result.stderr
    )
    # without that plugin the same command line works
    assert run_cli(["plugins", "--disable-plugin", "myserve"], tmp_path).returncode == 0
