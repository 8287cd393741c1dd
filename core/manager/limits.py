"""Bounds on what a model may ask for: worker counts, memory, batch settings.

Worker counts are bounded per model version and server-wide, with defaults derived from
the machine (``--max-workers-per-model`` and ``--max-workers`` override them):

* per model version: ``max(4, 4 x CPU cores)`` -- a model gains nothing from many more
  workers than cores (each runs torch ops on its own threads), and 4 leaves room for
  I/O-bound handlers on a one-core box;
* server-wide: ``max(4, min(16 x CPU cores, total memory / 256 MiB))`` -- memory is what
  a runaway scale exhausts, and 256 MiB is a small worker (torch's pages shared with the
  manager, a small model loaded); the cores term keeps a large-memory box from running
  hundreds of processes on a few cores.

A 2-core 24 GiB box gets 8 per model and 32 in all; a 64-core 256 GiB box 256 and 1024.

Past a bound, a request is refused with 400 (the message names the bound and the flag that
changes it). Within the bounds, new workers must also fit in the memory the machine has
now (``MemAvailable`` less a 5 % reserve), at the private memory measured from a running
worker of the same version, else an estimate from the archive's weights; a request that
does not fit is refused with 507, TorchServe's out-of-memory code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookserve.errors import BadRequest, InsufficientMemory

MIB = 1024 * 1024
# What one worker is assumed to cost when deriving the server-wide bound.
WORKER_BUDGET_BYTES = 256 * MIB
# A worker whose model is not loaded yet: the interpreter's private pages plus twice the
# weights (the file read, then the tensors).
BASE_WORKER_BYTES = 64 * MIB
MEMORY_RESERVE_FRACTION = 0.05


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes (empty where there is none)."""
    found = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    found[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return found


def default_max_workers_per_model(cores: int | None = None) -> int:
    return max(4, 4 * (cores or cpu_count()))


def default_max_workers(cores: int | None = None, memory: int | None = None) -> int:
    cores = cores or cpu_count()
    memory = memory if memory is not None else meminfo().get("MemTotal", 0)
    by_memory = memory // WORKER_BUDGET_BYTES if memory else 16 * cores
    return max(4, min(16 * cores, by_memory))


@dataclass(frozen=True)
class WorkerBounds:
    per_model: int
    total: int

    @classmethod
    def from_config(cls, config: Any, gpu_count: int = 0) -> WorkerBounds:
        """The configured bounds, else the machine's (never below one worker per GPU)."""
        return cls(
            per_model=config.max_workers_per_model or max(default_max_workers_per_model(), gpu_count),
            total=config.max_workers or max(default_max_workers(), gpu_count),
        )

    def check(self, model: str, count: int, others: int) -> None:
        """Refuse ``count`` workers for ``model`` when ``others`` run for the other models."""
        if count > self.per_model:
            raise BadRequest(
                f"{count} workers for model {model} exceed the limit of {self.per_model} workers per model "
                f"(--max-workers-per-model; default max(4, 4 x {cpu_count()} CPU cores))",
            )
        if count + others > self.total:
            raise BadRequest(
                f"{count} workers for model {model} and {others} for the other models exceed the server's limit "
                f"of {self.total} workers in all (--max-workers; default max(4, min(16 x CPU cores, "
                "memory / 256 MiB)))",
            )


def private_bytes(pid: int) -> int:
    """Memory a process does not share (``Private_*`` of ``smaps_rollup``): what another
    worker like it adds. 0 when unknown."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Private_Clean:", "Private_Dirty:", "SwapPss:")):
                    total += int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return total


def estimated_worker_bytes(model_dir: str, serialized_file: str | None) -> int:
    """A worker's private memory before one has been measured."""
    weights = 0
    if serialized_file:
        try:
            weights = (Path(model_dir) / serialized_file).stat().st_size
        except OSError:
            weights = 0
    return BASE_WORKER_BYTES + 2 * weights


def check_memory(model: str, new_workers: int, per_worker: int, measured: bool) -> None:
    """Refuse ``new_workers`` more workers that would not fit in the memory available now."""
    if new_workers <= 0:
        return
    info = meminfo()
    if "MemAvailable" not in info:
        return
    reserve = int(info.get("MemTotal", 0) * MEMORY_RESERVE_FRACTION)
    free = info["MemAvailable"] - reserve
    need = new_workers * per_worker
    if need > free:
        how = "measured from a running worker" if measured else "estimated from the model's weights"
        raise InsufficientMemory(
            f"{new_workers} more workers for model {model} need about {need // MIB} MiB "
            f"({per_worker // MIB} MiB each, {how}) but {max(free, 0) // MIB} MiB are available "
            f"(MemAvailable less a {MEMORY_RESERVE_FRACTION:.0%} reserve); ask for fewer workers or free memory",
        )


def strict_int(value: Any) -> int:
    """An integer given as one (``2``, ``2.0``, ``"2"``); ``ValueError`` for anything else
    (``1.5``, ``"1.5"``, ``true``, ``""``)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise ValueError(value)


# setting -> (smallest allowed value, what it means)
SETTING_MINIMUMS = {
    "min_worker": (0, "workers"),
    "max_worker": (0, "workers"),
    "batch_size": (1, "requests per batch"),
    "max_batch_delay": (0, "milliseconds"),
    "response_timeout": (1, "seconds"),
    "startup_timeout": (1, "seconds"),
}


# server setting -> (flag, smallest allowed value)
SERVER_MINIMUMS = {
    "default_workers_per_model": ("--workers", 0),
    "batch_size": ("--batch-size", 1),
    "max_batch_delay": ("--max-batch-delay", 0),
    "response_timeout": ("config.properties default_response_timeout", 1),
    "startup_timeout": ("config.properties default_startup_timeout", 1),
    "max_workers_per_model": ("--max-workers-per-model", 0),
    "max_workers": ("--max-workers", 0),
}


def check_server_settings(config: Any) -> None:
    """Refuse, at start, server defaults no model could run with (``ConfigError``)."""
    from hookserve.errors import ConfigError

    for name, (flag, minimum) in SERVER_MINIMUMS.items():
        value = getattr(config, name)
        if value < minimum:
            raise ConfigError(f"{name}={value} ({flag}) is invalid: it must be at least {minimum}")
    bounds = WorkerBounds.from_config(config)
    if config.default_workers_per_model > bounds.per_model:
        raise ConfigError(
            f"--workers {config.default_workers_per_model} exceeds the limit of {bounds.per_model} workers per model "
            "(raise it with --max-workers-per-model)"
        )
