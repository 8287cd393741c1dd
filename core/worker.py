"""A model worker: one process, one model version, one device.

It is forked by the model manager (which has already imported torch), loads the model
through the handler and the hooks, listens on its own Unix socket, collects requests from
every frontend into batches and answers each request with one reply frame.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any

import orjson
import uvloop

from hookserve.archive import ModelArchive
from hookserve.busy_poll import BusyPoll
from hookserve.context import Context
from hookserve.errors import BadRequest, HookserveError, PredictionError, WorkerOutOfMemory
from hookserve.garbage_collection import settle_heap
from hookserve.handler_entry import HandlerEntry, resolve_handler
from hookserve.plugin_types import Batcher, BatchSettings
from hookserve.pluginmanager import Hooks
from hookserve.protocol import FrameReader, Reply, WorkRequest, decode_frontend_frame, encode_reply
from hookserve.scheduling import use_batch_scheduling
from hookserve.started_board import BOARDS_DIR, StartedBoard

log = logging.getLogger("hookserve.worker")

KIND_HEADERS = {"explain": {"explain": "True"}, "describe": {"describe": "True"}}


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a new worker needs; built by the manager before the fork."""

    worker_id: str
    archive: ModelArchive
    socket_path: str
    gpu_id: int | None
    batch_size: int
    max_batch_delay_ms: int
    torch_threads: int | None = None
    busy_poll_s: float = 0.0
    batch_scheduling: bool = False


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


