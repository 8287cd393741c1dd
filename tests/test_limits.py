"""Limits that hold (issue 12, item 7), against real servers on loopback.

Worker counts are bounded per model and server-wide (defaults from the machine, flags to
change them) and refused at once past a bound (400) or past the memory the machine has
(507); a synchronous scale that cannot complete says how many workers started and why;
nonsensical batch settings get 400 from the API and a clear refusal from
``model-config.yaml``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import Server, archive, manifest_json, mgmt, mlp_archive, serving
from hookserve.errors import InsufficientMemory
from hookserve.manager.limits import (
    check_memory,
    default_max_workers,
    default_max_workers_per_model,
    private_bytes,
)

ECHO = """
    def handle(data, context):
        if data is None:
            return None
        return [{"ok": True} for _ in data]
"""

# Loads at once, unless the marker file exists: then it never finishes loading.
SLOW_HANDLER = """
    import os
    import time

    MARKER = {marker!r}


    class Slow:
        def initialize(self, context):
            while os.path.exists(MARKER):
                time.sleep(0.05)

        def handle(self, data, context):
            return [{{"ok": True}} for _ in data]
"""

BAD_CONFIGS = {
    "zerobatch": ("batchSize: 0\n", "batchSize=0"),
    "negdelay": ("maxBatchDelay: -5\n", "maxBatchDelay=-5"),
    "halfbatch": ("batchSize: 1.5\n", "batchSize=1.5"),
    "wordbatch": ("batchSize: many\n", "batchSize='many'"),
    "negtimeout": ("responseTimeout: -1\n", "responseTimeout=-1"),
    "maxbelowmin": ("minWorkers: 2\nmaxWorkers: 1\n", "maxWorkers=1 is less than"),
}


def worker_pids(server: Server, model: str) -> list[int]:
    reply = mgmt(server, "GET", f"/models/{model}")
    return sorted(w["pid"] for entry in reply.json() for w in entry["workers"])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("limits")
    mlp_archive(work)
    archive(work, "echo", "handler.py", files={"handler.py": ECHO})
    for name, (config, _) in BAD_CONFIGS.items():
        archive(
            work,
            name,
            "handler.py",
            files={"handler.py": ECHO, "model-config.yaml": config},
            flags=["--config-file", "model-config.yaml"],
        )
    marker = work / "slow.marker"
    archive(work, "slow", "handler.py", files={"handler.py": SLOW_HANDLER.format(marker=str(marker))})
    # An archive whose weights are a sparse 1 TiB file: no disk used, and a worker for it
    # could never fit in memory, so the manager must refuse it before forking.
    # A folder archive, used in place.
    huge = work / "store" / "huge"
    (huge / "MAR-INF").mkdir(parents=True)
    (huge / "MAR-INF" / "MANIFEST.json").write_bytes(
        manifest_json("huge", handler="handler.py", serializedFile="huge.bin")
    )
    (huge / "handler.py").write_text(textwrap.dedent(ECHO))
    with open(huge / "huge.bin", "wb") as f:
        f.truncate(1 << 40)
    return work


@pytest.fixture(scope="module")
def server(work):
    """Default bounds, derived from this machine."""
    args = ["--model-store", str(work / "store"), "--models", "mlp=mlp.mar", "--workers", "1"]
    with serving(Server(args, work)) as srv:
        yield srv


# --- worker bounds -------------------------------------------------------------------


def test_default_bounds_follow_the_machine():
    assert default_max_workers_per_model(2) == 8 and default_max_workers_per_model(64) == 256
    assert default_max_workers(2, 24 << 30) == 32 and default_max_workers(64, 256 << 30) == 1024
    assert default_max_workers(1, 512 << 20) == 4


@pytest.mark.parametrize("count", ["bound+1", "100000"])
def test_scale_past_the_per_model_bound_is_refused_at_once(server, count):
    bound = default_max_workers_per_model()
    before = worker_pids(server, "mlp")
    started = time.monotonic()
    wanted = bound + 1 if count == "bound+1" else int(count)
    reply = mgmt(server, "PUT", "/models/mlp", params={"min_worker": str(wanted), "synchronous": "true"})
    assert time.monotonic() - started < 10
    assert reply.status_code == 400, reply.text
    message = reply.json()["message"]
    assert f"limit of {bound} workers per model" in message and "--max-workers-per-model" in message
    assert worker_pids(server, "mlp") == before
    assert mgmt(server, "GET", "/models/mlp").json()[0]["minWorkers"] == 1


def test_registration_past_the_per_model_bound_is_refused(server):
    wanted = max(50, default_max_workers_per_model() + 1)  # the 50 on a 2-core box
    reply = mgmt(server, "POST", "/models", params={"url": "echo.mar", "initial_workers": str(wanted)})
    assert reply.status_code == 400, reply.text
    assert "--max-workers-per-model" in reply.json()["message"]
    assert mgmt(server, "GET", "/models/echo").status_code == 404


def test_the_server_wide_bound_counts_every_model(work):
    args = ["--model-store", str(work / "store"), "--max-workers-per-model", "3", "--max-workers", "4"]
    with serving(Server(args, work)) as srv:
        reply = mgmt(srv, "POST", "/models", params={"url": "mlp.mar", "initial_workers": "3"})
        assert reply.status_code == 200, reply.text
        reply = mgmt(srv, "POST", "/models", params={"url": "echo.mar", "initial_workers": "2"})
        assert reply.status_code == 400, reply.text
        message = reply.json()["message"]
        assert "limit of 4 workers in all" in message and "--max-workers" in message
        reply = mgmt(srv, "PUT", "/models/mlp", params={"min_worker": "4", "synchronous": "true"})
        assert reply.status_code == 400 and "limit of 3 workers per model" in reply.json()["message"]
        reply = mgmt(srv, "POST", "/models", params={"url": "echo.mar", "initial_workers": "1"})
        assert reply.status_code == 200, reply.text


def test_workers_the_memory_cannot_hold_are_refused_with_507(server):
    reply = mgmt(server, "POST", "/models", params={"url": "huge", "initial_workers": "1"})
    assert reply.status_code == 507, reply.text
    body = reply.json()
    assert body["type"] == "InsufficientMemoryException" and "MemAvailable" in body["message"]
    assert mgmt(server, "GET", "/models/huge").status_code == 404
    # registered without workers, then scaled: refused the same way, nothing forked
    reply = mgmt(server, "POST", "/models", params={"url": "huge", "initial_workers": "0"})
    assert reply.status_code == 200, reply.text
    try:
        reply = mgmt(server, "PUT", "/models/huge", params={"min_worker": "1", "synchronous": "true"})
        assert reply.status_code == 507, reply.text
        assert worker_pids(server, "huge") == []
    finally:
        mgmt(server, "DELETE", "/models/huge")


def test_memory_check_uses_a_measured_worker():
    assert private_bytes(os.getpid()) > 1 << 20
    with pytest.raises(InsufficientMemory) as refused:
        check_memory("m", 1_000_000, private_bytes(os.getpid()), measured=True)
    assert refused.value.code == 507 and "measured from a running worker" in refused.value.message
    check_memory("m", 1, 1 << 20, measured=True)  # one small worker fits


# --- a scale that cannot complete ------------------------------------------------------


def test_a_scale_that_cannot_complete_says_how_many_workers_started_and_why(server, work):
    marker = work / "slow.marker"
    reply = mgmt(server, "POST", "/models", params={"url": "slow.mar", "initial_workers": "1", "startup_timeout": "5"})
    assert reply.status_code == 200, reply.text
    marker.touch()
    try:
        started = time.monotonic()
        reply = mgmt(server, "PUT", "/models/slow", params={"min_worker": "3", "synchronous": "true"})
        assert time.monotonic() - started < 30
        assert reply.status_code == 500, reply.text
        message = reply.json()["message"]
        assert not message.startswith("TimeoutError")
        assert "1 of 3 workers of model slow version 1.0 are ready" in message, message
        assert "startupTimeout=5s" in message and "model did not load within startupTimeout=5s" in message, message
    finally:
        marker.unlink()
        mgmt(server, "DELETE", "/models/slow")


# --- batch and timeout settings --------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"batch_size": "0"}, "batch_size=0"),
        ({"max_batch_delay": "-5"}, "max_batch_delay=-5"),
        ({"response_timeout": "-1"}, "response_timeout=-1"),
        ({"startup_timeout": "0"}, "startup_timeout=0"),
        ({"initial_workers": "-1"}, "initial_workers=-1"),
        ({"batch_size": "1.5"}, "batch_size"),
    ],
)
def test_nonsensical_settings_at_registration_get_400(server, params, named):
    reply = mgmt(server, "POST", "/models", params={"url": "echo.mar", "model_name": "bad", **params})
    assert reply.status_code == 400, reply.text
    assert named in reply.json()["message"]
    assert mgmt(server, "GET", "/models/bad").status_code == 404


@pytest.mark.parametrize("body", [{"batch_size": 1.5}, {"batch_size": True}, {"max_batch_delay": -5}])
def test_nonsensical_settings_in_a_json_body_get_400(server, body):
    reply = mgmt(server, "POST", "/models", json={"url": "echo.mar", "model_name": "badjson", **body})
    assert reply.status_code == 400, reply.text
    assert mgmt(server, "GET", "/models/badjson").status_code == 404


@pytest.mark.parametrize(
    "params",
    [{"min_worker": "3", "max_worker": "2"}, {"min_worker": "-1"}, {"max_worker": "-1"}, {"min_worker": "1.5"}],
)
def test_nonsensical_worker_counts_at_scale_get_400(server, params):
    reply = mgmt(server, "PUT", "/models/mlp", params=params)
    assert reply.status_code == 400, reply.text
    assert mgmt(server, "GET", "/models/mlp").json()[0]["minWorkers"] == 1


def test_nonsensical_worker_counts_in_a_json_scale_body_get_400(server):
    reply = mgmt(server, "PUT", "/models/mlp", json={"min_worker": 1.5})
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_nonsensical_model_config_yaml_fails_registration_naming_the_key(server, name):
    reply = mgmt(server, "POST", "/models", params={"url": f"{name}.mar"})
    assert reply.status_code == 400, reply.text
    message = reply.json()["message"]
    assert "model-config.yaml" in message and BAD_CONFIGS[name][1] in message, message
    assert mgmt(server, "GET", f"/models/{name}").status_code == 404


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--workers", "100000"], "--max-workers-per-model"),
        (["--batch-size", "0"], "--batch-size"),
        (["--max-batch-delay", "-5"], "--max-batch-delay"),
        (["--max-workers", "-1"], "--max-workers"),
    ],
)
def test_serve_refuses_nonsensical_server_settings(tmp_path, flags, named):
    result = subprocess.run(
        [sys.executable, "-m", "hookserve.cli", "serve", "--no-snapshot", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and named in result.stderr, result.stderr


def test_a_bad_model_config_at_start_fails_that_model_not_the_server(work):
    models = ["zerobatch=zerobatch.mar", "echo=echo.mar"]
    args = ["--model-store", str(work / "store"), "--models", *models, "--workers", "1"]
    server = Server(args, work).start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if mgmt(server, "GET", "/models/echo", timeout=5).status_code == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert mgmt(server, "GET", "/models/echo").status_code == 200, server.log()
        assert mgmt(server, "GET", "/models/zerobatch").status_code == 404
        assert "batchSize=0 is invalid" in server.log()
        assert Path(f"/proc/{server.process.pid}").exists()
    finally:
        server.stop()


def test_a_manager_that_does_not_answer_in_time_is_a_504_that_says_so(tmp_path, monkeypatch):
    """Not ``500 TimeoutError: `` with an empty message (what the frontend said before)."""
    import asyncio
    import socket

    from hookserve.errors import HookserveError
    from hookserve.frontend import model_client
    from hookserve.wire.control import CONTROL_SOCKET, ScaleWorkers

    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(tmp_path / CONTROL_SOCKET))
    silent.listen(1)
    monkeypatch.setattr(model_client, "DEFAULT_CALL_TIMEOUT_S", 0.3)
    client = model_client.ModelClient(str(tmp_path))
    try:
        with pytest.raises(HookserveError) as failed:
            asyncio.run(client.scale(ScaleWorkers(model="m")))
    finally:
        silent.close()
    assert failed.value.code == 504
    assert "did not answer scale within 0.3 s" in failed.value.message


def test_a_snapshot_past_the_bounds_is_cut_to_them_at_start(work, tmp_path):
    """A snapshot written before the bounds existed (the issue's min_worker=100000) must not
    fork past them when the server restores it."""
    from hookserve.manager.snapshot import read_snapshot, write_snapshot

    snapshots = tmp_path / "snapshot"
    args = ["--model-store", str(work / "store"), "--snapshot-dir", str(snapshots), "--max-workers-per-model", "2"]
    with serving(Server(args, work)) as srv:
        reply = mgmt(srv, "POST", "/models", params={"url": "echo.mar", "initial_workers": "1"})
        assert reply.status_code == 200, reply.text
    saved = read_snapshot(snapshots)
    saved["echo"]["versions"]["1.0"]["settings"]["min_worker"] = 100000
    write_snapshot(snapshots, saved)
    with serving(Server(args, work)) as srv:
        [entry] = mgmt(srv, "GET", "/models/echo").json()
        assert entry["minWorkers"] == 2 and len(entry["workers"]) == 2
        assert "100000 workers cut to 2" in srv.log()
