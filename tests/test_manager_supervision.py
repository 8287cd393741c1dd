"""The gunicorn master supervises the model manager, with real signals against a real server.

SIGKILL the manager under load: the master starts a new one, which restores this run's
models and worker counts (here with ``--no-snapshot``: from the run folder's state), no
process of the old manager survives (its workers die with it), and every request gets
either its own right answer or a clear 5xx JSON error. A manager that keeps dying stops
the server with the reason in the log and an exit status that is not 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
import torch

from helpers import (
    PLAIN_GUNICORN,
    Server,
    alive,
    cmdline,
    free_port,
    mlp_archive,
    mlp_expected,
    parent_pid,
    process_group_pids,
    pythonpath,
    scale_archive,
    spawn_logged,
    wait_for,
    wait_ping,
)

CLIENTS = 3


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    work = tmp_path_factory.mktemp("supervision")
    mlp_archive(work)
    scale_archive(work, "2.0", 10.0, "ver-2")  # first: both are packed as ver.mar
    scale_archive(work, "1.0", 1.0, "ver")
    return work / "store"


def manager_pid(server: Server) -> int | None:
    """The master's child that runs ``hookserve.manager.registry``."""
    for pid in server.pids():
        if parent_pid(pid) == server.process.pid and "hookserve.manager" in cmdline(pid):
            return pid
    return None


def manager_family(server: Server) -> list[int]:
    """Every live process started as (or forked from) a manager of this server's run."""
    return [pid for pid in server.pids() if "hookserve.manager" in cmdline(pid) and alive(pid)]


def describe(server: Server) -> list[dict]:
    reply = requests.get(server.url("/models/mlp", "management"), timeout=10)
    reply.raise_for_status()
    return reply.json()[0]["workers"]


class Client(threading.Thread):
    def __init__(self, server: Server, rows: list, expected: list, stop: threading.Event):
        super().__init__(daemon=True)
        self.server, self.rows, self.expected, self.stop = server, rows, expected, stop
        self.right = 0
        self.right_after: list[float] = []  # when each right answer came (monotonic)
        self.errors_5xx: list[dict] = []
        self.wrong: list[tuple] = []

    def run(self) -> None:
        url = self.server.url("/predictions/mlp")
        index = 0
        with requests.Session() as session:
            while not self.stop.is_set():
                index = (index + 1) % len(self.rows)
                request_id = uuid.uuid4().hex
                try:
                    reply = session.post(url, json=self.rows[index], headers={"x-request-id": request_id}, timeout=60)
                except requests.RequestException as exc:
                    self.wrong.append(("no answer", repr(exc)))
                    continue
                if reply.status_code == 200:
                    answer = reply.json()
                    want = self.expected[index]
                    if (
                        reply.headers.get("x-request-id") == request_id
                        and answer["class"] == want["class"]
                        and answer["scores"] == pytest.approx(want["scores"], abs=1e-4)
                    ):
                        self.right += 1
                        self.right_after.append(time.monotonic())
                    else:
                        self.wrong.append(("wrong answer", index, reply.text[:200]))
                elif reply.status_code >= 500:
                    body = reply.json()  # a clear error: TorchServe's JSON shape, with a message
                    if set(body) != {"code", "type", "message"} or body["code"] != reply.status_code:
                        self.wrong.append(("unclear error", reply.status_code, reply.text[:200]))
                    else:
                        self.errors_5xx.append(body)
                else:
                    self.wrong.append(("status", reply.status_code, reply.text[:200]))


