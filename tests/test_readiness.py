"""Readiness, against the real server: what a deployment script does (wait for ``/ping``,
then register; or register at once), and ``/ping`` over TorchServe 0.12's rule (the default
version of every model has its ``minWorkers`` ready, else 500 ``Unhealthy``), which names
the model that is short and counts a start-up model that failed to load.
"""

from __future__ import annotations

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
            return (reply,) if found else None  # a Response is falsy when its status is 500

        (reply,) = wait_for(settled_with_broken, timeout=60, interval=0.1, what="broken model reported")
        assert reply.status_code == 500 and reply.json()["status"] == "Unhealthy"
        assert "this model cannot load" in " ".join(reply.json()["problems"])
        # forgetting it (DELETE) makes the server healthy
        deleted = requests.delete(mgmt_url(server, "/models/broken"), timeout=30)
        assert deleted.status_code == 200, deleted.text
        wait_for(lambda: ping(server).status_code == 200, timeout=30, what="healthy without the broken model")
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
        assert reply.status_code == 500, reply.text
        assert reply.json() == {"status": "Unhealthy", "problems": ["hang/1.0: 1 of 2 workers ready"]}

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
        assert ping(server).status_code == 500

        marker.unlink()
        wait_for(lambda: ping(server).status_code == 200, timeout=60, what="healthy again")
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
