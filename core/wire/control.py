"""The control channel between frontends and the model manager.

One Unix socket, ``RUN_DIR/manager.sock``; a frontend sends one message per line (a
dataclass below, as a JSON object with its ``op``) and reads one JSON object back. The
manager decodes each message once (:func:`decode_control`) and dispatches it by type. An
answer is ``{"status": code, "body": {...}}`` or
``{"error": {"code", "type", "message"}}``. Management calls that wait for workers
(``synchronous=true``) simply get their answer later.

A call made while the manager is starting (or being restarted by the master) waits for it,
up to ``MANAGER_START_WAIT_S``, then gets a 503 that says so; the ``manager`` entry of
``RUN_DIR/routes.json`` tells starting from gone (see ``hookserve.manager.process``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import orjson

from hookserve.errors import BadRequest, HookserveError, ServiceUnavailable
from hookserve.wire.contracts import WireError, decode
from hookserve.wire.routes import NOT_STARTED, ManagerStatus, read_routes

CONTROL_SOCKET = "manager.sock"
# Generous: a synchronous registration waits for its model to load.
DEFAULT_CALL_TIMEOUT_S = 600.0
# How long a call waits for a manager that is starting: it imports torch (1.5 s on an idle
# machine, several times that on a loaded one) and registers the start-up models. A fixed
# bound rather than startup_timeout (a model's load time, 120 s by default): a client
# waiting that long for a 503 is worse off than one told to retry.
MANAGER_START_WAIT_S = 30.0
# A manager marked ready but not listening has died a moment ago: the master marks it as
# restarting at once (on SIGCHLD); past this grace it is taken as gone.
UNREACHABLE_GRACE_S = 2.0
RETRY_S = 0.02


@dataclass(frozen=True)
class RegisterModel:
    """``POST /models``: open an archive and start ``initial_workers`` workers (the settings
    left None come from the archive's ``model-config.yaml`` or the server's defaults)."""

    op: ClassVar[str] = "register"
    url: str | None = None
    model_name: str | None = None
    handler: str | None = None
    runtime: str | None = None
    initial_workers: int | None = None
    batch_size: int | None = None
    max_batch_delay: int | None = None
    response_timeout: int | None = None
    startup_timeout: int | None = None
    synchronous: bool = True

    def settings(self) -> dict[str, int]:
        """The model settings this call gives (by :class:`~hookserve.wire.routes.ModelSettings` name)."""
        given = {
            "batch_size": self.batch_size,
            "max_batch_delay": self.max_batch_delay,
            "response_timeout": self.response_timeout,
            "startup_timeout": self.startup_timeout,
        }
        return {name: value for name, value in given.items() if value is not None}


@dataclass(frozen=True)
class ScaleWorkers:
    """``PUT /models/{model}[/{version}]``: a new worker range (None keeps the bound)."""

    op: ClassVar[str] = "scale"
    model: str
    version: str | None = None
    min_worker: int | None = None
    max_worker: int | None = None
    synchronous: bool = False


@dataclass(frozen=True)
class SetDefault:
    """``PUT /models/{model}/{version}/set-default``."""

    op: ClassVar[str] = "set_default"
    model: str
    version: str


@dataclass(frozen=True)
class Unregister:
    """``DELETE /models/{model}[/{version}]`` (None: the default version)."""

    op: ClassVar[str] = "unregister"
    model: str
    version: str | None = None


@dataclass(frozen=True)
class ReplaceWorker:
    """A frontend gave up on a request past its ``response_timeout``: replace the worker that holds it."""

    op: ClassVar[str] = "worker_timeout"
    socket: str


ControlMessage = RegisterModel | ScaleWorkers | SetDefault | Unregister | ReplaceWorker
MESSAGES: dict[str, type[ControlMessage]] = {
    cls.op: cls for cls in (RegisterModel, ScaleWorkers, SetDefault, Unregister, ReplaceWorker)
}


def encode_control(message: ControlMessage) -> bytes:
    """One line: the message's fields and its ``op``."""
    return orjson.dumps({"op": message.op, **dataclasses.asdict(message)}) + b"\n"


def decode_control(line: bytes) -> ControlMessage:
    """The message on one line, checked once; a ``BadRequest`` names what is wrong."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"control message is not JSON: {exc}") from None
    op = data.get("op") if isinstance(data, dict) else None
    cls = MESSAGES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise BadRequest(f"unknown control operation {op!r}")
    try:
        return decode(cls, data, "")
    except WireError as exc:
        raise BadRequest(f"Parameter {exc}") from None


def manager_status(run_dir: str) -> ManagerStatus:
    """The ``manager`` entry of the routes (see :class:`~hookserve.wire.routes.ManagerStatus`)."""
    try:
        return read_routes(run_dir).manager
    except (OSError, ValueError):  # orjson.JSONDecodeError and WireError are ValueErrors
        return NOT_STARTED


class ControlServerSide:
    """The manager's end of one control connection: buffered, non-blocking."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.closed = False

    def read_messages(self) -> list[bytes] | None:
        """Message lines complete so far (see :func:`decode_control`), or None once the peer has closed."""
        try:
            chunk = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            chunk = b""
        if not chunk:
            return None
        self.buffer += chunk
        lines = self.buffer.split(b"\n")
        self.buffer = lines.pop()
        return [line for line in lines if line.strip()]

    def answer(self, status: int, body: dict) -> None:
        self._send({"status": status, "body": body})

    def fail(self, error: HookserveError) -> None:
        self._send({"error": error.to_dict()})

    def _send(self, message: dict) -> None:
        if self.closed:
            return
        try:
            self.sock.setblocking(True)
            self.sock.sendall(orjson.dumps(message) + b"\n")
        except OSError:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()


async def call_manager(
    run_dir: str, message: ControlMessage, timeout: float = DEFAULT_CALL_TIMEOUT_S
) -> tuple[int, dict]:
    """Send one control message; returns ``(status, body)`` or raises the manager's error."""
    reader, writer = await connect_manager(run_dir)
    try:
        writer.write(encode_control(message))
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ServiceUnavailable(
            "the model manager closed the control connection without an answer (it stopped or died); "
            "look at the model's state before trying again"
        )
    reply = orjson.loads(line)
    if "error" in reply:
        error = reply["error"]
        raise HookserveError(error["message"], code=error["code"], type=error["type"])
    return reply["status"], reply["body"]


async def connect_manager(run_dir: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the manager, waiting while it starts (see the module doc)."""
    path = str(Path(run_dir) / CONTROL_SOCKET)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        try:
            return await asyncio.open_unix_connection(path)
        except OSError as exc:
            error = exc
        status = manager_status(run_dir)
        state = status.state
        waited = loop.time() - started
        if state == "stopped":
            raise ServiceUnavailable(status.describe())
        if state in ("starting", "restarting"):
            if waited >= MANAGER_START_WAIT_S:
                raise ServiceUnavailable(f"{status.describe()} after {waited:.0f} s of waiting; try again later")
        elif waited >= UNREACHABLE_GRACE_S:
            raise ServiceUnavailable(f"the model manager is not reachable ({error.strerror or error})")
        await asyncio.sleep(RETRY_S)
