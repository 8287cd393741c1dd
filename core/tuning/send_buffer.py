"""Frontend-to-worker sockets whose kernel buffer holds a batch's request bodies.

A model worker reads nothing while it runs a batch. What a frontend forwards meanwhile waits
in the kernel as far as the socket's send buffer allows (Linux gives 208 KiB by default), the
rest in the frontend's memory; once the batch ends, the frontend must be scheduled again and
again to pass that on while the batcher's delay runs out. With 1.1 MB JPEGs at batch size 8
and 16 connections the worker saw the bodies trickle in after each batch and ran batches of
4.8 on average; with 8 MiB the kernel holds them and the worker reads them at memory speed:
batches of 7.75 (``bench/resnet``). The memory is used only while bodies wait in it.
"""

from __future__ import annotations

import socket

WANTED_BYTES = 8 << 20


def widen_send_buffer(sock: socket.socket) -> int:
    """Ask for ``WANTED_BYTES`` of send buffer on ``sock`` and return what the kernel granted.

    Linux caps the request at ``net.core.wmem_max`` and reports twice the capped value (its
    own bookkeeping); macOS refuses more than ``kern.ipc.maxsockbuf``, which leaves the default.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, WANTED_BYTES)
    except OSError:
        pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def send_buffer_shortfall() -> str | None:
    """What to tell an operator when this kernel grants worker sockets less than ``WANTED_BYTES``
    (None when it grants enough), found on a socket pair made for the purpose."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        granted = widen_send_buffer(left)
    if granted >= WANTED_BYTES:
        return None
    return (
        f"the kernel grants sockets to model workers a send buffer of {granted // 1024} KiB, "
        f"not {WANTED_BYTES >> 20} MiB: requests sent while a worker runs a batch wait in the "
        "frontend, and with large bodies batches fill less; on Linux "
        f"`sysctl -w net.core.wmem_max={WANTED_BYTES // 2}` allows it"
    )
