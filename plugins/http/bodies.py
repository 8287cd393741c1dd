"""HTTP request bodies -> input fields, as TorchServe hands them to handlers.

A JSON or raw body becomes one field named ``body``; ``multipart/form-data`` parts and
url-encoded form fields become one field each, under their own names; query parameters
are text fields too. The worker decodes each field by its content type.
"""

from __future__ import annotations

import io
from urllib.parse import parse_qsl

import falcon
import falcon.asgi
from falcon.media.multipart import MultipartFormHandler, MultipartParseError

from hookserve.errors import BadRequest, RequestTooLarge
from hookserve.protocol import Field

TEXT = "text/plain; charset=utf-8"


async def read_body(req: falcon.asgi.Request, limit: int) -> bytes:
    """The whole body, refusing more than ``limit`` bytes before reading them if it can."""
    length = req.content_length
    if length is not None:
        if length > limit:
            raise RequestTooLarge(f"request body of {length} bytes exceeds max_request_size={limit} bytes")
        return await req.stream.read()
    chunks, size = [], 0
    async for chunk in req.stream:
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds max_request_size={limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def body_fields(body: bytes, content_type: str | None) -> list[Field]:
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime == "multipart/form-data":
        return multipart_fields(body, content_type)
    if mime == "application/x-www-form-urlencoded":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"url-encoded form body is not UTF-8: {exc}") from None
        return [Field(name, TEXT, value.encode()) for name, value in parse_qsl(text, keep_blank_values=True)]
    return [Field("body", content_type or "application/octet-stream", body)]


def multipart_fields(body: bytes, content_type: str) -> list[Field]:
    form = MultipartFormHandler().deserialize(io.BytesIO(body), content_type, len(body))
    fields = []
    try:
        for part in form:
            if not part.name:
                raise BadRequest("multipart/form-data part without a name")
            fields.append(Field(part.name, part.content_type or TEXT, part.get_data()))
    except (MultipartParseError, falcon.HTTPError) as exc:
        detail = getattr(exc, "description", None) or str(exc)
        raise BadRequest(f"malformed multipart/form-data body: {detail}") from None
    return fields


def query_fields(req: falcon.asgi.Request) -> list[Field]:
    if not req.query_string:
        return []
    return [Field(name, TEXT, value.encode()) for name, value in parse_qsl(req.query_string, keep_blank_values=True)]
