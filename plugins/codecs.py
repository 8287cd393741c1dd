"""Builtin input decoding and output encoding (``trylast``): TorchServe's rules.

Decoding, per request field: ``application/json`` and ``*+json`` are parsed (orjson),
``text/*`` becomes ``str``, anything else stays ``bytes``; a body that is not what its
content type says is a 400. Encoding, per reply: ``bytes`` as they are, ``str`` as UTF-8
text, anything else as JSON (numpy arrays included); an output JSON cannot hold is a 500.
Essential: without it a worker could not read a request.
"""

from __future__ import annotations

from typing import Any

import orjson

from hookserve.errors import BadRequest, PredictionError
from hookserve.hookspecs import hookimpl
from hookserve.pipeline_types import EncodedOutput


@hookimpl(trylast=True)
def hookserve_decode_input(content_type: str, data: bytes) -> Any:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"body declared as {kind} is not valid JSON: {exc}") from None
    if kind.startswith("text/"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"body declared as {kind} is not UTF-8: {exc}") from None
    return data


@hookimpl(trylast=True)
def hookserve_encode_output(item: Any) -> EncodedOutput:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return EncodedOutput(bytes(item), "application/octet-stream")
    if isinstance(item, str):
        return EncodedOutput(item.encode("utf-8"), "text/plain; charset=utf-8")
    try:
        return EncodedOutput(orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY), "application/json")
    except TypeError as exc:
        raise PredictionError(f"handler output of type {type(item).__name__} cannot be sent as JSON: {exc}") from None
