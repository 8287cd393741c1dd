"""The frontend <-> model worker wire format, over Unix domain sockets.

Every frame is ``!II`` (meta length, payload length), an orjson ``meta`` object, then the
payload bytes, which travel untouched (no base64, no JSON escaping of bodies).

Request meta: ``{"key", "id", "kind", "headers", "fields": [[name, content_type, length],
...]}``; the payload is the fields' bytes one after the other. ``key`` is the frontend's
own, unique on its connection; ``id`` is the request id the client and the handler see
(which a client may choose, so it is never used to match replies). ``kind`` is
``predict``, ``explain`` or ``describe``.

Reply meta: ``{"key", "status", "headers", "content_type"}`` and the body as payload; an
error reply also has ``"error": {"code", "type", "message"}``.

Many requests are in flight on one connection at once; replies carry the request key and
may come back in any order.

Two notices travel with an empty payload: the worker sends ``{"started": [keys]}`` when a
batch begins (a request not yet started when its worker goes away is safe to send to
another worker), and the frontend sends ``{"cancel": key}`` when a client has gone away
(the worker drops that request if it has not started it).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

import orjson

FRAME_HEADER = struct.Struct("!II")


@dataclass
class Field:
    name: str
    content_type: str
    data: bytes


@dataclass
class WorkRequest:
    id: str
    kind: str
    headers: dict[str, str]
    fields: list[Field]
    key: str = ""


@dataclass
class Reply:
    key: str
    status: int
    body: bytes
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: dict | None = None


def encode_request(request: WorkRequest) -> list[bytes]:
    """The frame as a list of buffers, so bodies are written without being joined."""
    meta = orjson.dumps(
        {
            "key": request.key,
            "id": request.id,
            "kind": request.kind,
            "headers": request.headers,
            "fields": [[f.name, f.content_type, len(f.data)] for f in request.fields],
        }
    )
    size = sum(len(f.data) for f in request.fields)
    return [FRAME_HEADER.pack(len(meta), size), meta, *(f.data for f in request.fields)]


def decode_request(meta: bytes, payload: bytes) -> WorkRequest:
    info = orjson.loads(meta)
    fields, offset = [], 0
    view = memoryview(payload)
    for name, content_type, length in info["fields"]:
        # a lone field (the usual raw body) is the payload itself: no copy
        data = payload if length == len(payload) else bytes(view[offset : offset + length])
        fields.append(Field(name, content_type, data))
        offset += length
    return WorkRequest(info["id"], info["kind"], info["headers"], fields, info["key"])


def encode_reply(reply: Reply) -> list[bytes]:
    meta = {"key": reply.key, "status": reply.status, "headers": reply.headers, "content_type": reply.content_type}
    if reply.error is not None:
        meta["error"] = reply.error
    data = orjson.dumps(meta)
    return [FRAME_HEADER.pack(len(data), len(reply.body)), data, reply.body]


def encode_notice(notice: dict) -> list[bytes]:
    data = orjson.dumps(notice)
    return [FRAME_HEADER.pack(len(data), 0), data]


def decode_worker_frame(meta: bytes, payload: bytes) -> Reply | list[str]:
    """A reply, or the keys of a ``started`` notice."""
    info = orjson.loads(meta)
    started = info.get("started")
    if started is not None:
        return started
    return Reply(
        info["key"], info["status"], payload, info.get("content_type"), info.get("headers") or {}, info.get("error")
    )


def decode_frontend_frame(meta: bytes, payload: bytes) -> WorkRequest | str:
    """A request, or the key of a ``cancel`` notice."""
    if meta.startswith(b'{"cancel"'):
        return orjson.loads(meta)["cancel"]
    return decode_request(meta, payload)


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One frame's (meta, payload); raises ``asyncio.IncompleteReadError`` at EOF."""
    meta_len, payload_len = FRAME_HEADER.unpack(await reader.readexactly(FRAME_HEADER.size))
    meta = await reader.readexactly(meta_len)
    payload = await reader.readexactly(payload_len) if payload_len else b""
    return meta, payload
