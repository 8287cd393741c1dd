"""Kept connections against the real server: nothing a client sends is lost.

Large bodies one after another and pipelined on one keep-alive connection, replies sent
before the body has all arrived (404, 413) to clients that send first and read later, and
gunicorn's own error replies in the server's JSON error shape.
"""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

import pytest
import requests

from helpers import Server, archive, serving

MAX_REQUEST_SIZE = 2 * 1024 * 1024

# Answers with what identifies the request it got: the first 8 bytes and the length.
ECHO_HANDLER = """
def handle(data, context):
    if data is None:
        return None
    answers = []
    for row in data:
        body = row.get("body") or row.get("data") or b""
        answers.append({"head": bytes(body[:8]).decode(), "n": len(body)})
    return answers
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("connections")
    archive(work, "echo", "echo.py", files={"echo.py": ECHO_HANDLER})
    args = ["--model-store", str(work / "store"), "--models", "echo=echo.mar"]
    with serving(Server([*args, "--max-request-size", str(MAX_REQUEST_SIZE)], work)) as running:
        yield running


def large_bodies(count: int, seed: int) -> list[bytes]:
    """``count`` bodies of 168 KB to 1.1 MB, each starting with its own number."""
    rnd = random.Random(seed)
    return [f"{i:08d}".encode() + bytes([i % 251]) * rnd.randint(168_000, 1_100_000) for i in range(count)]


def post_request(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def getheader(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def read_reply(replies: io.BufferedReader) -> Reply:
    """The next reply from a connection's one reader (an ``http.client.HTTPResponse`` per
    reply would each read ahead into the replies after it and lose them)."""
    status_line = replies.readline()
    if not status_line:
        raise ConnectionError("connection closed before a reply")
    status = int(status_line.split(b" ", 2)[1])
    headers = http.client.parse_headers(replies)
    assert "chunked" not in headers.get("transfer-encoding", "")
    body = replies.read(int(headers.get("content-length", 0)))
    return Reply(status, headers, body)


def assert_echo(reply, body: bytes, what: str) -> None:
    assert reply.status == 200, f"{what}: {reply.status} {reply.body[:300]!r}"
    assert json.loads(reply.body) == {"head": body[:8].decode(), "n": len(body)}, what


def test_large_bodies_one_after_another_on_one_connection(server):
    bodies = large_bodies(200, seed=1)
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["inference"], timeout=60)
    sock = None
    for i, body in enumerate(bodies):
        conn.request("POST", "/predictions/echo", body=body, headers={"Content-Type": "application/octet-stream"})
        reply = conn.getresponse()
        reply.body = reply.read()
        assert_echo(reply, body, f"request {i}")
        assert reply.getheader("connection") is None
        # The same connection all along: http.client would reconnect silently otherwise.
        sock = sock or conn.sock
        assert conn.sock is sock, f"connection closed after request {i - 1}"
    conn.close()


def test_large_bodies_pipelined_on_one_connection(server):
    bodies = large_bodies(200, seed=2)
    with socket.create_connection(("127.0.0.1", server.ports["inference"]), timeout=60) as sock:
        replies = sock.makefile("rb")
        # Every request is written before its reply is read, by a thread of its own so
        # neither side waits for the other.
        failures = []

        def write_all():
            try:
                for body in bodies:
                    sock.sendall(post_request("/predictions/echo", body))
            except OSError as exc:
                failures.append(exc)

        writer = threading.Thread(target=write_all)
        writer.start()
        try:
            for i, body in enumerate(bodies):
                assert_echo(read_reply(replies), body, f"pipelined request {i}")
        finally:
            writer.join(60)
        assert not failures


def test_many_small_requests_pipelined_in_one_write(server):
    """1000 small requests, about 200 KB, written at once: far more than the 64 KiB the
    parser keeps behind a finished message."""
    bodies = [f"{i:08d}".encode() + b"z" * 50 for i in range(1000)]
    with socket.create_connection(("127.0.0.1", server.ports["inference"]), timeout=60) as sock:
        replies = sock.makefile("rb")
        writer = threading.Thread(
            target=sock.sendall, args=(b"".join(post_request("/predictions/echo", body) for body in bodies),)
        )
        writer.start()
        try:
            for i, body in enumerate(bodies):
                assert_echo(read_reply(replies), body, f"pipelined request {i}")
        finally:
            writer.join(60)


@pytest.mark.parametrize("path", ["/predictions/no-such-model", "/no/such/route"])
def test_a_reply_before_the_body_leaves_no_desynchronised_stream(server, path):
    """A 404 sent before the 1 MB body has arrived, with a good request pipelined behind it:
    the good one is answered, or the 404 says ``Connection: close`` and the connection ends
    after it. Never anything else read out of the rest of the first body."""
    first = b"{" + b"x" * 1_000_000
    good = b"00000042" + b"y" * 200_000
    with socket.create_connection(("127.0.0.1", server.ports["inference"]), timeout=60) as sock:
        replies = sock.makefile("rb")
        both = post_request(path, first) + post_request("/predictions/echo", good)
        writer = threading.Thread(target=_send_ignoring_reset, args=(sock, both))
        writer.start()
        try:
            reply = read_reply(replies)
            assert reply.status == 404
            assert json.loads(reply.body)["code"] == 404
            if reply.getheader("connection", "").lower() == "close":
                assert replies.read() == b""
            else:
                assert_echo(read_reply(replies), good, "request behind the 404")
        finally:
            writer.join(60)
    # And a client that reuses its connection the ordinary way sees both answers.
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["inference"], timeout=60)
    for _ in range(3):
        conn.request("POST", path, body=first, headers={"Content-Type": "application/octet-stream"})
        reply = conn.getresponse()
        assert reply.status == 404 and json.loads(reply.read())["code"] == 404
        conn.request("POST", "/predictions/echo", body=good, headers={"Content-Type": "application/octet-stream"})
        reply = conn.getresponse()
        reply.body = reply.read()
        assert_echo(reply, good, "request after the 404")
    conn.close()


def _send_ignoring_reset(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # a server that closes after Connection: close may stop reading


# -- a 413 that every client sees ---------------------------------------------------------

BIG = 80 * 1024 * 1024


def assert_too_large(status: int, body: bytes) -> None:
    assert status == 413
    error = json.loads(body)
    assert error["code"] == 413 and error["type"] == "RequestEntityTooLargeException"
    assert str(MAX_REQUEST_SIZE) in error["message"]


def test_413_reaches_urllib_which_sends_the_whole_body_first(server):
    request = urllib.request.Request(
        server.url("/predictions/echo"), data=b"\0" * BIG, headers={"Content-Type": "application/octet-stream"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    assert caught.value.headers["Connection"] == "close"
    assert_too_large(caught.value.code, caught.value.read())


def test_413_reaches_requests(server):
    reply = requests.post(
        server.url("/predictions/echo"),
        data=b"\0" * BIG,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert_too_large(reply.status_code, reply.content)


def test_413_for_a_chunked_body_reaches_requests(server):
    def chunks():
        for _ in range(BIG // (1 << 20)):
            yield b"\0" * (1 << 20)

    reply = requests.post(server.url("/predictions/echo"), data=chunks(), timeout=60)
    assert reply.status_code == 413
    assert json.loads(reply.content)["type"] == "RequestEntityTooLargeException"


# -- gunicorn's own error replies ---------------------------------------------------------


def raw_exchange(server, data: bytes) -> Reply:
    with socket.create_connection(("127.0.0.1", server.ports["inference"]), timeout=30) as sock:
        _send_ignoring_reset(sock, data)
        return read_reply(sock.makefile("rb"))


def assert_json_error(reply, status: int, error_type: str) -> dict:
    assert reply.status == status, reply.body
    assert reply.getheader("content-type") == "application/json"
    error = json.loads(reply.body)
    assert error["code"] == status and error["type"] == error_type
    assert error["message"]
    return error


def test_oversized_header_gets_a_json_431(server):
    reply = raw_exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    error = assert_json_error(reply, 431, "RequestHeaderFieldsTooLargeException")
    assert "limit_request_field_size=8190" in error["message"]


def test_too_many_headers_get_a_json_431(server):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    reply = raw_exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    error = assert_json_error(reply, 431, "RequestHeaderFieldsTooLargeException")
    assert "limit_request_fields=100" in error["message"]


def test_malformed_request_line_gets_a_json_400(server):
    reply = raw_exchange(server, b"THIS IS NOT HTTP\r\n\r\n")
    assert_json_error(reply, 400, "BadRequestException")


def test_invalid_header_gets_a_json_400(server):
    reply = raw_exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n")
    assert_json_error(reply, 400, "BadRequestException")


def test_overlong_request_line_gets_a_json_414(server):
    reply = raw_exchange(server, b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    error = assert_json_error(reply, 414, "RequestUriTooLongException")
    assert "limit_request_line=4094" in error["message"]
