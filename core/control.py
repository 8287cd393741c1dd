"""The control channel between frontends and the model manager.

One Unix socket, ``RUN_DIR/manager.sock``; a frontend sends one JSON object per line and
reads one JSON object back. An answer is ``{"status": code, "body": {...}}`` or
``{"error": {"code", "type", "message"}}``. Management calls that wait for workers
(``synchronous=true``) simply get their answer later.
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
    path = Path(run_dir) / CONTROL_SOCKET
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as exc:
        raise ServiceUnavailable(f"the model manager is not reachable ({exc.strerror})") from None
    try:
        writer.write(orjson.dumps(message) + b"\n")
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ServiceUnavailable("the model manager closed the control connection without an answer")
    reply = orjson.loads(line)
    if "error" in reply:
        error = reply["error"]
        raise HookserveError(error["message"], code=error["code"], type=error["type"])
    return reply["status"], reply["body"]
