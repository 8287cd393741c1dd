"""Dynamic batching: batch fill, reply order, per-request failure, the low-load rule and
dropping requests whose client has gone away; on a real server."""

from __future__ import annotations

import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from helpers import Server, archive, serving
from hookserve.plugins.batching import ReplyAwareBatcher
from hookserve.tuning import send_buffer
from hookserve.tuning.send_buffer import send_buffer_shortfall

BATCH_HANDLER = """
    import os
    import time

    def handle(data, context):
        if data is None:
            return None
        with open(os.environ["SEEN_LOG"], "a") as seen:
            for idx in range(len(data)):
                seen.write(context.get_request_id(idx) + "\\n")
        out = []
        for idx, row in enumerate(data):
            body = row["body"]
            if body.get("sleep"):
                time.sleep(body["sleep"])
            if body.get("bad"):
                context.set_response_status(422, "bad input", idx)
                out.append({"error": "input %s is bad" % body["n"]})
            elif body.get("raise"):
                out.append(ValueError("input %s cannot be handled" % body["n"]))
            else:
                out.append({"n": body["n"], "batch": len(data)})
        return out
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("batching")
    archive(work, "b8", "handler.py", files={"handler.py": BATCH_HANDLER})
    archive(work, "slow", "handler.py", files={"handler.py": BATCH_HANDLER})
    srv = Server(
        ["--model-store", str(work / "store"), "--workers", "1", "--models", "b8.mar", "slow.mar"],
        work,
        env={"SEEN_LOG": str(work / "seen.log")},
    )
    with serving(srv):
        management = srv.url("/models", "management")
        # batching parameters through the management API (re-registered with them)
        assert requests.delete(f"{management}/b8", timeout=30).status_code == 200
        reply = requests.post(
            management,
            params={"url": "b8.mar", "batch_size": 8, "max_batch_delay": 500, "initial_workers": 1},
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        yield srv


def post(server, model, body, **kwargs):
    return requests.post(server.url(f"/predictions/{model}"), json=body, timeout=30, **kwargs)


def test_describe_shows_the_batching_settings(server):
    described = requests.get(server.url("/models/b8", "management"), timeout=10).json()[0]
    assert described["batchSize"] == 8 and described["maxBatchDelay"] == 500


def test_batches_fill_under_concurrency_and_replies_keep_their_order(server):
    with ThreadPoolExecutor(max_workers=24) as pool:
        replies = list(pool.map(lambda n: post(server, "b8", {"n": n}), range(48)))
    assert all(r.status_code == 200 for r in replies)
    assert [r.json()["n"] for r in replies] == list(range(48))  # each reply belongs to its own request
    sizes = [r.json()["batch"] for r in replies]
    assert max(sizes) > 1 and max(sizes) <= 8


def test_a_lone_request_is_not_held_for_the_batch_delay(server):
    # max_batch_delay is 500 ms: a worker that waited for a batch to fill would show it
    post(server, "b8", {"n": -1})
    for n in range(5):
        started = time.monotonic()
        reply = post(server, "b8", {"n": n})
        assert reply.json() == {"n": n, "batch": 1}
        assert time.monotonic() - started < 0.4


def test_one_bad_input_fails_only_its_request(server):
    def send(n):
        body = {"n": n, "bad": n == 3, "raise": n == 5, "sleep": 0.05 if n == 0 else 0}
        return post(server, "b8", body)

    for _ in range(5):
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(pool.map(send, range(8)))
        shared_batch = any(r.status_code == 200 and r.json()["batch"] > 1 for r in replies)
        if shared_batch:
            break
    assert shared_batch, "the requests never shared a batch"
    assert replies[3].status_code == 422 and replies[3].json() == {"error": "input 3 is bad"}
    assert replies[5].status_code == 500
    assert "ValueError" in replies[5].json()["message"] and "input 5" in replies[5].json()["message"]
    for n in (0, 1, 2, 4, 6, 7):
        assert replies[n].status_code == 200 and replies[n].json()["n"] == n


def test_request_of_a_client_that_went_away_is_dropped_before_it_runs(server):
    with ThreadPoolExecutor(max_workers=1) as pool:
        busy = pool.submit(post, server, "slow", {"n": 1, "sleep": 1.5}, headers={"x-request-id": "busy-1"})
        time.sleep(0.3)  # the worker is now inside the slow request
        body = b'{"n": 2}'
        with socket.create_connection(("127.0.0.1", server.ports["inference"])) as client:
            client.sendall(
                b"POST /predictions/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"x-request-id: gone-2\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            time.sleep(0.3)
        assert busy.result().status_code == 200
    assert post(server, "slow", {"n": 3}, headers={"x-request-id": "after-3"}).status_code == 200
    seen = (server.log_path.parent / "seen.log").read_text().split()
    assert "busy-1" in seen and "after-3" in seen
    assert "gone-2" not in seen, seen


def test_reply_aware_batcher_waits_only_for_requests_that_can_come():
    batcher = ReplyAwareBatcher(batch_size=8, max_batch_delay_s=0.005)
    assert batcher.wait_time(queued=1, waited=0) == 0  # nothing answered yet: nobody is coming back
    batcher.on_replied(3)
    batcher.on_arrival()
    assert batcher.wait_time(queued=1, waited=0.001) == pytest.approx(0.004)
    batcher.on_arrival()
    batcher.on_arrival()
    assert batcher.wait_time(queued=3, waited=0.001) == 0  # all three came back
    batcher.on_replied(8)
    assert batcher.wait_time(queued=8, waited=0) == 0  # full
    assert batcher.wait_time(queued=2, waited=0.006) == 0  # waited long enough


def test_a_request_withdrawn_while_the_worker_waits_for_a_batch_leaves_the_worker_serving(server):
    def pid():
        return requests.get(server.url("/models/b8", "management"), timeout=10).json()[0]["workers"][0]["pid"]

    before = pid()
    with ThreadPoolExecutor(max_workers=2) as pool:  # two replies: the worker now expects two requests back
        assert all(r.status_code == 200 for r in pool.map(lambda n: post(server, "b8", {"n": n}), range(2)))
    body = b'{"n": 99}'
    with socket.create_connection(("127.0.0.1", server.ports["inference"])) as client:
        client.sendall(
            b"POST /predictions/b8 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        time.sleep(0.1)  # inside the 500 ms the worker waits for a second request
    time.sleep(0.6)
    assert post(server, "b8", {"n": 5}).json()["n"] == 5
    assert pid() == before, "the worker died and was restarted"


def test_reply_aware_batcher_waits_for_requests_already_on_their_way():
    batcher = ReplyAwareBatcher(batch_size=8, max_batch_delay_s=0.005)
    # no reply sent yet, but a frontend has sent a request the worker is still reading
    assert batcher.wait_time(queued=1, waited=0.001, arriving=1) == pytest.approx(0.004)
    assert batcher.wait_time(queued=1, waited=0.006, arriving=1) == 0  # never past the delay
    assert batcher.wait_time(queued=2, waited=0.001, arriving=0) == 0  # it came: nothing else can
    assert batcher.wait_time(queued=8, waited=0, arriving=3) == 0  # full


SIZE_HANDLER = """
    import time

    def handle(data, context):
        if data is None:
            return None
        out = []
        for row in data:
            body = row.get("body")
            if isinstance(body, dict):
                time.sleep(body.get("sleep", 0))
                out.append({"batch": len(data), "bytes": 0})
            else:
                out.append({"batch": len(data), "bytes": len(body)})
        return out
