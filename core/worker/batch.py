"""One batch of a model worker: request fields decoded (``hookserve_decode_input``), the
batch run (``hookserve_handle_batch``), one reply per request encoded
(``hookserve_encode_output``)."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson

from hookserve.context import Context
from hookserve.errors import BadRequest, HookserveError, PredictionError, WorkerOutOfMemory
from hookserve.pipeline_types import Batch, Model, Request
from hookserve.wire.framing import Reply, WorkRequest

log = logging.getLogger("hookserve.worker")

# Compatibility view only: TorchServe's frontend marks describe requests with a
# "describe: True" header (and, by all accounts, explanations with "explain: True"), and
# TorchServe handlers that override handle, or call BaseHandler.handle, read them through
# context.get_request_header(0, ...). The pipeline itself decides by the typed Batch.kind.
TORCHSERVE_KIND_HEADERS = {"explain": {"explain": "True"}, "describe": {"describe": "True"}}


def error_reply(key: int, error: HookserveError) -> Reply:
    body = orjson.dumps(error.to_dict())
    return Reply(key, error.code, body, "application/json", error=error.to_dict())


def is_client_error(error: HookserveError) -> bool:
    """A 4xx: the request was wrong, not the handler or the server."""
    return 400 <= error.code < 500


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


class BatchRunner:
    """Runs one batch of one model through the hooks and turns its outputs into replies."""

    def __init__(self, model: Model, context: Context):
        self.model = model
        self.context = context
        hooks = model.hooks
        self.decode = hooks.input_decoder()
        self.handle = hooks.batch_handler()
        self.encode = hooks.output_encoder()

    def run(self, batch: list[WorkRequest]) -> list[Reply]:
        replies: dict[int, Reply] = {}
        requests, runnable = [], []
        decode = self.decode
        for position, work in enumerate(batch):
            try:
                inputs = {f.name: decode(f.content_type, f.data) for f in work.fields}
            except BadRequest as exc:
                replies[position] = error_reply(work.key, exc)
                continue
            requests.append(Request(work.id, work.headers, inputs))
            runnable.append(position)
        if runnable:
            keys = [batch[p].key for p in runnable]
            for position, reply in zip(runnable, self._handle(Batch(batch[0].kind, requests), keys), strict=True):
                replies[position] = reply
        return [replies[p] for p in range(len(batch))]

    def _handle(self, batch: Batch, keys: list[int]) -> list[Reply]:
        try:
            return self._run(batch, keys)
        except Exception as exc:
            error = self._error(exc)
            ids = ",".join(r.id for r in batch.requests)
            if is_client_error(error) and len(batch.requests) > 1:
                # One request the client got wrong must not fail the others it was batched
                # with: each runs again alone and gets its own reply. Only after a failure,
                # so a good batch runs once.
                log.warning(
                    "model %s: batch %s failed with %s (%s); running its requests one by one",
                    self.context.model_name,
                    ids,
                    error.code,
                    error.message,
                )
                return [
                    reply
                    for request, key in zip(batch.requests, keys, strict=True)
                    for reply in self._handle(Batch(batch.kind, [request]), [key])
                ]
            log.error(
                "model %s: batch %s failed: %s\n%s", self.context.model_name, ids, error.message, traceback.format_exc()
            )
            return [error_reply(key, error) for key in keys]

    def _run(self, batch: Batch, keys: list[int]) -> list[Reply]:
        context = self.context
        extra = TORCHSERVE_KIND_HEADERS.get(batch.kind)
        context.start_batch(
            [r.id for r in batch.requests], [dict(r.headers, **extra) if extra else r.headers for r in batch.requests]
        )
        outputs = batch.check_replies(self.handle(self.model, batch, context))
        return [self._reply(i, key, item) for i, (key, item) in enumerate(zip(keys, outputs, strict=True))]

    @staticmethod
    def _error(exc: Exception) -> HookserveError:
        if isinstance(exc, HookserveError):
            return exc
        if is_out_of_memory(exc):
            return WorkerOutOfMemory(f"out of memory while handling the batch: {type(exc).__name__}: {exc}")
        return PredictionError(f"handler failed: {type(exc).__name__}: {exc}")

    def _reply(self, idx: int, key: int, item: Any) -> Reply:
        if isinstance(item, BaseException):
            # the handler failed this request alone and answered the others
            error = item if isinstance(item, HookserveError) else PredictionError(f"{type(item).__name__}: {item}")
            return error_reply(key, error)
        encoded = self.encode(item)
        processor = self.context.request_processor[idx]
        headers = processor.get_response_headers()
        set_type = headers.pop("content-type", None) or headers.pop("Content-Type", None)
        return Reply(key, processor.get_response_status_code(), encoded.body, set_type or encoded.content_type, headers)
