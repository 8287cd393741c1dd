"""The frontend's side of the wire: find a model's workers and forward requests to them.

Routes come from the manager's ``routes.json`` (re-read when its mtime changes). Each
frontend keeps one connection per worker, multiplexes its requests on it, and sends a new
request to the ready worker with the fewest requests in flight from this frontend.

A worker marks on a shared board which requests it has started. When a worker goes away
(crash, scale-down, unregister), its started requests fail with a clear 5xx and the others
are sent again to a ready worker, so nothing accepted is lost and nothing runs twice.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import time
from collections import Counter
from pathlib import Path

from hookserve.errors import (
    HookserveError,
    ManagerTimeout,
    ModelNotFound,
    ResponseTimeout,
    ServiceUnavailable,
    WorkerDied,
)
from hookserve.frontend.reply_stream import ReplyStream, StreamAborted
from hookserve.model_service import (
    HEALTHY,
    PARTIAL,
    UNHEALTHY,
    ManagementAnswer,
    ModelDescription,
    ModelSummary,
    WorkerDescription,
)
from hookserve.tuning.busy_poll import BusyPoll
from hookserve.tuning.send_buffer import widen_send_buffer
from hookserve.wire.control import (
    DEFAULT_CALL_TIMEOUT_S,
    MANAGER_START_WAIT_S,
    ControlMessage,
    RegisterModel,
    ReplaceWorker,
    ScaleWorkers,
    SetDefault,
    Unregister,
    call_manager,
)
from hookserve.wire.framing import FrameReader, Reply, WorkRequest, decode_reply, encode_notice, encode_request
from hookserve.wire.routes import ManagerStatus, RoutesTable, VersionEntry, read_routes, routes_path
from hookserve.wire.started_board import BOARDS_DIR, STARTED_POLL_S, StartedBoard

log = logging.getLogger("hookserve.frontend")

# How often a request waiting for a ready worker looks at the routes again.
WAIT_FOR_WORKER_S = 0.02
UNREACHABLE_FOR_S = 0.2
# A stat of routes.json per request is measurable; a change is seen within this delay
# (at once for models this frontend has not seen, and after its own management calls).
ROUTES_CHECK_S = 0.002


class NotStarted(Exception):
    """The worker went away before starting this request: it can go to another worker."""


class VersionRoute:
    """A model version as the routes describe it; kept until the routes change."""

    __slots__ = ("model", "version", "info", "ready_sockets", "response_timeout")

    def __init__(self, model: str, version: str, info: VersionEntry):
        self.model = model
        self.version = version
        self.info = info
        self.ready_sockets = [w.socket for w in info.workers if w.state == "READY"]
        self.response_timeout = float(info.settings.response_timeout)


class Pending:
    """A request on a connection: its reply future, once seen started since when (or since
    its last intermediate reply), and its stream once it has sent one."""

    __slots__ = ("future", "timeout", "started_at", "stream")

    def __init__(self, future: asyncio.Future, timeout: float):
        self.future = future
        self.timeout = timeout
        self.started_at: float | None = None
        self.stream: ReplyStream | None = None


class WorkerConnection(asyncio.Protocol):
    """One multiplexed connection to one worker socket, with its started board."""

    def __init__(self, socket_path: str, boards_dir: str, busy_poll: BusyPoll):
        self.busy_poll = busy_poll
        self.socket_path = socket_path
        self.boards_dir = boards_dir
        # keys rise in the order requests are sent: the board's one number covers them all
        self.pending: dict[int, Pending] = {}
        self.keys = itertools.count()
        self.transport: asyncio.Transport | None = None
        self.board: StartedBoard | None = None
        self.frames = FrameReader()
        self._connecting: asyncio.Future | None = None
        # requests waiting for the connection to open count as in flight, or a burst on
        # fresh connections would all pick the same worker
        self.connecting = 0
        self.closed = False
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self._watch_handle: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        return len(self.pending) + self.connecting

    async def _ensure_connected(self) -> None:
        if self.transport is not None:
            return
        if self._connecting is None:
            loop = asyncio.get_running_loop()
            self._connecting = asyncio.ensure_future(loop.create_unix_connection(lambda: self, self.socket_path))
        self.connecting += 1
        try:
            await asyncio.shield(self._connecting)
        except OSError:
            self.closed = True
            raise NotStarted() from None
        finally:
            self.connecting -= 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        widen_send_buffer(transport.get_extra_info("socket"))  # see tuning.send_buffer
        self.board = StartedBoard.create(self.boards_dir)
        self._write(encode_notice({"board": self.board.path}))

    def data_received(self, data: bytes) -> None:
        self.busy_poll.touch()
        pending = self.pending
        for meta, payload in self.frames.feed(data):
            reply = decode_reply(meta, payload)
            if reply.more:
                self._intermediate(reply)
                continue
            entry = pending.pop(reply.key, None)
            if entry is None:
                continue
            if entry.stream is not None:
                entry.stream.finish(reply)
            elif not entry.future.done():
                entry.future.set_result(reply)

    def _intermediate(self, reply: Reply) -> None:
        """A part of a streamed reply: the first answers ``send`` with the stream, the others
        join it. A request no longer pending (its client left) has its parts dropped."""
        entry = self.pending.get(reply.key)
        if entry is None:
            return
        if entry.started_at is not None:
            entry.started_at = asyncio.get_running_loop().time()  # responseTimeout bounds each gap
        if entry.stream is not None:
            entry.stream.put(reply.body)
            return
        if entry.future.done():
            return
        entry.stream = reply.stream = ReplyStream(reply.body, functools.partial(self.pending.pop, reply.key, None))
        reply.more = False
        entry.future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def _watch_started(self) -> None:
        """Time started requests against their responseTimeout, while any are in flight."""
        self._watch_handle = None
        if self.closed or not self.pending or self.board is None:
            return
        loop = asyncio.get_running_loop()
        now, mark = loop.time(), self.board.read()
        expired = []
        for key, entry in self.pending.items():
            if key > mark:
                break
            if entry.started_at is None:
                entry.started_at = now
            elif now - entry.started_at >= entry.timeout:
                expired.append(key)
        for key in expired:
            entry = self.pending.pop(key)
            if entry.stream is not None:
                entry.stream.time_out(entry.timeout)
            elif not entry.future.done():
                entry.future.set_exception(asyncio.TimeoutError())
        self._watch_handle = loop.call_later(STARTED_POLL_S, self._watch_started)

    def close(self) -> None:
        if self.closed and self.transport is None:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self._watch_handle is not None:
            self._watch_handle.cancel()
        mark = -1
        if self.board is not None:
            mark = self.board.read()
            self.board.close(remove=True)
            self.board = None
        for key, entry in self.pending.items():
            if entry.stream is not None:
                entry.stream.fail(StreamAborted("the model worker died while streaming the reply"))
            elif not entry.future.done():
                entry.future.set_exception(
                    WorkerDied("the model worker died while handling the request") if key <= mark else NotStarted()
                )
        self.pending.clear()

    def _write(self, buffers: list[bytes]) -> None:
        """Queue a frame; all frames queued in one turn of the event loop go out in one write."""
        self._out.extend(buffers)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        out, self._out = self._out, []
        if not self.closed and self.transport is not None:
            self.transport.writelines(out)

    async def send(self, request: WorkRequest, timeout: float) -> Reply:
        """The worker's reply; ``asyncio.TimeoutError`` when it runs past ``timeout`` once started."""
        await self._ensure_connected()
        if self.closed:
            raise NotStarted()
        self.busy_poll.touch()
        loop = asyncio.get_running_loop()
        request.key = key = next(self.keys)
        entry = self.pending[key] = Pending(loop.create_future(), timeout)
        self._write(encode_request(request))
        self.board.write_sent(key)  # the worker's batcher may wait for it while it arrives
        if self._watch_handle is None:
            self._watch_handle = loop.call_later(STARTED_POLL_S, self._watch_started)
        try:
            return await entry.future
        except asyncio.CancelledError:
            # the client went away: the worker drops the request if it has not started it
            self.pending.pop(key, None)
            if not self.closed:
                self._write(encode_notice({"cancel": key}))
            raise


