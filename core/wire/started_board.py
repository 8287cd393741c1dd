"""Which requests a worker has started, told through shared memory instead of a message.

A frontend must know which of its requests a worker had started when that worker goes
away: those failed, the others can go to another worker and nothing runs twice. And
``responseTimeout`` counts from the start. A worker starts the requests of one connection
in the order they were sent, and their keys rise in that order, so one number says it all:
the highest key started. Each connection has a board, an 8-byte file in the run folder
that both sides map; the worker writes the number before it runs a batch. That costs no
system call and wakes no one, where a notice per batch cost a write and woke the
frontend. The frontend reads the board when the connection closes and, while requests
are in flight, every ``STARTED_POLL_S`` to time the started ones.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile

SLOT = struct.Struct("=q")
# Boards live here, inside the run folder beside the worker sockets.
BOARDS_DIR = "boards"
# How late, at most, the frontend sees a start; a timeout can fire that much late.
STARTED_POLL_S = 0.05


class StartedBoard:
    def __init__(self, path: str, fd: int):
        self.path = path
        try:
            self.map = mmap.mmap(fd, SLOT.size)
        finally:
            os.close(fd)

    @classmethod
    def create(cls, folder: str) -> StartedBoard:
        """A new board (the frontend's side), reading -1: nothing started yet."""
        os.makedirs(folder, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="board-", dir=folder)
        os.write(fd, SLOT.pack(-1))
        return cls(path, fd)

    @classmethod
    def open(cls, path: str) -> StartedBoard:
        """The worker's side of a board a frontend created."""
        return cls(path, os.open(path, os.O_RDWR))

    def read(self) -> int:
        """The highest key started, -1 before the first."""
        return SLOT.unpack_from(self.map)[0]

    def write(self, key: int) -> None:
        SLOT.pack_into(self.map, 0, key)

    def close(self, *, remove: bool = False) -> None:
        self.map.close()
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
