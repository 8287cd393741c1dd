"""Benchmark only: one line per batch a model worker ran, ``<pid> <batch size>``, appended to
the file named by ``HOOKSERVE_BENCH_BATCH_LOG`` (nothing without it).

The batch size is what the handler received: ``PredictionTime``'s ``batch_size`` dimension,
which the worker records once per batch. The TorchServe side of the benchmark reads the
same figure from its ``model_metrics.log`` (the request ids of each ``HandlerTime`` line).
"""

from __future__ import annotations

import os

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import MetricRecord


@hookimpl
def hookserve_record_metrics(metrics: list[MetricRecord]) -> None:
    path = os.environ.get("HOOKSERVE_BENCH_BATCH_LOG")
    if not path:
        return
    sizes = [m.dimensions["batch_size"] for m in metrics if m.name == "PredictionTime"]
    if sizes:
        with open(path, "a") as f:  # one short append per batch: atomic between workers
            f.write("".join(f"{os.getpid()} {s}\n" for s in sizes))