class ModelClient:
    """The :class:`hookserve.model_service.ModelService` of ``hookserve serve``'s frontends:
    model workers over their sockets, the manager over its control channel, both found in
    the run folder (nothing is opened before the first request)."""

    def __init__(self, run_dir: str, job_queue_size: int = 100, busy_poll_s: float = 0.0):
        self.run_dir = run_dir
        self.routes_path = routes_path(run_dir)
        self.routes = RoutesTable()
        self._stamp: tuple[int, int, int] | None = None
        self.connections: dict[str, WorkerConnection] = {}
        self.job_queue_size = job_queue_size
        self.queued: Counter[tuple[str, str]] = Counter()
        self.unreachable: dict[str, float] = {}  # socket -> loop time until which it is avoided
        self.boards_dir = str(Path(run_dir) / BOARDS_DIR)
        # at low load only: with more requests in flight the loop is busy anyway
        self.busy_poll = BusyPoll(busy_poll_s, lambda: sum(self.queued.values()) <= 1)
        self._checked_at = -1.0
        self._resolved: dict[tuple[str, str | None], VersionRoute] = {}

    def refresh(self, force: bool = False) -> RoutesTable:
        """The routes, looked at again at most every ``ROUTES_CHECK_S`` unless forced."""
        now = time.monotonic()
        if not force and now - self._checked_at < ROUTES_CHECK_S:
            return self.routes
        self._checked_at = now
        try:
            st = os.stat(self.routes_path)
        except FileNotFoundError:
            return self.routes
        # each publish is a new file (written aside, then renamed): the inode tells even
        # where two publishes share a coarse mtime
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.routes = read_routes(self.run_dir)
            except (OSError, ValueError) as exc:  # ValueError: orjson's or the contract's
                log.error("cannot read %s (the routes stay as they were): %s", self.routes_path, exc)
                return self.routes
            self._resolved = {}
        return self.routes

    def resolve(self, model: str, version: str | None = None) -> VersionRoute:
        routes = self.refresh()
        route = self._resolved.get((model, version))
        if route is not None:
            return route
        entry = routes.models.get(model)
        if entry is None:
            # just registered? the routes may be newer than the last look
            routes = self.refresh(force=True)
            entry = routes.models.get(model)
        if entry is None:
            reason = routes.failed.get(model)
            raise ModelNotFound(f"Model {model} failed to load: {reason}" if reason else f"Model not found: {model}")
        number = version or entry.default
        info = entry.versions.get(number)
        if info is None and version is not None:
            newer = self.refresh(force=True).models.get(model)
            info = newer.versions.get(number) if newer else None
        if info is None:
            raise ModelNotFound(f"Model version: {number} does not exist for model: {model}")
        route = self._resolved[(model, version)] = VersionRoute(model, number, info)
        return route

    def manager_state(self) -> ManagerStatus:
        """The manager's entry in the routes: ``state`` is starting, restarting, ready or stopped."""
        return self.refresh().manager

    async def resolve_when_ready(self, model: str, version: str | None = None) -> VersionRoute:
        """``resolve``, but a model not (yet) known while the manager starts is waited for,
        up to ``MANAGER_START_WAIT_S``: a start-up model may not be registered yet."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            try:
                return self.resolve(model, version)
            except ModelNotFound:
                manager = self.manager_state()
                if manager.state not in ("starting", "restarting"):
                    raise
                if loop.time() - started >= MANAGER_START_WAIT_S:
                    raise ServiceUnavailable(
                        f"Model {model} is not available: {manager.describe()}; try again later"
                    ) from None
            await asyncio.sleep(WAIT_FOR_WORKER_S)

    def _connection(self, socket_path: str) -> WorkerConnection:
        connection = self.connections.get(socket_path)
        if connection is None or connection.closed:
            connection = self.connections[socket_path] = WorkerConnection(socket_path, self.boards_dir, self.busy_poll)
        return connection

    async def submit(self, route: VersionRoute, request: WorkRequest) -> Reply:
        """Send a request to a ready worker of ``route`` (from ``resolve``) and return its reply."""
        model, version = route.model, route.version
        key = (model, version)
        if self.queued[key] >= self.job_queue_size:
            raise ServiceUnavailable(
                f"Model {model} version {version} has {self.queued[key]} requests queued "
                f"(job_queue_size={self.job_queue_size}); try again later"
            )
        self.queued[key] += 1
        loop = asyncio.get_running_loop()
        waiting_since: float | None = None
        try:
            while True:
                sockets = route.ready_sockets
                if self.unreachable:
                    now = loop.time()
                    self.unreachable = {s: until for s, until in self.unreachable.items() if until > now}
                    sockets = [s for s in sockets if s not in self.unreachable]
                if not sockets:
                    if not route.info.workers:
                        raise ServiceUnavailable(
                            f"Model {model} version {version} has no worker; "
                            f"scale it up with PUT /models/{model}?min_worker=N"
                        )
                    # every worker is (re)starting: wait up to responseTimeout for one
                    now = loop.time()
                    waiting_since = now if waiting_since is None else waiting_since
                    if now - waiting_since >= route.response_timeout:
                        manager = self.manager_state()
                        why = "" if manager.state == "ready" else f" ({manager.describe()})"
                        raise ServiceUnavailable(f"Model {model} version {version} has no worker ready{why}")
                    await asyncio.sleep(WAIT_FOR_WORKER_S)
                    route = self.resolve(model, version)
                    continue
                waiting_since = None
                connection = min((self._connection(s) for s in sockets), key=lambda c: c.in_flight)
                try:
                    reply = await connection.send(request, route.response_timeout)
                    if reply.stream is not None:
                        reply.stream.on_timeout = functools.partial(self._replace_soon, connection.socket_path)
                    return reply
                except NotStarted:
                    # gone before starting it: another worker takes it; this socket is avoided
                    # until the manager has had time to publish its replacement
                    self.unreachable[connection.socket_path] = loop.time() + UNREACHABLE_FOR_S
                    route = self.resolve(model, version)
                except asyncio.TimeoutError:
                    self._replace_soon(connection.socket_path)
                    raise ResponseTimeout(
                        f"Model {model} version {version} did not answer within "
                        f"responseTimeout={route.response_timeout:g}s; its worker is being replaced"
                    ) from None
        finally:
            self.queued[key] -= 1

    def _replace_soon(self, socket_path: str) -> None:
        asyncio.ensure_future(self._replace_worker(socket_path))

    async def _replace_worker(self, socket_path: str) -> None:
        try:
            await call_manager(self.run_dir, ReplaceWorker(socket=socket_path), timeout=10)
        except HookserveError as exc:
            log.error("could not ask the manager to replace worker %s: %s", socket_path, exc.message)

    def pending_for(self, model: str, version: str) -> int:
        return self.queued[(model, version)]

    def health(self) -> tuple[str, list[str]]:
        """``/ping``'s status, TorchServe's rule over the default versions' ``minWorkers``:
        ``Healthy`` when every default version has them ready, ``Partial Healthy`` when some of
        the workers that should run do, ``Unhealthy`` when none do. A start-up model that failed
        to load counts as one worker that should run and does not. Where TorchServe counts a
        worker that is loading, or restarting within ``maxRetryTimeoutInSec``, only READY
        workers count here, so ``/ping`` is a readiness check; and it is never healthy before
        the manager can take a registration, or while it restarts.

        Returns ``(status, problems)``, one line per shortfall, e.g.
        ``("Partial Healthy", ["mlp/1.0: 1 of 2 workers ready"])``.
        """
        routes = self.refresh()
        if routes.manager.state != "ready":
            return UNHEALTHY, [routes.manager.describe()]
        problems = []
        wanted = running = 0
        for name, entry in sorted(routes.models.items()):
            number = entry.default
            info = entry.versions[number]
            ready = sum(1 for w in info.workers if w.state == "READY")
            minimum = info.settings.min_worker
            # capped: a model with more than its minimum does not hide another's shortfall
            wanted, running = wanted + minimum, running + min(ready, minimum)
            if ready < minimum:
                problems.append(f"{name}/{number}: {ready} of {minimum} workers ready")
        for name, reason in sorted(routes.failed.items()):
            wanted += 1
            problems.append(f"{name}: failed to load at start-up: {reason}")
        if running == wanted:
            return HEALTHY, problems
        return (PARTIAL if running else UNHEALTHY), problems

    # --- what the management API reads: the routes ------------------------------------

    def list_models(self) -> list[ModelSummary]:
        models = self.refresh().models
        return [ModelSummary(name, models[name].versions[models[name].default].url) for name in sorted(models)]

    def versions(self, model: str) -> list[str]:
        entry = self.refresh().models.get(model)
        return list(entry.versions) if entry else []

    def describe(self, model: str, version: str | None = None) -> ModelDescription:
        route = self.resolve(model, version)
        info = route.info
        pending = self.pending_for(model, route.version)
        return ModelDescription(
            model=model,
            version=route.version,
            url=info.url,
            runtime=info.runtime,
            settings=info.settings,
            device_type=info.device_type or ("gpu" if any(w.device != "cpu" for w in info.workers) else "cpu"),
            loaded_at_startup=info.loaded_at_startup,
            workers=tuple(WorkerDescription(w.id, w.pid, w.state, w.device, w.started_at) for w in info.workers),
            pending_requests=pending,
            queue_capacity=self.job_queue_size - pending,
        )

    # --- what the management API changes: the manager's control channel ---------------

    async def register(self, message: RegisterModel) -> ManagementAnswer:
        return await self._manage(message)

    async def scale(self, message: ScaleWorkers) -> ManagementAnswer:
        return await self._manage(message)

    async def unregister(self, model: str, version: str | None = None) -> ManagementAnswer:
        return await self._manage(Unregister(model=model, version=version))

    async def set_default(self, model: str, version: str) -> ManagementAnswer:
        return await self._manage(SetDefault(model=model, version=version))

    async def _manage(self, message: ControlMessage) -> ManagementAnswer:
        try:
            status, body = await call_manager(self.run_dir, message, timeout=DEFAULT_CALL_TIMEOUT_S)
        except (TimeoutError, asyncio.TimeoutError):  # one class from Python 3.11 on
            # the manager answers a slow synchronous call itself before this; this is a
            # manager too busy to answer at all
            raise ManagerTimeout(
                f"the model manager did not answer {message.op} within {DEFAULT_CALL_TIMEOUT_S:g} s; "
                "the change may still be in progress (GET /models shows the workers)"
            ) from None
        self.refresh(force=True)  # this frontend's next request sees the change
        return ManagementAnswer(status, body["status"])
