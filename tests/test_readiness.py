"""Readiness, against the real server: what a deployment script does (wait for ``/ping``,
then register; or register at once), and ``/ping`` over TorchServe's rule on the default
versions' ``minWorkers`` (200 ``Healthy`` when all run, 200 ``Partial Healthy`` when some
do, 500 ``Unhealthy`` when none do), which names the model that is short and counts a
start-up model that failed to load.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest
import requests

from helpers import Server, archive, mlp_archive, wait_for

# Loads at once unless $HS_HANG_MARKER exists: then initialize() waits until it is removed,
# which holds a worker in STARTING for as long as a test needs.
HANGING_HANDLER = """
    import os
    import time


    class Handler:
        def initialize(self, context):
            while os.path.exists(os.environ["HS_HANG_MARKER"]):
                time.sleep(0.05)

        def handle(self, data, context):
            return [{"pid": os.getpid()} for _ in data]
"""

BROKEN_HANDLER = """
    class Broken:
        def initialize(self, context):
            raise RuntimeError("this model cannot load")

        def handle(self, data, context):
            return data
"""


def mgmt_url(server: Server, path: str) -> str:
    return server.url(path, "management")


def ping(server: Server) -> requests.Response:
    return requests.get(server.url("/ping"), timeout=10)


def wait_listening(server: Server, listener: str, timeout: float = 60.0) -> None:
    """Until the listener accepts connections (the frontends are up), not until healthy."""

    def up() -> bool:
        assert server.process.poll() is None, server.log()
        try:
            requests.get(server.url("/ping", listener), timeout=2)
            return True
        except requests.ConnectionError:
            return False

    wait_for(up, timeout=timeout, what=f"{listener} listener")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("readiness")
    mlp_archive(work)
    v2 = archive(work, "hang", "handler.py", files={"handler.py": HANGING_HANDLER}, flags=["--version", "2.0"])
    v2.rename(v2.with_name("hang-v2.mar"))
    archive(work, "hang", "handler.py", files={"handler.py": HANGING_HANDLER}, flags=["--version", "1.0"])
    archive(work, "broken", "handler.py", files={"handler.py": BROKEN_HANDLER})
    return work / "store"


def test_a_script_that_waits_for_ping_then_registers(store, tmp_path):
    """What a TorchServe deployment script does: poll /ping until 200, register at once."""
    server = Server(["--model-store", str(store), "--no-snapshot"], tmp_path).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.process.poll() is None, server.log()
            assert time.monotonic() < deadline, server.log()
            try:
                reply = ping(server)
            except requests.ConnectionError:
                time.sleep(0.01)
                continue
            if reply.status_code == 200:
                break
            # before it is healthy /ping says why, in TorchServe's shape
            assert reply.status_code == 500 and reply.json()["status"] == "Unhealthy", reply.text
            time.sleep(0.01)
        assert reply.json() == {"status": "Healthy"}
        registered = requests.post(
            mgmt_url(server, "/models"), params={"url": "mlp.mar", "initial_workers": "1"}, timeout=60
        )
        assert registered.status_code == 200, registered.text
        answer = requests.post(server.url("/predictions/mlp"), json=[0.5] * 64, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()


def test_calls_sent_before_the_manager_is_up_wait_for_it(store, tmp_path):
    """A registration sent as soon as the management port answers, before /ping is healthy,
    and a prediction for a start-up model sent as early, both wait for the manager."""
    server = Server(
        ["--model-store", str(store), "--no-snapshot", "--models", "early=mlp.mar", "--workers", "1"], tmp_path
    ).start()
    try:
        wait_listening(server, "management")
        early_ping = ping(server)
        registered = requests.post(
            mgmt_url(server, "/models"), params={"url": "mlp.mar", "initial_workers": "1"}, timeout=60
        )
        assert registered.status_code == 200, (registered.text, server.log())
        answer = requests.post(server.url("/predictions/early"), json=[0.5] * 64, timeout=60)
        assert answer.status_code == 200, (answer.text, server.log())
        # the first look came before the manager was up (a second and more, importing torch)
        assert early_ping.status_code == 500, early_ping.text
        assert "manager" in " ".join(early_ping.json()["problems"])
    finally:
        server.stop()


def test_ping_follows_the_default_versions_minimum_workers(store, tmp_path):
    marker = tmp_path / "hang-marker"
    server = Server(
        [
            "--model-store",
            str(store),
            "--no-snapshot",
            "--models",
            "mlp=mlp.mar",
            "broken=broken.mar",
            "--workers",
            "1",
        ],
        tmp_path,
        env={"HS_HANG_MARKER": str(marker)},
    )
    server.start()
    try:
        wait_listening(server, "inference")

        # a start-up model that failed to load is part of the answer, not hidden
        def settled_with_broken():
            reply = ping(server)
            problems = reply.json().get("problems", [])
            found = any(p.startswith("broken: failed to load at start-up") for p in problems)
            # the good model's worker ready beside it: some of what should run does
            return (reply,) if found and reply.json()["status"] == "Partial Healthy" else None

        (reply,) = wait_for(settled_with_broken, timeout=60, interval=0.1, what="broken model reported")
        assert reply.status_code == 200
        assert "this model cannot load" in " ".join(reply.json()["problems"])
        # forgetting it (DELETE) makes the server healthy
        deleted = requests.delete(mgmt_url(server, "/models/broken"), timeout=30)
        assert deleted.status_code == 200, deleted.text
        wait_for(
            lambda: ping(server).json()["status"] == "Healthy", timeout=30, what="healthy without the broken model"
        )
        assert ping(server).json() == {"status": "Healthy"}

        registered = requests.post(
            mgmt_url(server, "/models"), params={"url": "hang.mar", "initial_workers": "1"}, timeout=60
        )
        assert registered.status_code == 200, registered.text
        assert ping(server).status_code == 200

        # some short: a second worker that cannot load while the marker exists
        marker.touch()
        scaled = requests.put(mgmt_url(server, "/models/hang"), params={"min_worker": "2"}, timeout=30)
        assert scaled.status_code == 202, scaled.text
        reply = ping(server)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"status": "Partial Healthy", "problems": ["hang/1.0: 1 of 2 workers ready"]}

        # none of the workers that should run: the ready one killed, its replacement hangs too
        ready = [
            w
            for w in requests.get(mgmt_url(server, "/models/hang"), timeout=10).json()[0]["workers"]
            if w["status"] == "READY"
        ]
        assert len(ready) == 1
        os.kill(ready[0]["pid"], signal.SIGKILL)
        wait_for(
            lambda: ping(server).json().get("problems") == ["hang/1.0: 0 of 2 workers ready"],
            timeout=30,
            what="0 of 2 ready",
        )
        # mlp's worker still runs: partial (test_failures sees Unhealthy when a lone model's worker dies)
        assert ping(server).status_code == 200
        assert ping(server).json()["status"] == "Partial Healthy"

        marker.unlink()
        wait_for(lambda: ping(server).json()["status"] == "Healthy", timeout=60, what="healthy again")
        assert ping(server).json() == {"status": "Healthy"}

        # a version that is not the default does not count (TorchServe looks at default versions only)
        marker.touch()
        added = requests.post(
            mgmt_url(server, "/models"),
            params={"url": "hang-v2.mar", "initial_workers": "1", "synchronous": "false"},
            timeout=60,
        )
        assert added.status_code == 202, added.text
        versions = requests.get(mgmt_url(server, "/models/hang/all"), timeout=10).json()
        assert {v["modelVersion"]: [w["status"] for w in v["workers"]] for v in versions}["2.0"] == ["STARTING"]
        assert ping(server).json() == {"status": "Healthy"}
    finally:
        if marker.exists():
            marker.unlink()
        server.stop()


# --- the rule and the waits, on a run folder written by hand (no server) ----------------------


def write_routes(run_dir: Path, models: dict, failed: dict | None = None, state: str = "ready", **manager) -> None:
    routes = {"models": models, "failed": failed or {}, "manager": {"state": state, **manager}}
    (run_dir / "routes.json").write_text(json.dumps(routes))


def version(min_worker: int, *states: str) -> dict:
    workers = [
        {"id": f"w{i}", "pid": 0, "state": s, "device": "cpu", "socket": f"/nowhere/{i}.sock", "started_at": 0.0}
        for i, s in enumerate(states)
    ]
    settings = {
        "min_worker": min_worker,
        "max_worker": min_worker,
        "batch_size": 1,
        "max_batch_delay": 100,
        "response_timeout": 1,
        "startup_timeout": 120,
    }
    return {
        "state": "READY",
        "url": "m.mar",
        "runtime": "python",
        "loaded_at_startup": True,
        "device_type": None,
        "settings": settings,
        "workers": workers,
    }


def test_health_rule_counts_ready_workers_of_default_versions(tmp_path):
    from hookserve.frontend.model_client import ModelClient

    client = ModelClient(str(tmp_path))
    assert client.health() == ("Unhealthy", ["the model manager has not started"])
    write_routes(tmp_path, {}, state="starting")
    client.refresh(force=True)
    assert client.health() == ("Unhealthy", ["the model manager is still starting"])
    write_routes(tmp_path, {})
    client.refresh(force=True)
    assert client.health() == ("Healthy", [])
    models = {
        # the default version is short; version 2.0 (not the default) does not count
        "a": {"default": "1.0", "versions": {"1.0": version(2, "READY", "STARTING"), "2.0": version(1, "DEAD")}},
        "b": {"default": "1.0", "versions": {"1.0": version(0)}},  # no worker wanted: fine
        "c": {"default": "3", "versions": {"3": version(1, "READY", "READY")}},  # more than enough
    }
    write_routes(tmp_path, models, failed={"bad": "ArchiveError: no MANIFEST.json"})
    client.refresh(force=True)
    # 2 of the 4 workers that should run do (a: 1 of 2, c: 1 of 1, bad: 0 of 1)
    assert client.health() == (
        "Partial Healthy",
        ["a/1.0: 1 of 2 workers ready", "bad: failed to load at start-up: ArchiveError: no MANIFEST.json"],
    )
    write_routes(tmp_path, {"a": models["a"]}, failed={"bad": "ArchiveError: no MANIFEST.json"})
    client.refresh(force=True)
    assert client.health()[0] == "Partial Healthy"
    write_routes(tmp_path, {"d": {"default": "1", "versions": {"1": version(2, "STARTING", "DEAD")}}})
    client.refresh(force=True)
    assert client.health() == ("Unhealthy", ["d/1: 0 of 2 workers ready"])
    write_routes(tmp_path, {}, failed={"bad": "ArchiveError: no MANIFEST.json"})
    client.refresh(force=True)
    assert client.health() == ("Unhealthy", ["bad: failed to load at start-up: ArchiveError: no MANIFEST.json"])
    write_routes(tmp_path, models, state="restarting", reason="the previous manager died (signal SIGKILL)")
    client.refresh(force=True)
    assert client.health() == (
        "Unhealthy",
        ["the model manager is restarting: the previous manager died (signal SIGKILL)"],
    )


@pytest.mark.parametrize(
    "state, bound, message",
    [
        ("starting", "MANAGER_START_WAIT_S", "the model manager is still starting after 0 s of waiting"),
        ("restarting", "MANAGER_START_WAIT_S", "the model manager is restarting: it died after 0 s of waiting"),
        ("ready", "UNREACHABLE_GRACE_S", "the model manager is not reachable (No such file or directory)"),
        ("stopped", "UNREACHABLE_GRACE_S", "the model manager has stopped: it died"),
    ],
)
def test_a_call_waits_for_a_starting_manager_then_says_why(tmp_path, monkeypatch, state, bound, message):
    from hookserve.errors import ServiceUnavailable
    from hookserve.wire import control

    monkeypatch.setattr(control, bound, 0.3)
    write_routes(tmp_path, {}, state=state, reason="it died")
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as raised:
        asyncio.run(control.call_manager(str(tmp_path), control.ReplaceWorker(socket="none")))
    waited = time.monotonic() - started
    assert raised.value.message.startswith(message), raised.value.message
    assert raised.value.code == 503
    assert waited < 0.2 if state == "stopped" else waited >= 0.3


def test_a_call_made_while_starting_is_answered_once_the_manager_listens(tmp_path):
    """The wait ends as soon as the control socket listens: the call then gets its answer."""
    from hookserve.wire import control

    write_routes(tmp_path, {}, state="starting")

    async def manager_later() -> None:
        await asyncio.sleep(0.3)

        async def answer(reader, writer):
            await reader.readline()
            writer.write(b'{"status": 200, "body": {"status": "ok"}}\n')
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(answer, str(tmp_path / control.CONTROL_SOCKET))
        await asyncio.sleep(1)
        server.close()

    async def both():
        later = asyncio.ensure_future(manager_later())
        reply = await control.call_manager(str(tmp_path), control.ReplaceWorker(socket="none"))
        await later
        return reply

    assert asyncio.run(both()) == (200, {"status": "ok"})
