"""The frontend's side of the wire: find a model's workers and forward requests to them.

Routes come from the manager's ``routes.json`` (re-read when its mtime changes). Each
frontend keeps one connection per worker, multiplexes its requests on it, and sends a new
request to the ready worker with the fewest requests in flight from this frontend.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import orjson
from hookserve.errors import (
    HookserveError,
    ModelNotFound,
    ServiceUnavailable,
    WorkerDied,
)
from hookserve.protocol import (
    Reply,
    WorkRequest,
    decode_reply,
    encode_request,
    read_frame,
)

log = logging.getLogger("hookserve.frontend")

ROUTES_FILE = "routes.json"


class ResponseTimeout(HookserveError):
    code = 504
    type = "ResponseTimeoutException"


@dataclass(frozen=True)
class VersionRoute:
    model: str
    version: str
    info: dict

    @property
    def ready_sockets(self) -> list[str]:
        return [w["socket"] for w in self.info["workers"] if w["state"] == "READY"]

    @property
    def response_timeout_s(self) -> float:
        return float(self.info["response_timeout_s"])


class WorkerConnection:
    """One multiplexed connection to one worker socket."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path
        self.pending: dict[str, asyncio.Future[Reply]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connecting: asyncio.Task | None = None
        self.closed = False

    @property
    def in_flight(self) -> int:
        return len(self.pending)

    async def _ensure_connected(self) -> asyncio.StreamWriter:
        if self._writer is not None:
            return self._writer
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(asyncio.open_unix_connection(self.socket_path))
        try:
            reader, writer = await asyncio.shield(self._connecting)
        except OSError as exc:
            self._connecting = None
            raise ServiceUnavailable(f"worker socket {self.socket_path} is not reachable: {exc.strerror}") from None
        if self._writer is None:
            self._writer = writer
            asyncio.ensure_future(self._read_replies(reader))
        return self._writer

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                meta, payload = await read_frame(reader)
                reply = decode_reply(meta, payload)
                future = self.pending.pop(reply.id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.close(WorkerDied("the model worker died while handling the request"))

    def close(self, error: HookserveError) -> None:
        self.closed = True
        if self._writer is not None:
            self._writer.close()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    async def send(self, request: WorkRequest, timeout: float) -> Reply:
        writer = await self._ensure_connected()
        future = asyncio.get_running_loop().create_future()
        self.pending[request.id] = future
        writer.writelines(encode_request(request))
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self.pending.pop(request.id, None)
            raise ResponseTimeout(f"the model did not answer within responseTimeout={timeout:g}s") from None
        except asyncio.CancelledError:
            self.pending.pop(request.id, None)
            raise


class ModelClient:
    def __init__(self, run_dir: str):
        self.routes_path = Path(run_dir) / ROUTES_FILE
        self.routes: dict = {"models": {}, "failed": {}}
        self._mtime_ns = -1
        self.connections: dict[str, WorkerConnection] = {}

    def refresh(self) -> dict:
        try:
            mtime_ns = os.stat(self.routes_path).st_mtime_ns
        except FileNotFoundError:
            return self.routes
        if mtime_ns != self._mtime_ns:
            self._mtime_ns = mtime_ns
            self.routes = orjson.loads(self.routes_path.read_bytes())
        return self.routes

    def resolve(self, model: str, version: str | None = None) -> VersionRoute:
        routes = self.refresh()
        entry = routes["models"].get(model)
        if entry is None:
            reason = routes["failed"].get(model)
            raise ModelNotFound(f"Model {model} failed to load: {reason}" if reason else f"Model not found: {model}")
        number = version or entry["default"]
        info = entry["versions"].get(number)
        if info is None:
            raise ModelNotFound(f"Model version {number} not found for model {model}")
        return VersionRoute(model, number, info)

    def _connection(self, socket_path: str) -> WorkerConnection:
        connection = self.connections.get(socket_path)
        if connection is None or connection.closed:
            connection = self.connections[socket_path] = WorkerConnection(socket_path)
        return connection

    async def submit(self, model: str, version: str | None, request: WorkRequest) -> Reply:
        route = self.resolve(model, version)
        sockets = route.ready_sockets
        if not sockets:
            raise ServiceUnavailable(f"Model {model} version {route.version} has no worker ready")
        connection = min((self._connection(s) for s in sockets), key=lambda c: c.in_flight)
        return await connection.send(request, route.response_timeout_s)

    def health(self) -> tuple[bool, list[str]]:
        """Healthy when every model version has at least its minimum of ready workers."""
        if not self.routes_path.exists():
            return False, ["the model manager has not loaded the startup models yet"]
        problems = []
        for name, entry in self.refresh()["models"].items():
            for number, info in entry["versions"].items():
                ready = sum(1 for w in info["workers"] if w["state"] == "READY")
                if ready < info["min_workers"]:
                    problems.append(f"{name}/{number}: {ready} of {info['min_workers']} workers ready")
        return not problems, problems
