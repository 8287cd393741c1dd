"""HTTP request bodies -> input fields, as TorchServe hands them to handlers.

A JSON or raw body becomes one field named ``body``; ``multipart/form-data`` parts and
url-encoded form fields become one field each, under their own names; query parameters
are text fields too. The worker decodes each field by its content type.

``curl --data-binary @image.png`` and ``urllib.request`` label any body
``application/x-www-form-urlencoded``. Such a body is taken as a form only when it is one
by the strict rule of :data:`FORM` (ASCII, ``name=value`` pairs joined by ``&``, well-formed
``%XX`` escapes, names without the characters JSON, text or base64 bring); anything else
(image bytes, JSON, prose) reaches the handler unchanged as ``body``, with its content type.
TorchServe's Netty decoder instead parses every such body as a form and mangles or drops
binary data.
"""

from __future__ import annotations

import io
import re
from urllib.parse import parse_qsl, unquote_to_bytes

import falcon
import falcon.asgi
from falcon.media.multipart import MultipartFormHandler, MultipartParseError

from hookserve.errors import BadRequest, RequestTooLarge
from hookserve.wire.framing import Field

TEXT = "text/plain; charset=utf-8"

# One ``%XX`` escape; the characters a form name may hold unescaped (what form encoders
# leave as they are, plus ``[]`` of ``a[]=1``: no space, quote, brace, colon, slash, so
# that JSON, prose and base64 do not pass for a name); a value may hold any printable
# ASCII but ``&`` and a bare ``%`` (hand-written ``curl -d 'q=hello world'`` forms).
# Written without nested repeats so that a long body that is not a form fails in linear time.
_ESCAPE = rb"%[0-9A-Fa-f]{2}"
_NAME = rb"(?!=)[A-Za-z0-9_.~*+\-\[\]]*(?:" + _ESCAPE + rb"[A-Za-z0-9_.~*+\-\[\]]*)*"
_VALUE = rb"[\x20-\x24\x27-\x7e]*(?:" + _ESCAPE + rb"[\x20-\x24\x27-\x7e]*)*"
_PAIR = _NAME + rb"=" + _VALUE
# A whole body: one or more ``name=value`` pairs joined by ``&`` (a trailing ``&`` and a
# final line break, as a file saved by an editor has, are allowed).
FORM = re.compile(_PAIR + rb"(?:&" + _PAIR + rb")*&?(?:\r?\n)?")


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
    if mime == "application/x-www-form-urlencoded" and body:
        fields = form_fields(body)
        if fields is not None:
            return fields
    elif mime == "application/x-www-form-urlencoded":
        return []  # an empty form: no fields, as before
    return [Field("body", content_type or "application/octet-stream", body)]


def form_fields(body: bytes) -> list[Field] | None:
    """The fields of a url-encoded form, or None when ``body`` is not one (see :data:`FORM`).

    A value that is not UTF-8 once unescaped (``a=%FF``) is passed as bytes.
    """
    if not FORM.fullmatch(body):
        return None
    fields = []
    for pair in body.rstrip(b"\r\n").split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = unquote_to_bytes(raw_name.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return None
        value = unquote_to_bytes(raw_value.replace(b"+", b" "))
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            fields.append(Field(name, "application/octet-stream", value))
        else:
            fields.append(Field(name, TEXT, value))
    return fields


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
