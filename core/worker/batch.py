"""One batch of a model worker: request fields decoded, the handler run, one reply per
request encoded."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson

from hookserve.context import Context
from hookserve.errors import BadRequest, HookserveError, PredictionError, WorkerOutOfMemory
from hookserve.wire.framing import Reply, WorkRequest
from hookserve.worker.handler_entry import HandlerEntry

log = logging.getLogger("hookserve.worker")

KIND_HEADERS = {"explain": {"explain": "True"}, "describe": {"describe": "True"}}


def decode_field(content_type: str, data: bytes) -> Any:
    """TorchServe's input decoding: JSON decoded, text as str, anything else as bytes."""
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


def encode_output(item: Any) -> tuple[bytes, str]:
    """One handler output -> (body, default content type): bytes raw, str UTF-8, else JSON."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item), "application/octet-stream"
    if isinstance(item, str):
        return item.encode("utf-8"), "text/plain; charset=utf-8"
    try:
        return orjson.dumps(item, option=orjson.OPT_SERIALIZE_NUMPY), "application/json"
    except TypeError as exc:
        raise PredictionError(f"handler output of type {type(item).__name__} cannot be sent as JSON: {exc}") from None


def error_reply(key: int, error: HookserveError) -> Reply:
    body = orjson.dumps(error.to_dict())
    return Reply(key, error.code, body, "application/json", error=error.to_dict())


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


class BatchRunner:
    """Runs one batch through the handler and turns its outputs into replies."""

    def __init__(self, entry: HandlerEntry, context: Context):
        self.entry = entry
        self.context = context

    def run(self, batch: list[WorkRequest]) -> list[Reply]:
        replies: dict[int, Reply] = {}
        rows, runnable = [], []
        for position, request in enumerate(batch):
            try:
                rows.append({f.name: decode_field(f.content_type, f.data) for f in request.fields})
                runnable.append(position)
            except BadRequest as exc:
                replies[position] = error_reply(request.key, exc)
        if runnable:
            for position, reply in zip(runnable, self._handle([batch[p] for p in runnable], rows), strict=False):
                replies[position] = reply
        return [replies[p] for p in range(len(batch))]

    def _handle(self, batch: list[WorkRequest], rows: list[dict]) -> list[Reply]:
        context = self.context
        ids = [r.id for r in batch]
        keys = [r.key for r in batch]
        extra = KIND_HEADERS.get(batch[0].kind)
        headers = [dict(r.headers, **extra) if extra else r.headers for r in batch]
        context.start_batch(ids, headers)
        try:
            outputs = self.entry.handle(rows, context)
            self._check_outputs(outputs, len(batch))
            return [self._reply(i, key, item) for i, (key, item) in enumerate(zip(keys, outputs, strict=True))]
        except Exception as exc:
            if isinstance(exc, HookserveError):
                error = exc
            elif is_out_of_memory(exc):
                error = WorkerOutOfMemory(f"out of memory while handling the batch: {type(exc).__name__}: {exc}")
            else:
                error = PredictionError(f"handler failed: {type(exc).__name__}: {exc}")
            log.error(
                "model %s: batch %s failed: %s\n%s",
                context.model_name,
                ",".join(ids),
                error.message,
                traceback.format_exc(),
            )
            return [error_reply(key, error) for key in keys]

    @staticmethod
    def _check_outputs(outputs: Any, expected: int) -> None:
        if not isinstance(outputs, list):
            raise PredictionError(
                f"handler returned {type(outputs).__name__}, expected a list with one item "
                f"per request ({expected} in this batch)"
            )
        if len(outputs) != expected:
            raise PredictionError(f"handler returned {len(outputs)} items for a batch of {expected} requests")

    def _reply(self, idx: int, key: int, item: Any) -> Reply:
        if isinstance(item, BaseException):
            # the handler failed this request alone and answered the others
            error = item if isinstance(item, HookserveError) else PredictionError(f"{type(item).__name__}: {item}")
            return error_reply(key, error)
        body, content_type = encode_output(item)
        processor = self.context.request_processor[idx]
        headers = processor.get_response_headers()
        set_type = headers.pop("content-type", None) or headers.pop("Content-Type", None)
        return Reply(key, processor.get_response_status_code(), body, set_type or content_type, headers)
