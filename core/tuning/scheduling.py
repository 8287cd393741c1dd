"""CPU scheduling policy of the frontends and model workers.

They run as ``SCHED_BATCH`` (Linux): a batch task that is woken, say a model worker by a
frontend's write or a frontend by a worker's reply, does not preempt the process running
at that moment, which then finishes its event-loop turn first. So a frontend forwards every
request it has read before the worker takes the CPU, the worker's batch is fuller, and each
process does more per switch. Measured in paired runs on 2 cores: +10 % req/s at
concurrency 64 with batch size 8, +11 % at concurrency 8 with batch size 1, no change at
concurrency 1, where a core is free for every wake-up anyway. Other programs on the machine
keep their normal priority over hookserve's processes when they wake.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("hookserve.tuning.scheduling")


def use_batch_scheduling() -> None:
    """Switch this process to ``SCHED_BATCH`` where the OS has it; otherwise keep the default."""
    if not hasattr(os, "SCHED_BATCH"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as exc:
        log.warning("could not switch to SCHED_BATCH, keeping the default scheduling: %s", exc)
