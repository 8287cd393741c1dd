"""Failure handling, each failure injected for real against a real server (no mocks).

A worker that exits or is SIGKILLed mid-request, a handler that hangs past responseTimeout,
more requests than the job queue holds, unregister and scale-down under load, and SIGTERM
to the server with requests in flight.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from helpers import Server, alive, archive, process_group_pids, serving, wait_for

# One handler for every scenario; the JSON body says what to do.
#   {"op": "sleep", "s": 0.5, "tag": "x"}  sleep, then answer with the worker's pid
#   {"op": "die"}                          leave a marker file, then os._exit(3)
#   {"op": "hang"}                         sleep for an hour
# A worker started after a death of its model loads slowly (RESTART_LOAD_S), so the time
# during which the model is down is long enough to observe.
FAILING_HANDLER = """
    import os
    import time


    class Failing:
        def initialize(self, context):
            self.name = context.model_name
            self.dir = os.environ["HS_FAILURE_DIR"]
            if os.path.exists(os.path.join(self.dir, self.name + ".died")):
                time.sleep(float(os.environ["HS_RESTART_LOAD_S"]))

        def handle(self, data, context):
            out = []
            for index, row in enumerate(data):
                command = row.get("body") or {}
                op = command.get("op", "sleep")
                running = os.path.join(self.dir, f"{self.name}-running-{os.getpid()}")
                if op == "die":
                    open(os.path.join(self.dir, self.name + ".died"), "w").close()
                    os._exit(3)
                if op == "hang":
                    time.sleep(3600)
                open(running, "w").close()
                try:
                    time.sleep(float(command.get("s", 0)))
                finally:
                    os.unlink(running)
                out.append({"pid": os.getpid(), "tag": command.get("tag"), "id": context.get_request_id(index)})
            return out
