"""Streamed replies on a real server: a handler written the TorchServe 0.12 way calls
``ts.handler_utils.utils.send_intermediate_predict_response`` during ``inference`` and the
client reads each part as one HTTP chunk while the handler is still running, in order, the
final return value last.

Also: a handler that never streams is answered with a Content-Length as before; in a batch
each request's parts reach only its own client; a handler that fails after streaming ends
the response without its last chunk; a client that leaves mid-stream has its remaining
parts dropped, and the same worker serves the next request.

Chunks are read off a raw socket so that their framing is what is checked, not what an
HTTP library makes of it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from helpers import Server, archive, mgmt, serving, wait_for
from hookserve.wire.framing import FrameReader, Reply, decode_reply, encode_reply

pytest.importorskip("ts")

# The JSON body says what to stream: ``parts`` intermediate replies ``<tag>:<i>/<batch
# size>``, ``gap`` seconds apart; after the first, wait until the file ``gate`` exists (the
# test creates it once it has read that chunk); ``fail_after``: raise after that many
# parts (with ``fail_code``: a PredictionException of that status); the final reply is ``<tag>:end``. When the batch is done, ``<tag>.done`` is written.
STREAMING_HANDLER = """
    import json
    import os
    import time

    from ts.handler_utils.utils import send_intermediate_predict_response
    from ts.torch_handler.base_handler import BaseHandler
    from ts.utils.util import PredictionException


    class StreamingHandler(BaseHandler):
        def initialize(self, context):
            self.dir = os.environ["HS_STREAM_DIR"]
            self.initialized = True

        def preprocess(self, data):
            return [row.get("data") or row.get("body") for row in data]

        def inference(self, commands):
            try:
                steps = max(c.get("parts", 0) for c in commands)
                for step in range(steps):
                    for c in commands:
                        if c.get("fail_after") == step and c.get("fail_code"):
                            raise PredictionException(f"{c['tag']} refused after {step} parts", c["fail_code"])
                        if c.get("fail_after") == step:
                            raise ValueError(f"{c['tag']} failed after {step} parts")
                    replies = [f"{c['tag']}:{step}/{len(commands)}\\n" for c in commands]
                    send_intermediate_predict_response(
                        replies, self.context.request_ids, "Intermediate Prediction success", 200, self.context
                    )
                    if step == 0:
                        for c in commands:
                            if c.get("gate"):
                                self._wait_for(c["gate"])
                    time.sleep(max(c.get("gap", 0) for c in commands))
                return [f"{c['tag']}:end" for c in commands]
            finally:
                for c in commands:
                    open(os.path.join(self.dir, c["tag"] + ".done"), "w").close()

        def postprocess(self, outputs):
            return outputs

        def _wait_for(self, name):
            deadline = time.monotonic() + 30
            while not os.path.exists(os.path.join(self.dir, name)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gate {name} never opened")
                time.sleep(0.01)
"""


class IncompleteStream(Exception):
    """The connection ended before the terminating chunk."""


class ChunkedClient:
    """One POST over a raw socket: the status and headers, then the body chunk by chunk as
    the server writes them."""

    def __init__(self, port: int, path: str, command: dict):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        body = json.dumps(command).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def chunks(self) -> Iterator[bytes]:
        while True:
            size_line = self.file.readline()
            if not size_line:
                raise IncompleteStream("the connection closed before the last chunk")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                assert self.file.readline() == b"\r\n"
                return
            data = self.file.read(size)
            if len(data) < size or self.file.readline() != b"\r\n":
                raise IncompleteStream("the connection closed inside a chunk")
            yield data

    def body(self) -> bytes:
        return self.file.read(int(self.headers["content-length"]))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    work = tmp_path_factory.mktemp("streaming")
    gates = work / "gates"
    gates.mkdir()
    archive(work, "stream", "stream_handler.py", files={"stream_handler.py": STREAMING_HANDLER})
    args = ["--model-store", str(work / "store"), "--workers", "1", "--models", "stream=stream.mar"]
    with serving(Server(args, work, env={"HS_STREAM_DIR": str(gates)})) as running:
        yield running, gates


def worker_pids(server: Server, model: str = "stream") -> list[int]:
    reply = mgmt(server, "GET", f"/models/{model}")
    assert reply.status_code == 200, reply.text
    return [w["pid"] for w in reply.json()[0]["workers"]]


def stream(server: Server, command: dict, model: str = "stream") -> ChunkedClient:
    return ChunkedClient(server.ports["inference"], f"/predictions/{model}", command)


def test_parts_arrive_as_chunks_while_the_handler_runs(server):
    running, gates = server
    client = stream(running, {"tag": "first", "parts": 3, "gap": 0.05, "gate": "first.go"})
    try:
        assert client.status == 200
        assert client.headers["transfer-encoding"] == "chunked" and "content-length" not in client.headers
        assert client.headers["content-type"].startswith("text/plain")
        assert client.headers["x-request-id"]
        chunks = client.chunks()
        # the handler is waiting for the gate: this chunk left the server mid-handle
        assert next(chunks) == b"first:0/1\n"
        assert not (gates / "first.done").exists()
        (gates / "first.go").touch()
        assert list(chunks) == [b"first:1/1\n", b"first:2/1\n", b"first:end"]
    finally:
        client.close()


def test_a_handler_that_does_not_stream_is_answered_whole(server):
    running, _ = server
    client = stream(running, {"tag": "whole", "parts": 0})
    try:
        assert client.status == 200 and "transfer-encoding" not in client.headers
        assert client.body() == b"whole:end"
    finally:
        client.close()


def register_batched(running: Server, name: str) -> None:
    """The streaming handler again as ``name``, batches of up to 4 waiting up to 5 s."""
    params = {"url": "stream.mar", "model_name": name, "batch_size": 4, "max_batch_delay": 5000}
    reply = mgmt(running, "POST", "/models", params={**params, "initial_workers": 1, "synchronous": "true"})
    assert reply.status_code == 200, reply.text


def test_in_a_batch_each_client_gets_only_its_own_parts(server):
    running, gates = server
    register_batched(running, "batched")
    tags = ["b0", "b1", "b2", "b3"]
    got: dict[str, list[bytes]] = {}
    # a first request holds the worker, so the four queue up and run as the next batch
    blocker = stream(running, {"tag": "blocker", "parts": 1, "gate": "blocker.go"}, model="batched")
    assert blocker.status == 200 and next(blocker.chunks()) == b"blocker:0/1\n"

    def one(tag: str) -> None:
        client = stream(running, {"tag": tag, "parts": 3, "gap": 0.02}, model="batched")
        try:
            assert client.status == 200
            got[tag] = list(client.chunks())
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(tag,)) for tag in tags]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # for the four to reach the worker's queue
    (gates / "blocker.go").touch()
    assert list(blocker.chunks()) == [b"blocker:end"]
    blocker.close()
    for thread in threads:
        thread.join(60)
    # one batch of four (the batch size is in every part), each client its own parts in order
    assert got == {tag: [f"{tag}:{i}/4\n".encode() for i in range(3)] + [f"{tag}:end".encode()] for tag in tags}


def test_a_batch_refused_after_streaming_is_not_run_again(server):
    """A batch that fails with a client error is normally run again request by request; once
    parts went out that would send them twice, so the streams are cut instead."""
    running, gates = server
    register_batched(running, "refusing")
    blocker = stream(running, {"tag": "blocker2", "parts": 1, "gate": "blocker2.go"}, model="refusing")
    assert next(blocker.chunks()) == b"blocker2:0/1\n"
    got: dict[str, list[bytes]] = {}

    def one(command: dict) -> None:
        client = stream(running, command, model="refusing")
        try:
            chunks = client.chunks()
            got[command["tag"]] = [next(chunks)]
            with pytest.raises(IncompleteStream):
                next(chunks)
        finally:
            client.close()

    commands = [{"tag": "fine", "parts": 3}, {"tag": "refused", "parts": 3, "fail_after": 1, "fail_code": 400}]
    threads = [threading.Thread(target=one, args=(command,)) for command in commands]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # for both to reach the worker's queue
    (gates / "blocker2.go").touch()
    assert list(blocker.chunks()) == [b"blocker2:end"]
    blocker.close()
    for thread in threads:
        thread.join(60)
    # one batch of two, each client its first part once, then the cut
    assert got == {"fine": [b"fine:0/2\n"], "refused": [b"refused:0/2\n"]}
    assert "refused refused after 1 parts" in running.log()
    assert "running its requests one by one" not in running.log()


def test_a_failure_after_streaming_cuts_the_response_and_the_worker_serves_on(server):
    running, gates = server
    before = worker_pids(running)
    client = stream(running, {"tag": "failing", "parts": 5, "fail_after": 2})
    try:
        assert client.status == 200
        chunks = client.chunks()
        assert [next(chunks), next(chunks)] == [b"failing:0/1\n", b"failing:1/1\n"]
        with pytest.raises(IncompleteStream):
            next(chunks)
    finally:
        client.close()
    assert "ValueError: failing failed after 2 parts" in running.log()
    assert requests.post(running.url("/predictions/stream"), json={"tag": "after-failure"}, timeout=30).text == (
        "after-failure:end"
    )
    assert worker_pids(running) == before


def test_a_client_that_leaves_mid_stream_harms_no_one(server):
    running, gates = server
    before, tracebacks = worker_pids(running), running.log().count("Traceback")
    client = stream(running, {"tag": "leaver", "parts": 40, "gap": 0.02, "gate": "leaver.go"})
    try:
        assert next(client.chunks()) == b"leaver:0/1\n"
    finally:
        client.close()
    # the handler goes on producing parts for a client that is gone
    (gates / "leaver.go").touch()
    wait_for(lambda: (gates / "leaver.done").exists(), 30, what="the leaver's handler to finish")
    after = requests.post(running.url("/predictions/stream"), json={"tag": "next", "parts": 2}, timeout=30)
    assert after.status_code == 200 and after.text == "next:0/1\nnext:1/1\nnext:end"
    assert worker_pids(running) == before
    assert running.log().count("Traceback") == tracebacks, running.log()


def test_a_stream_that_stalls_past_response_timeout_is_cut_and_its_worker_replaced(server):
    """responseTimeout bounds each gap between parts (a long stream that keeps producing is
    not cut); a gap past it ends the response as a hang does, and the worker is replaced."""
    running, _ = server
    params = {"url": "stream.mar", "model_name": "stalls", "response_timeout": 2, "initial_workers": 1}
    reply = mgmt(running, "POST", "/models", params={**params, "synchronous": "true"})
    assert reply.status_code == 200, reply.text
    [old_pid] = worker_pids(running, "stalls")
    # four parts 0.8 s apart: 2.4 s in all, longer than the timeout, but no gap is
    steady = stream(running, {"tag": "steady", "parts": 4, "gap": 0.8}, model="stalls")
    try:
        assert list(steady.chunks())[-1] == b"steady:end"
    finally:
        steady.close()
    stalled = stream(running, {"tag": "stalled", "parts": 2, "gap": 30}, model="stalls")
    try:
        chunks = stalled.chunks()
        assert next(chunks) == b"stalled:0/1\n"
        with pytest.raises(IncompleteStream):
            next(chunks)
    finally:
        stalled.close()
    assert "no part of the streamed reply came within responseTimeout=2s" in running.log()
    wait_for(lambda: (pids := worker_pids(running, "stalls")) and old_pid not in pids, 30, what="a new worker")
    after = wait_for(
        lambda: (r := requests.post(running.url("/predictions/stalls"), json={"tag": "again"}, timeout=30)).ok and r,
        30,
        what="the replacement to answer",
    )
    assert after.text == "again:end"


def test_an_intermediate_reply_frame_says_more_follows():
    part = Reply(3, 200, b"part", "text/plain", {"x-a": "b"}, more=True)
    final = Reply(3, 200, b"end", "text/plain")
    frames = FrameReader().feed(b"".join([*encode_reply(part), *encode_reply(final)]))
    assert [decode_reply(*frame) for frame in frames] == [part, final]


def test_in_process_the_parts_come_as_one_stream_when_the_batch_is_done(tmp_path, monkeypatch):
    from falcon import testing

    from hookserve.app import create_app
    from hookserve.config import ServerConfig
    from hookserve.inprocess import InProcessService

    monkeypatch.setenv("HS_STREAM_DIR", str(tmp_path))
    archive(tmp_path, "stream", "stream_handler.py", files={"stream_handler.py": STREAMING_HANDLER})
    config = ServerConfig(model_store=str(tmp_path / "store"))
    with InProcessService(config) as service:
        service.add(tmp_path / "store" / "stream.mar")
        client = testing.TestClient(create_app(config, service))
        reply = client.simulate_post("/predictions/stream", json={"tag": "here", "parts": 2})
        assert reply.status_code == 200 and reply.text == "here:0/1\nhere:1/1\nhere:end"
        assert "content-length" not in reply.headers
        whole = client.simulate_post("/predictions/stream", json={"tag": "whole"})
        assert whole.text == "whole:end" and whole.headers["content-length"] == "9"
