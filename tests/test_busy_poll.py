"""BusyPoll keeps the event loop turning for its window after activity, and only while it
is worth it."""

from __future__ import annotations

import asyncio
import time

from hookserve.tuning.busy_poll import BusyPoll


class CountingPoll(BusyPoll):
    ticks = 0

    def _tick(self) -> None:
        self.ticks += 1
        super()._tick()


async def ticks_and_cpu(poll: CountingPoll, seconds: float) -> tuple[int, float]:
    """Touch ``poll`` once, let the loop otherwise sleep ``seconds``: the poll's loop turns
    and the CPU seconds used meanwhile."""
    poll.touch()
    cpu = time.process_time()
    await asyncio.sleep(seconds)
    return poll.ticks, time.process_time() - cpu


def test_the_loop_polls_through_the_window_then_sleeps():
    poll = CountingPoll(0.05, lambda: True)
    ticks, cpu = asyncio.run(ticks_and_cpu(poll, 0.2))
    assert ticks > 50  # it turned over and over instead of sleeping
    assert not poll.polling  # and stopped once the window was over
    assert cpu < 0.15  # the last 150 ms were spent asleep


def test_no_polling_when_not_worth_it_or_turned_off():
    unwanted = CountingPoll(0.05, lambda: False)
    assert asyncio.run(ticks_and_cpu(unwanted, 0.1))[0] == 1  # one look, then asleep
    off = CountingPoll(0.0, lambda: True)
    assert asyncio.run(ticks_and_cpu(off, 0.1))[0] == 0
