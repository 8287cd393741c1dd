"""The frontend <-> model worker wire format, over Unix domain sockets.

Every frame is ``!II`` (meta length, payload length), an orjson ``meta`` object, then the
payload bytes, which travel untouched (no base64, no JSON escaping of bodies).

Request meta: ``{"key", "id", "kind", "headers", "fields": [[name, content_type, length],
...]}``; the payload is the fields' bytes one after the other. ``key`` is an integer the
frontend gives each request it sends on a connection, rising in the order it sends them;
``id`` is the request id the client and the handler see (which a client may choose, so it
is never used to match replies). ``kind`` is ``predict``, ``explain`` or ``describe``.

Reply meta: ``{"key", "status", "headers", "content_type"}`` and the body as payload; an
error reply also has ``"error": {"code", "type", "message"}``. A handler that streams
(``Context.send_intermediate_reply``) sends intermediate replies for a request before its
final one: the same frame with ``"more": true``, one per part, in order on the request's
connection; the final reply (without ``more``) ends the request as ever.

Many requests are in flight on one connection at once; replies carry the request key and
may come back in any order.

The frontend also sends two notices, with an empty payload: ``{"board": path}`` first on
every connection (the shared-memory board where the worker marks which requests it has
started, see ``hookserve.wire.started_board``), and ``{"cancel": key}`` when a client has gone
away (the worker drops that request if it has not started it).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
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
    key: int = -1


@dataclass
class Reply:
    key: int
    status: int
    body: bytes
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    error: dict | None = None
    # on the wire: an intermediate reply, more of the request's reply follows
    more: bool = False
    # frontend side only: a streamed reply's further body parts, ``body`` being the first
    stream: AsyncIterator[bytes] | None = field(default=None, repr=False, compare=False)


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
    if reply.more:
        meta["more"] = True
    data = orjson.dumps(meta)
    return [FRAME_HEADER.pack(len(data), len(reply.body)), data, reply.body]


def encode_notice(notice: dict) -> list[bytes]:
    data = orjson.dumps(notice)
    return [FRAME_HEADER.pack(len(data), 0), data]


def decode_reply(meta: bytes, payload: bytes) -> Reply:
    info = orjson.loads(meta)
    return Reply(
        info["key"],
        info["status"],
        payload,
        info.get("content_type"),
        info.get("headers") or {},
        info.get("error"),
        "more" in info,
    )


def decode_frontend_frame(meta: bytes, payload: bytes) -> WorkRequest | dict:
    """A request, or a notice (``{"cancel": key}`` or ``{"board": path}``)."""
    if meta.startswith(b'{"key"'):
        return decode_request(meta, payload)
    return orjson.loads(meta)


class FrameReader:
    """Cuts a byte stream into frames: ``feed`` returns the ``(meta, payload)`` of every frame
    the new bytes complete. A large frame arriving in many pieces is joined once, when whole."""

    __slots__ = ("chunks", "buffered", "needed")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.needed = FRAME_HEADER.size

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self.buffered += len(data)
        if self.buffered < self.needed:
            self.chunks.append(data)
            return []
        if self.chunks:
            self.chunks.append(data)
            data = b"".join(self.chunks)
            self.chunks = []
        frames = []
        pos, size, header = 0, len(data), FRAME_HEADER.size
        while True:
            if size - pos < header:
                self.needed = header
                break
            meta_len, payload_len = FRAME_HEADER.unpack_from(data, pos)
            middle = pos + header + meta_len
            end = middle + payload_len
            if end > size:
                self.needed = end - pos
                break
            frames.append((data[pos + header : middle], data[middle:end]))
            pos = end
        self.buffered = size - pos
        if self.buffered:
            self.chunks.append(data[pos:])
        return frames
