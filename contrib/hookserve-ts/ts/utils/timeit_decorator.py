"""``ts.utils.timeit_decorator.timeit``: prints a call's wall and CPU time, as TorchServe's does
(whose ``time.clock`` no longer exists: ``time.process_time`` measures the CPU time here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any


def timeit(func: Callable) -> Callable:
    @wraps(func)
    def time_and_log(*args: Any, **kwargs: Any) -> Any:
        start, start_cpu = time.time(), time.process_time()
        result = func(*args, **kwargs)
        wall, cpu = time.time() - start, time.process_time() - start_cpu
        print(f"func: {func.__name__!r} took a total of {wall:2.4f} sec to run and {cpu:2.4f} sec of CPU time\n")
        return result

    return time_and_log
