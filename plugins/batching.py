"""Dynamic batching: fill batches from the worker's queue, never waiting in vain.

TorchServe holds every request up to ``max_batch_delay`` when the batch is not full, so a
lone client pays the whole delay on every request. Here a worker waits only for requests
that can still come: each reply it sends lets one client send again, so after a batch of
``k`` replies up to ``k`` requests may be on their way; and requests a frontend has already
sent but the worker has not read whole (``arriving``: a 1 MB body takes many socket reads,
and waits in the frontend's buffer while a batch runs) are surely on their way. Once they
have arrived, or if none can come, the batch runs at once; the wait never exceeds
``max_batch_delay``. Without ``arriving``, a worker that had just read the first of several
large bodies saw one request, no more replies to wait for, and ran batches of one.
"""

from __future__ import annotations

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import BatchSettings


class ReplyAwareBatcher:
    def __init__(self, batch_size: int, max_batch_delay_s: float):
        self.batch_size = max(1, batch_size)
        self.max_delay = max(0.0, max_batch_delay_s)
        self.expected = 0  # requests that replies already sent may still bring

    def on_arrival(self) -> None:
        if self.expected:
            self.expected -= 1

    def on_replied(self, count: int) -> None:
        self.expected = count

    def wait_time(self, queued: int, waited: float, arriving: int = 0) -> float:
        if queued >= self.batch_size or (self.expected <= 0 and arriving <= 0):
            return 0.0
        return max(0.0, self.max_delay - waited)


@hookimpl(trylast=True)
def hookserve_batcher(settings: BatchSettings) -> ReplyAwareBatcher:
    return ReplyAwareBatcher(settings.batch_size, settings.max_batch_delay / 1000.0)