"""

RESTART_LOAD_S = 1.0


def refused(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return True
    return False


class Harness:
    """A server plus the calls the tests make on it."""

    def __init__(self, server: Server, failure_dir):
        self.server = server
        self.dir = failure_dir

    def register(self, name: str, **params) -> None:
        query = {"url": "failing.mar", "model_name": name, "batch_size": 1, "synchronous": "true", **params}
        reply = requests.post(self.server.url("/models", "management"), params=query, timeout=60)
        assert reply.status_code == 200, reply.text

    def describe(self, name: str) -> dict:
        reply = requests.get(self.server.url(f"/models/{name}", "management"), timeout=10)
        assert reply.status_code == 200, reply.text
        return reply.json()[0]

    def workers(self, name: str) -> list[dict]:
        return self.describe(name)["workers"]

    def ready_pids(self, name: str) -> list[int]:
        return [w["pid"] for w in self.workers(name) if w["status"] == "READY"]

    def ping(self) -> requests.Response:
        return requests.get(self.server.url("/ping"), timeout=10)

    def predict(self, name: str, command: dict, timeout: float = 60) -> requests.Response:
        request_id = uuid.uuid4().hex
        reply = requests.post(
            self.server.url(f"/predictions/{name}"), json=command, headers={"x-request-id": request_id}, timeout=timeout
        )
        assert reply.headers.get("x-request-id") == request_id
        return reply

    def running_pids(self, name: str) -> list[int]:
        prefix = f"{name}-running-"
        return [int(f[len(prefix) :]) for f in os.listdir(self.dir) if f.startswith(prefix)]

    def wait_recovered(self, name: str, count: int, gone: set[int] = frozenset(), timeout: float = 20) -> list[int]:
        """Wait until ``count`` workers are READY, none of them one of ``gone``; their pids."""

        def recovered():
            workers = self.workers(name)
            pids = [w["pid"] for w in workers if w["status"] == "READY" and w["pid"] not in gone]
            return pids if len(workers) == count and len(pids) == count else None

        return wait_for(recovered, timeout, what=f"{name}: {count} READY workers (not {sorted(gone)})")


def assert_clear_error(reply: requests.Response, code: int, type_: str, *words: str) -> dict:
    assert reply.status_code == code, reply.text
    body = reply.json()
    assert set(body) >= {"code", "type", "message"}, body
    assert body["code"] == code and body["type"] == type_, body
    for word in words:
        assert word in body["message"], body
    return body


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("failures")
    archive(work, "failing", "handler.py", files={"handler.py": FAILING_HANDLER})
    return work


def failing_server(work, name: str, args: list[str]) -> tuple[Server, object]:
    """A server (not started yet) and the folder its workers leave their markers in."""
    failure_dir = work / f"markers-{name}"
    failure_dir.mkdir()
    server = Server(
        ["--model-store", str(work / "store"), "--workers", "1", *args],
        work,
        env={"HS_FAILURE_DIR": str(failure_dir), "HS_RESTART_LOAD_S": str(RESTART_LOAD_S)},
    )
    return server, failure_dir


@pytest.fixture(scope="module")
def harness(work):
    """A server with no model at start: each test registers its own."""
    server, failure_dir = failing_server(work, "main", [])
    with serving(server):
        yield Harness(server, failure_dir)


# --- a worker that dies ----------------------------------------------------------------------


def test_worker_exiting_mid_request_is_a_clear_5xx_and_is_restarted(harness):
    h = harness
    h.register("dies", initial_workers=1)
    [old_pid] = h.ready_pids("dies")
    assert h.ping().status_code == 200
    with ThreadPoolExecutor(8) as pool:
        # "first" runs; "death" and "behind" wait in the worker's queue behind it.
        first = pool.submit(h.predict, "dies", {"op": "sleep", "s": 0.8, "tag": "first"})
        time.sleep(0.2)
        death = pool.submit(h.predict, "dies", {"op": "die"})
        time.sleep(0.1)
        behind = [pool.submit(h.predict, "dies", {"op": "sleep", "s": 0.1, "tag": f"b{i}"}) for i in range(3)]

        reply = death.result()
        died_at = time.monotonic()
        assert_clear_error(reply, 500, "WorkerDiedException", "died")

        # While the model has fewer live workers than minWorkers: /ping is unhealthy and
        # describe does not show the dead worker as READY.
        # (a list: a 500 Response is falsy)
        [unhealthy] = wait_for(lambda: [r for r in [h.ping()] if r.status_code == 500], 1.0, what="/ping unhealthy")
        assert unhealthy.json()["status"] == "Unhealthy"
        assert any("dies/1.0: 0 of 1" in p for p in unhealthy.json()["problems"]), unhealthy.json()
        seen = []
        while time.monotonic() - died_at < 10:
            [worker] = h.workers("dies")
            seen.append((worker["status"], worker["pid"]))
            if worker["status"] == "READY":
                break
            time.sleep(0.02)
        assert ("READY", old_pid) not in seen, seen
        assert any(status in ("DEAD", "STARTING") for status, _ in seen), seen
        assert seen[-1][0] == "READY" and seen[-1][1] != old_pid, seen
        new_pid = seen[-1][1]
        assert not alive(old_pid)
        # the restart waited for its back-off (0.5 s) and the slow reload
        assert time.monotonic() - died_at >= 0.5 + RESTART_LOAD_S - 0.2

        assert first.result().status_code == 200, first.result().text
        assert first.result().json()["pid"] == old_pid
        for future in behind:
            served = future.result()
            assert served.status_code == 200, served.text
            assert served.json()["pid"] == new_pid
    wait_for(lambda: h.ping().status_code == 200, 5, what="/ping healthy again")
    assert h.predict("dies", {"op": "sleep", "s": 0}).status_code == 200


def test_sigkill_mid_request_fails_only_the_started_request(harness):
    h = harness
    h.register("killed", initial_workers=2)
    before = set(h.ready_pids("killed"))
    assert len(before) == 2
    with ThreadPoolExecutor(8) as pool:
        replies = [pool.submit(h.predict, "killed", {"op": "sleep", "s": 1.0, "tag": f"r{i}"}) for i in range(5)]
        busy = wait_for(lambda: h.running_pids("killed"), 2, what="a request running")
        victim = busy[0]
        time.sleep(0.2)
        os.kill(victim, signal.SIGKILL)
        results = [f.result() for f in replies]
    failed = [r for r in results if r.status_code != 200]
    assert len(failed) == 1, [(r.status_code, r.text) for r in results]
    assert_clear_error(failed[0], 500, "WorkerDiedException", "died")
    assert all(r.json()["pid"] != victim for r in results if r.status_code == 200)
    after = h.wait_recovered("killed", 2, gone={victim})
    assert victim not in after and not alive(victim)
    assert h.predict("killed", {"op": "sleep", "s": 0}).status_code == 200


# --- a handler that hangs ----------------------------------------------------------------------


def test_hang_past_response_timeout_is_504_and_the_worker_is_replaced(harness):
    h = harness
    h.register("hangs", initial_workers=1, response_timeout=2)
    [old_pid] = h.ready_pids("hangs")
    started = time.monotonic()
    reply = h.predict("hangs", {"op": "hang"})
    elapsed = time.monotonic() - started
    assert_clear_error(reply, 504, "ResponseTimeoutException", "responseTimeout=2", "hangs")
    assert 1.8 <= elapsed < 5, elapsed
    [new_pid] = h.wait_recovered("hangs", 1, gone={old_pid})
    wait_for(lambda: not alive(old_pid), 5, what=f"hung worker {old_pid} gone")
    after = h.predict("hangs", {"op": "sleep", "s": 0})
    assert after.status_code == 200 and after.json()["pid"] == new_pid


def test_request_queued_behind_a_hung_one_is_served_by_the_replacement(harness):
    h = harness
    h.register("hangq", initial_workers=1, response_timeout=2)
    [old_pid] = h.ready_pids("hangq")
    with ThreadPoolExecutor(2) as pool:
        hung = pool.submit(h.predict, "hangq", {"op": "hang"})
        time.sleep(0.3)
        queued = pool.submit(h.predict, "hangq", {"op": "sleep", "s": 0, "tag": "queued"})
        assert_clear_error(hung.result(), 504, "ResponseTimeoutException")
        # it never started: it goes to the replacement worker, it does not share the timeout
        assert queued.result().status_code == 200, queued.result().text
        assert queued.result().json()["pid"] != old_pid
    h.wait_recovered("hangq", 1, gone={old_pid})


def test_waiting_in_the_queue_does_not_count_against_response_timeout(harness):
    """responseTimeout bounds the handler's time on a request, as in TorchServe: requests
    that wait for a slow (not hung) worker are neither timed out nor do they get it killed."""
    h = harness
    h.register("slowq", initial_workers=1, response_timeout=2)
    [pid] = h.ready_pids("slowq")
    with ThreadPoolExecutor(5) as pool:
        replies = [pool.submit(h.predict, "slowq", {"op": "sleep", "s": 0.8, "tag": f"q{i}"}) for i in range(5)]
        results = [f.result() for f in replies]
    assert [r.status_code for r in results] == [200] * 5, [r.text for r in results]
    assert h.ready_pids("slowq") == [pid]


# --- unregister and scale down under load ------------------------------------------------------


class Load:
    """Client threads that send slow requests back to back until stopped."""

    def __init__(self, h: Harness, name: str, threads: int = 4, seconds: float = 0.3):
        self.h, self.name, self.seconds = h, name, seconds
        self.results: list[tuple[float, float, int, dict]] = []  # (sent, answered, status, body)
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                reply = self.h.predict(self.name, {"op": "sleep", "s": self.seconds}, timeout=30)
                body = reply.json()
            except Exception as exc:  # noqa: BLE001 - every failure is a finding
                with self.lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with self.lock:
                self.results.append((sent, time.monotonic(), reply.status_code, body))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(40)


def test_unregister_under_load_completes_accepted_requests(harness):
    h = harness
    h.register("unreg", initial_workers=2)
    pids = h.ready_pids("unreg")
    with Load(h, "unreg") as load:
        time.sleep(1.0)
        delete_sent = time.monotonic()
        reply = requests.delete(h.server.url("/models/unreg", "management"), timeout=30)
        delete_done = time.monotonic()
        assert reply.status_code == 200, reply.text
        time.sleep(1.0)
    assert load.errors == []
    before = [r for r in load.results if r[0] < delete_sent - 0.05]
    after = [r for r in load.results if r[0] > delete_done]
    assert len(before) >= 4 and after, (len(before), len(after))
    assert all(status == 200 for _, _, status, _ in before), before
    # some of them were still running when the model was removed
    assert any(answered > delete_done for _, answered, _, _ in before)
    assert all(status in (200, 404) for _, _, status, _ in load.results), load.results
    for _, _, status, body in after:
        assert status == 404 and body["type"] == "ModelNotFoundException", body
    assert h.predict("unreg", {"op": "sleep"}).status_code == 404
    wait_for(lambda: not any(alive(p) for p in pids), 10, what="unregistered model's workers gone")


def test_scale_down_under_load_completes_accepted_requests(harness):
    h = harness
    h.register("scaled", initial_workers=2)
    pids = set(h.ready_pids("scaled"))
    with Load(h, "scaled") as load:
        time.sleep(1.0)
        reply = requests.put(
            h.server.url("/models/scaled", "management"), params={"min_worker": 1, "synchronous": "true"}, timeout=30
        )
        scaled_at = time.monotonic()
        assert reply.status_code == 200, reply.text
        time.sleep(1.0)
    assert load.errors == []
    assert len(load.results) >= 8
    assert [s for _, _, s, _ in load.results if s != 200] == [], load.results
    [kept] = h.ready_pids("scaled")
    [retired] = pids - {kept}
    # requests were still being answered by the retired worker after the scale-down
    assert any(body["pid"] == retired for _, answered, _, body in load.results if answered > scaled_at - 0.3)
    wait_for(lambda: not alive(retired), 10, what=f"retired worker {retired} gone")
    described = h.describe("scaled")
    assert described["minWorkers"] == 1 and [w["pid"] for w in described["workers"]] == [kept]


# --- the job queue -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_queue(work):
    server, failure_dir = failing_server(work, "queue", ["--job-queue-size", "2", "--models", "queued=failing.mar"])
    with serving(server):
        yield Harness(server, failure_dir)


def test_more_requests_than_the_queue_holds_get_503_and_accepted_ones_complete(small_queue):
    h = small_queue
    barrier = threading.Barrier(10)

    def send(i: int) -> requests.Response:
        barrier.wait()
        return h.predict("queued", {"op": "sleep", "s": 0.5, "tag": f"q{i}"})

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(send, range(10)))
    codes = sorted(r.status_code for r in results)
    assert set(codes) == {200, 503}, codes
    assert codes.count(200) >= 2, codes
    for reply in results:
        if reply.status_code == 503:
            assert_clear_error(reply, 503, "ServiceUnavailableException", "job_queue_size=2", "queued")
        else:
            assert reply.json()["tag"].startswith("q")
    # the queue is free again
    assert h.predict("queued", {"op": "sleep", "s": 0}).status_code == 200
    status = h.describe("queued")["jobQueueStatus"]
    assert status == {"remainingCapacity": 2, "pendingRequests": 0}


# --- SIGTERM to the server ---------------------------------------------------------------------


def test_sigterm_finishes_in_flight_requests_and_leaves_no_process(work):
    server, failure_dir = failing_server(work, "sigterm", ["--models", "slow=failing.mar", "--workers", "2"])
    server.start()
    h = Harness(server, failure_dir)
    try:
        server.wait_healthy()
        pids = server.pids()
        assert len(pids) >= 5, pids  # master, frontend, manager, two model workers
        with ThreadPoolExecutor(4) as pool:
            replies = [pool.submit(h.predict, "slow", {"op": "sleep", "s": 1.5, "tag": f"t{i}"}) for i in range(4)]
            # all four must have reached the server (SIGTERM stops it accepting connections)
            wait_for(
                lambda: h.describe("slow")["jobQueueStatus"]["pendingRequests"] == 4, 5, what="four requests accepted"
            )
            # (a fresh frontend may send a first burst to one worker: any running will do)
            wait_for(lambda: h.running_pids("slow"), 3, what="a request running")
            os.kill(server.process.pid, signal.SIGTERM)
            # It soon stops accepting, while the requests above are still running (gunicorn's
            # ASGI worker looks at its stop flag once a second, so not at once).
            wait_for(lambda: refused(server.url("/ping")), 2.0, interval=0.05, what="new connections refused")
            assert not all(f.done() for f in replies)
            results = [f.result() for f in replies]
        assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
        server.process.wait(40)
        assert server.process.returncode == 0, server.log()
        assert [p for p in pids if alive(p)] == [], server.log()
        assert [p for p in process_group_pids(server.process.pid) if alive(p)] == []
        assert "all model workers stopped" in server.log()
    finally:
        server.kill_group()