class FrontendConnection(asyncio.Protocol):
    """One frontend's connection: its requests in, their replies out, its starts on its board."""

    def __init__(self, server: WorkerServer):
        self.server = server
        self.frames = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.board: StartedBoard | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        for meta, payload in self.frames.feed(data):
            frame = decode_frontend_frame(meta, payload)
            if isinstance(frame, WorkRequest):
                self.server.arrive(self, frame)
            elif "cancel" in frame:
                self.server.cancel(self, frame["cancel"])
            elif os.path.realpath(os.path.dirname(frame["board"])) == self.server.boards_dir:
                self.board = StartedBoard.open(frame["board"])
            else:
                log.error("a frontend named a started board outside %s: %r", self.server.boards_dir, frame["board"])
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.board is not None:
            self.board.close()
            self.board = None

    def write(self, buffers: list[bytes]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(buffers)


class WorkerServer:
    """The worker's socket side: frames in, batches out, replies back on their connection.

    Batches run from event-loop callbacks: an arrival schedules a look at the queue, which
    runs a batch at once or, while the batcher wants to wait for more, sets a timer (and
    the next arrival looks again). On SIGTERM it stops accepting connections, finishes
    every request it has received (and any that arrive while it drains), then closes its
    connections and returns.
    """

    # After the queue runs dry while draining, wait this long for frames still on the way.
    DRAIN_QUIET_S = 0.1

    def __init__(self, runner: BatchRunner, batcher: Batcher, busy_poll_s: float = 0.0):
        self.runner = runner
        self.batcher = batcher
        self.queue: collections.deque[tuple[FrontendConnection, WorkRequest]] = collections.deque()
        self.connections: set[FrontendConnection] = set()
        self.draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future | None = None
        self._look: asyncio.Handle | None = None  # the next look at the queue, soon or timed
        self._look_is_soon = False
        self._waiting_since: float | None = None  # when the batch now forming began to wait
        self._quiet: asyncio.TimerHandle | None = None
        self.boards_dir = ""
        # only while idle: a queue that is not empty keeps the loop busy anyway
        self.busy_poll = BusyPoll(busy_poll_s, lambda: not self.queue)

    async def serve(self, socket_path: str, on_ready: Any) -> None:
        self.boards_dir = os.path.realpath(os.path.join(os.path.dirname(socket_path), BOARDS_DIR))
        loop = self._loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        server = await loop.create_unix_server(lambda: FrontendConnection(self), path=socket_path)
        loop.add_signal_handler(signal.SIGTERM, self._drain, server)
        on_ready()
        await self._done
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()

    def _drain(self, server: asyncio.AbstractServer) -> None:
        self.draining = True
        server.close()
        if not self.queue:
            self._wait_until_quiet()

    def _wait_until_quiet(self) -> None:
        if self._quiet is None:
            self._quiet = self._loop.call_later(self.DRAIN_QUIET_S, self._finish_if_quiet)

    def _finish_if_quiet(self) -> None:
        self._quiet = None
        if not self.queue and not self._done.done():
            self._done.set_result(None)

    def arrive(self, connection: FrontendConnection, request: WorkRequest) -> None:
        self.queue.append((connection, request))
        self.batcher.on_arrival()
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None
        if not self._look_is_soon:
            if self._look is not None:
                self._look.cancel()  # a timed look: the batcher decides again with this arrival
            self._look = self._loop.call_soon(self._look_at_queue)
            self._look_is_soon = True

    def cancel(self, connection: FrontendConnection, key: int) -> None:
        for entry in self.queue:
            if entry[0] is connection and entry[1].key == key:
                self.queue.remove(entry)
                return

    def _look_at_queue(self) -> None:
        self._look, self._look_is_soon = None, False
        if not self.queue:  # cancels may have emptied it
            self._waiting_since = None
            if self.draining:
                self._wait_until_quiet()
            return
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        wait = self.batcher.wait_time(len(self.queue), now - self._waiting_since)
        if wait:
            self._look = self._loop.call_later(wait, self._look_at_queue)
            return
        self._waiting_since = None
        self._run(self._take_batch())
        self.busy_poll.touch()
        # replies go out and new frames come in before the next batch
        self._look = self._loop.call_soon(self._look_at_queue)
        self._look_is_soon = True

    def _take_batch(self) -> list[tuple[FrontendConnection, WorkRequest]]:
        kind = self.queue[0][1].kind
        batch = [self.queue.popleft()]
        while self.queue and len(batch) < self.batcher.batch_size and self.queue[0][1].kind == kind:
            batch.append(self.queue.popleft())
        return batch

    def _run(self, batch: list[tuple[FrontendConnection, WorkRequest]]) -> None:
        # marked before running: a request that was started is never sent elsewhere
        for connection, request in batch:
            if connection.board is not None:
                connection.board.write(request.key)
        replies = self.runner.run([request for _, request in batch])
        # each connection's replies in one write: one system call per frontend, not per request
        out: dict[FrontendConnection, list[bytes]] = {}
        for (connection, _), reply in zip(batch, replies, strict=True):
            out.setdefault(connection, []).extend(encode_reply(reply))
        for connection, buffers in out.items():
            connection.write(buffers)
        self.batcher.on_replied(len(batch))


def load_model(
    archive: ModelArchive, hooks: Hooks, *, gpu_id: int | None = None, batch_size: int = 1
) -> tuple[HandlerEntry, Context]:
    """Resolve the archive's handler, register its overrides as this model's plugin and
    initialize it: what every worker does before serving."""
    context = Context(
        archive.name, str(archive.model_dir), archive.manifest, batch_size, gpu_id, model_yaml_config=archive.config
    )
    context.hooks = hooks
    context.archive = archive
    entry = resolve_handler(archive, hooks)
    plugin = hooks.handler_plugin(handler=entry.handler)
    if plugin is not None:
        hooks.pm.register(plugin, name=f"handler:{archive.name}")
    entry.initialize(context)
    return entry, context


def start_worker(spec: WorkerSpec, hooks: Hooks, report: Any) -> None:
    """Load the model and serve until killed. ``report(line)`` tells the manager our state."""
    archive = spec.archive
    logging.getLogger().handlers[:] = []
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s [worker {spec.worker_id} pid {os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    if spec.batch_scheduling:
        use_batch_scheduling()
    if spec.torch_threads:
        import torch

        torch.set_num_threads(spec.torch_threads)
    entry, context = load_model(archive, hooks, gpu_id=spec.gpu_id, batch_size=spec.batch_size)
    batcher = hooks.batcher(settings=BatchSettings(archive.name, spec.batch_size, spec.max_batch_delay_ms))
    settle_heap()
    server = WorkerServer(BatchRunner(entry, context), batcher, spec.busy_poll_s)
    uvloop.run(server.serve(spec.socket_path, lambda: report("READY")))
