"""Bodies as clients send them (issue 12, item 5), against a real server on loopback.

``urllib.request`` and ``curl --data-binary @image.png`` label a raw body
``application/x-www-form-urlencoded``. Only a body that is a url-encoded form by the strict
rule of ``hookserve.plugins.http.bodies.FORM`` becomes fields; image bytes, JSON and text
reach the handler unchanged as ``body``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import urllib.request
import zlib

import pytest
import requests

from helpers import Server, archive, serving
from hookserve.plugins.http.bodies import body_fields

FORM = "application/x-www-form-urlencoded"

# Describes each field it received: its Python type, and bytes by length and sha256.
ECHO_HANDLER = """
    import hashlib


    def handle(data, context):
        if data is None:
            return None
        out = []
        for row in data:
            described = {}
            for name, value in row.items():
                if isinstance(value, (bytes, bytearray)):
                    described[name] = {"type": "bytes", "len": len(value), "sha256": hashlib.sha256(value).hexdigest()}
                else:
                    described[name] = {"type": type(value).__name__, "value": value}
            described["content_type"] = context.get_request_header(0, "content-type")
            out.append(described)
        return out
"""


def png_bytes(width: int = 64, height: int = 48) -> bytes:
    """A real PNG (random RGB pixels), as an image client would upload it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def raw(data: bytes) -> dict:
    return {"type": "bytes", "len": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("bodies")
    archive(work, "echo", "handler.py", files={"handler.py": ECHO_HANDLER})
    args = ["--model-store", str(work / "store"), "--models", "echo=echo.mar", "--workers", "1"]
    with serving(Server(args, work)) as srv:
        yield srv


def urllib_post(url: str, data: bytes) -> tuple[int, dict]:
    """What ``urllib.request.urlopen(url, data)`` sends: no content type given by the caller."""
    request = urllib.request.Request(url, data=data)
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status, json.loads(reply.read())


@pytest.mark.parametrize(
    "kind",
    ["png", "jpeg-like", "json", "text", "base64"],
)
def test_urllib_raw_body_reaches_the_handler_unchanged(server, kind):
    data = {
        "png": png_bytes(),
        # JPEG's markers and random entropy-coded bytes, '&' and '=' among them
        "jpeg-like": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + os.urandom(20000) + b"a=1&b=2" + b"\xff\xd9",
        "json": json.dumps({"instances": [[0.1, 0.2]], "q": "a=b&c=d"}).encode(),
        "text": b"the cat sat on the mat = 1 & the dog too\n",
        "base64": base64.b64encode(os.urandom(3000)),
    }[kind]
    status, body = urllib_post(server.url("/predictions/echo"), data)
    assert status == 200
    assert body == {"body": raw(data), "content_type": FORM}


def test_curl_data_binary_png_reaches_the_handler_unchanged(server):
    """``curl --data-binary @kitten.png URL``: POST, the form content type, the file's bytes."""
    data = png_bytes(320, 240)
    reply = requests.post(server.url("/predictions/echo"), data=data, headers={"Content-Type": FORM}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"body": raw(data), "content_type": FORM}


def test_a_real_form_still_becomes_fields(server):
    status, body = urllib_post(server.url("/predictions/echo"), b"a=1&b=2")
    assert status == 200
    assert body == {"a": {"type": "str", "value": "1"}, "b": {"type": "str", "value": "2"}, "content_type": FORM}
    # what requests and browsers encode, escapes and all
    reply = requests.post(server.url("/predictions/echo"), data={"text": "x y & z=1", "lang": "en"}, timeout=30)
    assert reply.json() == {
        "text": {"type": "str", "value": "x y & z=1"},
        "lang": {"type": "str", "value": "en"},
        "content_type": FORM,
    }


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"a=1&b=2", [("a", b"1"), ("b", b"2")]),
        (b"a=1&b=hello+world%21&c=", [("a", b"1"), ("b", b"hello world!"), ("c", b"")]),
        (b"q=hello world", [("q", b"hello world")]),  # curl -d 'q=hello world'
        (b"a[]=1&a[]=2&", [("a[]", b"1"), ("a[]", b"2")]),
        (b"a=1\n", [("a", b"1")]),
        (b"a=%FF", [("a", b"\xff")]),
        (b"", []),
    ],
)
def test_form_rule_accepts_forms(body, fields):
    assert [(f.name, f.data) for f in body_fields(body, FORM)] == fields


@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG\r\n\x1a\na=1",
        b'{"a": "b=c"}',
        b"[1, 2, 3]",
        b"hello world",
        b"x = 1",
        b"a=1&flag",
        b"=1",
        b"q=50%",
        b"\xff=1",
        base64.b64encode(os.urandom(300)),
    ],
)
def test_form_rule_refuses_what_is_not_a_form(body):
    assert [(f.name, f.content_type, f.data) for f in body_fields(body, FORM)] == [("body", FORM, body)]
