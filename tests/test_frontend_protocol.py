"""The frontend's connection protocol driven in-process, with the order of arrivals fixed
by the test: what the real-server tests in test_connections.py can only hit by chance."""

from __future__ import annotations

import asyncio
import sys

import pytest
from gunicorn.asgi.protocol import ASGIProtocol
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn_h1c import H1CProtocol

from hookserve.frontend.gunicorn_worker import FrontendProtocol, use_frontend_protocol


async def length_app(scope, receive, send):
    """Reads the whole body, answers with its first 8 bytes and its length."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/early":  # answers before reading the body, as a 413 or 404 does
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"no"})
        return
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        more = message.get("more_body", False)
    answer = body[:8] + b" %d" % len(body)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


class FakeWorker:
    def __init__(self, loop):
        self.cfg = Config()
        self.log = Logger(self.cfg)
        self.asgi = length_app
        self.loop = loop
        self.nr_conns = 0
        self.nr = 0
        self.max_requests = sys.maxsize
        self.alive = True


class FakeTransport(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data):
        self.written += data

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def can_write_eof(self):
        return True

    def write_eof(self):
        pass

    def set_write_buffer_limits(self, high=None, low=None):
        pass


def request(number: int, size: int, path: str = "/p") -> bytes:
    body = b"%08d" % number + b"x" * (size - 8)
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), size) + body


def replies(written: bytes) -> list[bytes]:
    """The bodies of the replies written so far (each is short and has a Content-Length)."""
    out = []
    for part in written.split(b"HTTP/1.1 ")[1:]:
        out.append(part.split(b"\r\n\r\n", 1)[1])
    return out


async def deliver(protocol, transport, chunks, expected: int) -> list[bytes]:
    """Feed ``chunks`` as reads (honouring pause_reading), let the loop run, and return the
    reply bodies once ``expected`` replies are out or the connection closed."""
    pending = list(chunks)
    for _ in range(20000):
        if pending and transport.reading and not transport.closed:
            protocol.data_received(pending.pop(0))
        else:
            await asyncio.sleep(0)
        if len(replies(transport.written)) >= expected or transport.closed:
            break
    return replies(transport.written)


def reads(data: bytes, size: int = 256 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def connection():
    loop = asyncio.new_event_loop()
    # As in a fresh frontend worker process: nothing has asked gunicorn about its parser yet.
    for cls in (ASGIProtocol, FrontendProtocol):
        for name in ("_h1c_available", "_h1c_protocol_class", "_h1c_has_limits"):
            if name in vars(cls):
                setattr(cls, name, {"_h1c_available": None, "_h1c_has_limits": False}.get(name))
    use_frontend_protocol()  # what FrontendWorker.init_process does
    worker = FakeWorker(loop)
    worker.cfg.set("asgi_disconnect_grace_period", 0)  # as hookserve serve sets it
    transport = FakeTransport()
    protocol = FrontendProtocol(worker)
    loop.call_soon(protocol.connection_made, transport)
    loop.run_until_complete(asyncio.sleep(0))
    yield loop, protocol, transport
    transport.close()
    protocol.connection_lost(None)
    loop.run_until_complete(asyncio.gather(protocol._task, return_exceptions=True))
    loop.close()


def test_the_c_parser_serves_connections(connection):
    _loop, protocol, _transport = connection
    assert isinstance(protocol._callback_parser, H1CProtocol)


def test_a_large_next_request_read_before_the_loop_resets_the_parser_is_kept_whole(connection):
    """Request 1 complete, then 300 KB of request 2 read before the connection loop has
    taken request 1: gunicorn's parser keeps only 64 KiB of it."""
    loop, protocol, transport = connection
    first, second = request(1, 300_000), request(2, 700_000)
    protocol.data_received(first)  # complete: the loop has not run yet
    assert protocol._callback_parser.is_complete
    protocol.data_received(second[:300_000])
    got = loop.run_until_complete(deliver(protocol, transport, reads(second[300_000:]), expected=2))
    assert got == [b"00000001 300000", b"00000002 700000"]
    assert not transport.closed


def test_pipelined_requests_in_reads_that_straddle_them_are_all_answered(connection):
    loop, protocol, transport = connection
    sizes = [168_000, 1_100_000, 70_000, 300, 500_000, 65_536, 65_537, 200_000]
    stream = b"".join(request(i, size) for i, size in enumerate(sizes))
    got = loop.run_until_complete(deliver(protocol, transport, reads(stream), expected=len(sizes)))
    assert got == [b"%08d %d" % (i, size) for i, size in enumerate(sizes)]
    assert not transport.closed


def test_a_reply_before_the_body_says_close_then_discards_the_rest_until_the_client_closes(connection):
    loop, protocol, transport = connection
    stream = request(1, 2_000_000, path="/early") + request(2, 1000)
    chunks = reads(stream)
    got = loop.run_until_complete(deliver(protocol, transport, chunks[:1], expected=1))
    assert got == [b"no"]
    assert b"\r\nConnection: close\r\n" in transport.written
    loop.run_until_complete(asyncio.sleep(0))
    # Lingering: the rest is read (and dropped, never parsed as a request) until EOF.
    assert not transport.closed and transport.reading
    for chunk in chunks[1:]:
        protocol.data_received(chunk)
    assert replies(transport.written) == [b"no"] and not transport.closed
    assert protocol._http1_buffered() == 0
    protocol.eof_received()
    assert transport.closed


def test_a_parse_error_gets_the_json_error_shape(connection):
    loop, protocol, transport = connection
    protocol.data_received(b"NOT HTTP AT ALL\r\n\r\n")
    head, body = bytes(transport.written).split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Type: application/json" in head
    assert body.startswith(b'{"code": 400, "type": "BadRequestException", "message": ')