def test_manager_killed_under_load_is_restarted_with_its_models(store, tmp_path):
    generator = torch.Generator().manual_seed(7)
    rows = (torch.rand(300, 64, generator=generator) * 2 - 1).tolist()
    expected = mlp_expected(rows)
    server = Server(
        [
            "--model-store",
            str(store),
            "--no-snapshot",
            "--models",
            "mlp=mlp.mar",
            "--workers",
            "2",
            "--batch-size",
            "4",
        ],
        tmp_path,
    ).start()
    stop = threading.Event()
    clients = [Client(server, rows, expected, stop) for _ in range(CLIENTS)]
    try:
        server.wait_healthy()
        # a management change the restart must keep: 3 workers, where --workers said 2
        scaled = requests.put(
            server.url("/models/mlp", "management"), params={"min_worker": "3", "synchronous": "true"}, timeout=60
        )
        assert scaled.status_code == 200, scaled.text
        old_manager = manager_pid(server)
        old_family = manager_family(server)
        old_workers = {w["pid"] for w in describe(server)}
        assert old_manager and len(old_workers) == 3 and old_workers <= set(old_family)

        for client in clients:
            client.start()
        wait_for(lambda: sum(c.right for c in clients) > 30, timeout=30, what="load running")
        os.kill(old_manager, signal.SIGKILL)
        killed_at = time.monotonic()

        def serving_again() -> bool:
            reply = requests.get(server.url("/ping"), timeout=10)
            if reply.status_code != 200:
                return False
            workers = describe(server)
            return len(workers) == 3 and all(w["status"] == "READY" and w["pid"] not in old_workers for w in workers)

        wait_for(serving_again, timeout=30, interval=0.05, what="serving again after the manager was killed")
        recovered_s = time.monotonic() - killed_at
        time.sleep(1.0)  # load on the new workers
        stop.set()
        for client in clients:
            client.join(70)

        # no process of the old manager's family survives it
        wait_for(lambda: not any(alive(pid) for pid in old_family), timeout=10, what="old manager's workers gone")
        new_manager = manager_pid(server)
        assert new_manager and new_manager != old_manager
        assert sorted(manager_family(server)) == sorted([new_manager, *(w["pid"] for w in describe(server))])

        wrong = [w for c in clients for w in c.wrong]
        assert wrong == [], wrong
        answered_after = [t for c in clients for t in c.right_after if t > killed_at + recovered_s]
        assert answered_after, "no right answer after the recovery"
        errors = [e for c in clients for e in c.errors_5xx]
        print(f"recovered in {recovered_s:.2f} s; {sum(c.right for c in clients)} right answers, 5xx: {errors}")
        assert f"the model manager (pid {old_manager}) died (signal SIGKILL)" in server.log()
    finally:
        stop.set()
        server.stop()
    assert not any(alive(pid) for pid in server.pids())


def test_a_manager_that_keeps_dying_stops_the_server_with_the_reason(store, tmp_path):
    server = Server(
        ["--model-store", str(store), "--no-snapshot", "--models", "mlp=mlp.mar", "--workers", "1"], tmp_path
    )
    server.start()
    try:
        server.wait_healthy()
        killed: list[int] = []
        deadline = time.monotonic() + 60
        while server.process.poll() is None and time.monotonic() < deadline:
            pid = manager_pid(server)
            if pid and pid not in killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.01)
        assert server.process.wait(30) != 0
        assert len(killed) == 4, killed  # the first death and three restarts within the window
        log = server.log()
        assert "the model manager died 4 times within 60 s" in log, log
        assert "stopping the server so that its supervisor can restart it" in log
        wait_for(lambda: not [p for p in server.pids() if alive(p)], timeout=15, what="every process gone")
    finally:
        server.kill_group()


def test_plain_gunicorn_restarts_the_manager_too(store, tmp_path):
    """With ``gunicorn -c python:hookserve.gunicorn_conf`` (gunicorn's own arbiter), too."""
    port = free_port()
    args = (
        f"--ncs --model-store {store} --models mlp=mlp.mar --workers 1 --inference-address 127.0.0.1:{port} "
        f"--management-address 127.0.0.1:{free_port()} --metrics-address 127.0.0.1:{free_port()}"
    )
    log_path = tmp_path / "gunicorn.log"
    process = spawn_logged(PLAIN_GUNICORN, log_path, env=dict(os.environ, HOOKSERVE_ARGS=args))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ping(url, process, log_path)

        def manager() -> int | None:
            found = [
                p
                for p in process_group_pids(process.pid)
                if parent_pid(p) == process.pid and "hookserve.manager" in cmdline(p)
            ]
            return found[0] if found else None

        old = manager()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: manager() not in (None, old), timeout=10, what="a new manager")
        wait_ping(url, process, log_path)
        reply = requests.post(f"{url}/predictions/mlp", json=[0.5] * 64, timeout=30)
        assert reply.status_code == 200 and "class" in reply.json(), reply.text
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(30)
    wait_for(lambda: not [p for p in process_group_pids(process.pid) if alive(p)], timeout=10, what="all stopped")


