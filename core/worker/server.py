"""The model worker's socket side: frames from every frontend in, batches out, replies back
on the connection each request came from."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import os
import signal
import time
from typing import Any

from hookserve.plugin_types import Batcher
from hookserve.tuning.busy_poll import BusyPoll
from hookserve.wire.framing import FrameReader, Reply, WorkRequest, decode_frontend_frame, encode_reply
from hookserve.wire.started_board import BOARDS_DIR, StartedBoard
from hookserve.worker.batch import BatchRunner

log = logging.getLogger("hookserve.worker")


class FrontendConnection(asyncio.Protocol):
    """One frontend's connection: its requests in, their replies out, its starts on its board."""

    def __init__(self, server: WorkerServer):
        self.server = server
        self.frames = FrameReader()
        self.transport: asyncio.Transport | None = None
        self.board: StartedBoard | None = None
        self.received = -1  # the key of the last request read whole (keys rise as sent)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        for meta, payload in self.frames.feed(data):
            frame = decode_frontend_frame(meta, payload)
            if isinstance(frame, WorkRequest):
                self.received = frame.key
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

    def arriving(self) -> int:
        """Requests the frontend has sent that are not read whole yet: in the socket, in the
        frontend's buffer, or half read here."""
        if self.board is None:
            return 0
        # the frontend marks a request sent just after writing it, so the worker can read it
        # first: never a negative count that would hide another connection's arrivals
        return max(0, self.board.read_sent() - self.received)


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
        # batchers written before ``arriving`` existed keep their two-argument wait_time
        self._tell_arriving = "arriving" in inspect.signature(batcher.wait_time).parameters
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
        self._running: list[tuple[FrontendConnection, WorkRequest]] = []

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
        queued = len(self.queue)
        if queued >= self.batcher.batch_size:
            wait = 0.0  # a full batch runs at once (nothing to count: at batch size 1, always)
        elif self._tell_arriving:
            arriving = sum(connection.arriving() for connection in self.connections)
            wait = self.batcher.wait_time(queued, now - self._waiting_since, arriving=arriving)
        else:
            wait = self.batcher.wait_time(queued, now - self._waiting_since)
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
        self._running = batch
        replies = self.runner.run([request for _, request in batch], self._send_part)
        self._running = []
        # each connection's replies in one write: one system call per frontend, not per request
        out: dict[FrontendConnection, list[bytes]] = {}
        for (connection, _), reply in zip(batch, replies, strict=True):
            out.setdefault(connection, []).extend(encode_reply(reply))
        for connection, buffers in out.items():
            connection.write(buffers)
        self.batcher.on_replied(len(batch))

    def _send_part(self, position: int, reply: Reply) -> None:
        """An intermediate reply, written at once (the batch is still running) on the
        connection its request came from; a frontend whose client has left drops it."""
        self._running[position][0].write(encode_reply(reply))
