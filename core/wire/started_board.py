"""Which requests a worker has started, and which a frontend has sent, told through shared
memory instead of messages.

A frontend must know which of its requests a worker had started when that worker goes
away: those failed, the others can go to another worker and nothing runs twice. And
``responseTimeout`` counts from the start. A worker starts the requests of one connection
in the order they were sent, and their keys rise in that order, so one number says it all:
the highest key started. Each connection has a board, an 8-byte file in the run folder
that both sides map; the worker writes the number before it runs a batch. That costs no
system call and wakes no one, where a notice per batch cost a write and woke the
frontend. The frontend reads the board when the connection closes and, while requests
are in flight, every ``STARTED_POLL_S`` to time the started ones.

The frontend marks on the same board the highest key it has sent, so the worker knows
how many requests are on their way to it: sent, not yet read whole from the socket. A large
body arrives over many reads (and waits in the frontend's buffer while the worker runs a
batch); its batcher can wait for it instead of taking the queue for all there is.
"""

from __future__ import annotations

import mmap
import os
import struct
import tempfile

SLOT = struct.Struct("=q")
# two slots: the highest key started (the worker writes it), the highest key sent (the frontend)
SLOTS = struct.Struct("=qq")
# Boards live here, inside the run folder beside the worker sockets.
BOARDS_DIR = "boards"
# How late, at most, the frontend sees a start; a timeout can fire that much late.
STARTED_POLL_S = 0.05


class StartedBoard:
    def __init__(self, path: str, fd: int):
        self.path = path
        try:
            self.map = mmap.mmap(fd, SLOTS.size)
        finally:
            os.close(fd)

    @classmethod
    def create(cls, folder: str) -> StartedBoard:
        """A new board (the frontend's side), reading -1: nothing started or sent yet."""
        os.makedirs(folder, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="board-", dir=folder)
        os.write(fd, SLOTS.pack(-1, -1))
        return cls(path, fd)

    @classmethod
    def open(cls, path: str) -> StartedBoard:
        """The worker's side of a board a frontend created."""
        return cls(path, os.open(path, os.O_RDWR))

    def read(self) -> int:
        """The highest key started, -1 before the first."""
        return SLOT.unpack_from(self.map, 0)[0]

    def write(self, key: int) -> None:
        SLOT.pack_into(self.map, 0, key)

    def read_sent(self) -> int:
        """The highest key the frontend has sent, -1 before the first."""
        return SLOT.unpack_from(self.map, SLOT.size)[0]

    def write_sent(self, key: int) -> None:
        SLOT.pack_into(self.map, SLOT.size, key)

    def close(self, *, remove: bool = False) -> None:
        self.map.close()
        if remove:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
