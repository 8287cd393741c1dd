"""One batch of a model worker: request fields decoded (``hookserve_decode_input``), the
batch run (``hookserve_handle_batch``), one reply per request encoded
(``hookserve_encode_output``)."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
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


# Where a batch's intermediate replies go: (position of the request in the batch, reply).
PartSender = Callable[[int, Reply], None]


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
        # the running batch, for intermediate replies: its sender, per handler index the
        # request's position in the batch and its key, and whether any part has gone out
        self._send_part: PartSender | None = None
        self._positions: list[int] = []
        self._keys: list[int] = []
        self._streamed = False
        context.intermediate_sender = self._send_intermediate

    def run(self, batch: list[WorkRequest], send_part: PartSender | None = None) -> list[Reply]:
        """One reply per request of ``batch``, in order. A handler that streams hands its
        intermediate replies to ``send_part`` while it runs (without one, it cannot)."""
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
            self._send_part = send_part
            try:
                handled = self._handle(Batch(batch[0].kind, requests), [batch[p].key for p in runnable], runnable)
            finally:
                self._send_part = None
            for position, reply in zip(runnable, handled, strict=True):
                replies[position] = reply
        return [replies[p] for p in range(len(batch))]

    def _send_intermediate(self, idx: int, item: Any) -> None:
        if self._send_part is None:
            raise RuntimeError(
                f"model {self.context.model_name!r}: intermediate replies need a running batch of a "
                "service that streams (hookserve serve's model workers)"
            )
        if isinstance(item, BaseException):
            # an error reply would end the request: a failure is raised or returned by handle
            raise TypeError(f"an intermediate reply is data, not an exception: {item!r}")
        self._streamed = True
        self._send_part(self._positions[idx], self._reply(idx, self._keys[idx], item, more=True))

    def _handle(self, batch: Batch, keys: list[int], positions: list[int]) -> list[Reply]:
        self._positions, self._keys, self._streamed = positions, keys, False
        try:
            return self._run(batch, keys)
        except Exception as exc:
            error = self._error(exc)
            ids = ",".join(r.id for r in batch.requests)
            if is_client_error(error) and len(batch.requests) > 1 and not self._streamed:
                # One request the client got wrong must not fail the others it was batched
                # with: each runs again alone and gets its own reply. Only after a failure,
                # so a good batch runs once; never after parts were streamed, which a second
                # run would send again.
                log.warning(
                    "model %s: batch %s failed with %s (%s); running its requests one by one",
                    self.context.model_name,
                    ids,
                    error.code,
                    error.message,
                )
                return [
                    reply
                    for request, key, position in zip(batch.requests, keys, positions, strict=True)
                    for reply in self._handle(Batch(batch.kind, [request]), [key], [position])
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

    def _reply(self, idx: int, key: int, item: Any, more: bool = False) -> Reply:
        if isinstance(item, BaseException):
            # the handler failed this request alone and answered the others
            error = item if isinstance(item, HookserveError) else PredictionError(f"{type(item).__name__}: {item}")
            return error_reply(key, error)
        encoded = self.encode(item)
        processor = self.context.request_processor[idx]
        headers = processor.get_response_headers()
        if more:
            headers = dict(headers)  # the next part and the final reply read them again
        set_type = headers.pop("content-type", None) or headers.pop("Content-Type", None)
        status = processor.get_response_status_code()
        return Reply(key, status, encoded.body, set_type or encoded.content_type, headers, more=more)