"""


STAMP_HANDLER = """
    import time

    def handle(data, context):
        if data is None:
            return None
        started = time.time()
        for row in data:
            if isinstance(row.get("body"), dict):
                time.sleep(row["body"]["sleep"])
        return [{"batch": len(data), "started": started} for _ in data]
"""


@pytest.fixture(scope="module")
def large_body_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("batching-large")
    archive(work, "sizes", "handler.py", files={"handler.py": SIZE_HANDLER})
    archive(work, "stamps", "handler.py", files={"handler.py": STAMP_HANDLER})
    srv = Server(
        ["--model-store", str(work / "store"), "--workers", "1", "--models", "sizes.mar", "stamps.mar"]
        + ["--batch-size", "8", "--max-batch-delay", "1000"],
        work,
    )
    with serving(srv):
        yield srv


def test_a_large_body_still_arriving_joins_the_batch_that_waits_for_it(large_body_server):
    """A 48 MB body reaches the worker over many socket reads. The worker is busy when a small
    request and then the large one are sent; once free it has read the small one whole and
    the large one only in part. The frontend has marked the large one as sent, so the worker
    waits for it (within max_batch_delay) and runs both in one batch, instead of taking its
    queue, one request, for all there is."""
    url = large_body_server.url("/predictions/sizes")
    big = b"\x01" * (48 * 1024 * 1024)
    octets = {"Content-Type": "application/octet-stream"}
    assert requests.post(url, data=b"warm", headers=octets, timeout=30).json() == {"batch": 1, "bytes": 4}
    with ThreadPoolExecutor(max_workers=3) as pool:
        # busy long enough for the frontend to read the large body from its client (0.6 s was
        # too short on a loaded machine) and mark it sent before the worker is free
        busy = pool.submit(requests.post, url, json={"sleep": 3.0}, timeout=60)
        time.sleep(0.3)  # the worker is inside the busy request
        small = pool.submit(requests.post, url, data=b"small", headers=octets, timeout=60)
        time.sleep(0.1)  # the small one is forwarded first
        large = pool.submit(requests.post, url, data=big, headers=octets, timeout=60)
        assert busy.result().json() == {"batch": 1, "bytes": 0}
        assert small.result().json() == {"batch": 2, "bytes": 5}
        assert large.result().json() == {"batch": 2, "bytes": len(big)}


def test_a_lone_large_body_is_not_held_for_the_batch_delay(large_body_server):
    url = large_body_server.url("/predictions/sizes")
    big = b"\x02" * (8 * 1024 * 1024)
    octets = {"Content-Type": "application/octet-stream"}
    requests.post(url, data=big, headers=octets, timeout=30)
    for _ in range(3):
        started = time.monotonic()
        assert requests.post(url, data=big, headers=octets, timeout=30).json() == {"batch": 1, "bytes": len(big)}
        assert time.monotonic() - started < 0.8  # max_batch_delay is 1 s


@pytest.mark.skipif(send_buffer_shortfall() is not None, reason="the kernel caps socket send buffers (wmem_max)")
def test_bodies_sent_while_the_worker_is_busy_wait_whole_in_the_kernel(large_body_server):
    """A worker reads nothing while it runs a batch. Bodies a frontend forwards meanwhile must
    wait whole in the socket's kernel buffer (``tuning.send_buffer``), not in the frontend,
    which would have to run again and again to pass them on once the batch ends. Here the
    frontends are stopped once they have forwarded three 1 MiB bodies to the busy worker; the
    worker still reads them whole and runs them, in one batch, before the frontends go on."""
    url = large_body_server.url("/predictions/stamps")
    body = b"\x03" * (1 << 20)
    octets = {"Content-Type": "application/octet-stream"}
    frontends = large_body_server.frontend_pids()
    assert frontends
    assert requests.post(url, data=body, headers=octets, timeout=30).json()["batch"] == 1
    with ThreadPoolExecutor(max_workers=4) as pool:
        busy = pool.submit(requests.post, url, json={"sleep": 3.0}, timeout=60)
        time.sleep(0.3)  # the worker is inside the busy request
        large = [pool.submit(requests.post, url, data=body, headers=octets, timeout=60) for _ in range(3)]
        time.sleep(1.5)  # read and forwarded by the frontends; the busy request has 1.2 s to go
        for pid in frontends:
            os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(2.5)  # the busy request ends, then the three bodies' batch runs
        finally:
            resumed = time.time()
            for pid in frontends:
                os.kill(pid, signal.SIGCONT)
        assert busy.result().json()["batch"] == 1
        replies = [future.result().json() for future in large]
    assert [reply["batch"] for reply in replies] == [3, 3, 3]
    assert all(reply["started"] < resumed for reply in replies), (replies, resumed)


def test_a_kernel_that_grants_less_send_buffer_is_named_with_its_setting(monkeypatch):
    """Asked for more than any kernel here grants, the check reports what was granted and
    the sysctl that raises it (``hookserve serve`` logs this once at start)."""
    assert send_buffer_shortfall() is None or "net.core.wmem_max" in send_buffer_shortfall()
    monkeypatch.setattr(send_buffer, "WANTED_BYTES", 1 << 30)
    message = send_buffer_shortfall()
    assert message is not None and "KiB, not 1024 MiB" in message and "net.core.wmem_max" in message
