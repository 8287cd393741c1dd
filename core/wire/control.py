"""The control channel between frontends and the model manager.

One Unix socket, ``RUN_DIR/manager.sock``; a frontend sends one JSON object per line and
reads one JSON object back. An answer is ``{"status": code, "body": {...}}`` or
``{"error": {"code", "type", "message"}}``. Management calls that wait for workers
(``synchronous=true``) simply get their answer later.

A call made while the manager is starting (or being restarted by the master) waits for it,
up to ``MANAGER_START_WAIT_S``, then gets a 503 that says so; the ``manager`` entry of
``RUN_DIR/routes.json`` tells starting from gone (see ``hookserve.manager.process``).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import orjson

from hookserve.errors import HookserveError, ServiceUnavailable

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
ROUTES_FILE = "routes.json"


def manager_status(run_dir: str) -> dict:
    """The ``manager`` entry of the routes (``state``: starting, restarting, ready, stopped)."""
    try:
        return orjson.loads((Path(run_dir) / ROUTES_FILE).read_bytes()).get("manager") or {}
    except (OSError, orjson.JSONDecodeError):
        return {}


def describe_manager(status: dict) -> str:
    """Why the manager cannot take a call now, in words for an error message."""
    state = status.get("state")
    reason = f": {status['reason']}" if status.get("reason") else ""
    if state == "starting":
        return "the model manager is still starting"
    if state == "restarting":
        return f"the model manager is restarting{reason}"
    if state == "stopped":
        return f"the model manager has stopped{reason}"
    return "the model manager has not started"


class ControlServerSide:
    """The manager's end of one control connection: buffered, non-blocking."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.closed = False

    def read_messages(self) -> list[dict] | None:
        """Messages complete so far, or None once the peer has closed."""
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
        return [orjson.loads(line) for line in lines if line.strip()]

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


async def call_manager(run_dir: str, message: dict, timeout: float = DEFAULT_CALL_TIMEOUT_S) -> tuple[int, dict]:
    """Send one control message; returns ``(status, body)`` or raises the manager's error."""
    reader, writer = await connect_manager(run_dir)
    try:
        writer.write(orjson.dumps(message) + b"\n")
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
        state = status.get("state")
        waited = loop.time() - started
        if state == "stopped":
            raise ServiceUnavailable(describe_manager(status))
        if state in ("starting", "restarting"):
            if waited >= MANAGER_START_WAIT_S:
                raise ServiceUnavailable(f"{describe_manager(status)} after {waited:.0f} s of waiting; try again later")
        elif waited >= UNREACHABLE_GRACE_S:
            raise ServiceUnavailable(f"the model manager is not reachable ({error.strerror or error})")
        await asyncio.sleep(RETRY_S)