def test_versions_defaults_and_worker_counts_survive_a_manager_restart(store, tmp_path):
    """With the snapshot on this time; /ping says the manager is restarting meanwhile."""
    server = Server(["--model-store", str(store)], tmp_path).start()
    mgmt = server.url("/models", "management")
    try:
        server.wait_healthy()
        for url in ("ver.mar", "ver-2.mar"):
            reply = requests.post(mgmt, params={"url": url, "initial_workers": "1"}, timeout=60)
            assert reply.status_code == 200, reply.text
        assert requests.put(f"{mgmt}/ver/2.0/set-default", timeout=30).status_code == 200
        reply = requests.put(f"{mgmt}/ver/1.0", params={"min_worker": "2", "synchronous": "true"}, timeout=60)
        assert reply.status_code == 200, reply.text
        before = {v["modelVersion"]: v for v in requests.get(f"{mgmt}/ver/all", timeout=10).json()}
        old_family = manager_family(server)

        os.kill(manager_pid(server), signal.SIGKILL)

        def restarting():
            reply = requests.get(server.url("/ping"), timeout=10)
            problems = reply.json().get("problems", [])
            return reply.status_code == 500 and problems and problems[0].startswith("the model manager is restarting")

        # the new manager needs a second or more (it imports torch): /ping says why it is not healthy
        wait_for(restarting, timeout=10, what="/ping saying the manager restarts")
        wait_for(
            lambda: requests.get(server.url("/ping"), timeout=10).json()["status"] == "Healthy",
            timeout=30,
            what="healthy",
        )

        # /ping counts the default version (2.0) only: wait for 1.0's workers too
        def all_versions_up():
            after = {v["modelVersion"]: v for v in requests.get(f"{mgmt}/ver/all", timeout=10).json()}
            up = all(w["status"] == "READY" for v in after.values() for w in v["workers"])
            return after if up else None

        after = wait_for(all_versions_up, timeout=30, what="every version's workers ready")
        assert sorted(after) == ["1.0", "2.0"]
        for number in after:
            assert after[number]["minWorkers"] == before[number]["minWorkers"]
            assert [w["status"] for w in after[number]["workers"]] == ["READY"] * before[number]["minWorkers"]
            assert not {w["pid"] for w in after[number]["workers"]} & {w["pid"] for w in before[number]["workers"]}
        assert after["1.0"]["minWorkers"] == 2
        # the default is still 2.0: its answer is 10 * x
        reply = requests.post(server.url("/predictions/ver"), data="3", timeout=30)
        assert reply.status_code == 200 and reply.json()["version"] == "2.0" and reply.json()["y"] == 30.0, reply.text
        assert not any(alive(pid) for pid in old_family)
    finally:
        server.stop()


def test_a_manager_that_cannot_start_stops_the_server(store, tmp_path):
    """Every manager dies as it starts (a ``sitecustomize`` that exits in the manager process):
    the master tries three more times, then stops the server, saying why."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\nif b'hookserve.manager' in open('/proc/self/cmdline', 'rb').read().split(b'\\0'):\n"
        "    os._exit(7)\n"
    )
    server = Server(
        ["--model-store", str(store), "--no-snapshot", "--models", "mlp=mlp.mar"],
        tmp_path,
        env={"PYTHONPATH": pythonpath(site)},
    ).start()
    try:
        assert server.process.wait(60) == 3
        log = server.log()
        assert log.count("died (exit code 7)") == 4, log
        assert "the model manager died 4 times within 60 s" in log, log
        wait_for(lambda: not [p for p in server.pids() if alive(p)], timeout=15, what="every process gone")
    finally:
        server.kill_group()


# --- the two ways a dead manager's workers go, each on its own ----------------------------


def test_a_forked_worker_dies_with_its_manager(tmp_path):
    """``die_with_parent`` (PR_SET_PDEATHSIG) in the child of a process that is SIGKILLed."""
    from hookserve.manager.registry import die_with_parent

    child_pid_file = tmp_path / "child"
    middle = os.fork()
    if middle == 0:  # the "manager"
        try:
            parent = os.getpid()
            child = os.fork()
            if child == 0:  # the "worker"
                die_with_parent(parent)
                time.sleep(60)
                os._exit(0)
            child_pid_file.write_text(str(child))
            time.sleep(60)
        finally:
            os._exit(0)
    child = int(wait_for(lambda: child_pid_file.exists() and child_pid_file.read_text(), what="the worker"))
    time.sleep(0.2)  # the worker has set its death signal (or sees its parent gone and exits)
    os.kill(middle, signal.SIGKILL)
    os.waitpid(middle, 0)
    wait_for(lambda: not alive(child), timeout=10, what="the worker gone with its manager")


def test_a_new_manager_kills_what_its_predecessor_left(tmp_path):
    from hookserve.manager.registry import kill_leftover_workers

    run_dir, other = tmp_path / "run", tmp_path / "other"
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)", "-m", "hookserve.manager"]
    leftover = subprocess.Popen([*sleeper, str(run_dir), "1"])
    unrelated = subprocess.Popen([*sleeper, str(other), "1"])
    try:
        wait_for(lambda: str(run_dir) in cmdline(leftover.pid) and str(other) in cmdline(unrelated.pid))
        assert kill_leftover_workers(run_dir) == [leftover.pid]
        assert leftover.wait(10) == -signal.SIGKILL
        assert unrelated.poll() is None
    finally:
        leftover.kill()
        unrelated.kill()
        leftover.wait()
        unrelated.wait()
