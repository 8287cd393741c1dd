"""A streamed reply on the frontend's side: the parts a worker sends for one request, as
the async iterator of body chunks that the HTTP layer writes as chunked transfer.

A handler that calls ``Context.send_intermediate_reply`` makes its worker send intermediate
replies before the final one (see ``hookserve.wire.framing``). The first starts the stream;
each is one chunk; the final reply's body is the last. A final reply that is an error, a
worker that dies, or a gap longer than the model's responseTimeout between two parts ends
the stream with :class:`StreamAborted`: the status line has gone out already, so the client
can only learn of the failure from a body that stops without its last chunk.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from hookserve.wire.framing import Reply


class StreamAborted(Exception):
    """A streamed reply that cannot end normally; the HTTP connection is cut without the
    terminating chunk, so the client sees an incomplete body rather than a short success."""


class ReplyStream:
    """Body parts in the order the worker sent them, the first included, then the end.

    ``detach`` forgets the request on its worker connection; it runs when the consumer
    closes the stream before its end (the client went away), so later parts are dropped as
    they arrive. ``on_timeout`` (optional) runs when the stream ends for lack of a part
    within the responseTimeout, to have the stuck worker replaced.
    """

    __slots__ = ("parts", "ended", "error", "waiter", "detach", "on_timeout")

    def __init__(self, first: bytes, detach: Callable[[], None]):
        self.parts: collections.deque[bytes] = collections.deque((first,))
        self.ended = False
        self.error: StreamAborted | None = None
        self.waiter: asyncio.Future | None = None
        self.detach = detach
        self.on_timeout: Callable[[], None] | None = None

    def put(self, body: bytes) -> None:
        self.parts.append(body)
        self._wake()

    def finish(self, reply: Reply) -> None:
        """The request's final reply: its body is the last part, or, when it is an error,
        the stream is aborted."""
        if reply.error is not None:
            self.fail(StreamAborted(f"the handler failed after streaming: {reply.error.get('message', reply.error)}"))
            return
        self.parts.append(reply.body)
        self.ended = True
        self._wake()

    def fail(self, error: StreamAborted) -> None:
        self.error = error
        self.ended = True
        self._wake()

    def time_out(self, timeout: float) -> None:
        self.fail(StreamAborted(f"no part of the streamed reply came within responseTimeout={timeout:g}s"))
        if self.on_timeout is not None:
            self.on_timeout()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> bytes:
        while not self.parts:
            if self.ended:
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.parts.popleft()

    async def close(self) -> None:
        """Called by falcon once it stops iterating, at the end or because the client left."""
        if not self.ended:
            self.ended = True
            self.parts.clear()
            self.detach()
