"""A model worker's measurements for ``hookserve_record_metrics``: per batch, not per request.

Only used when a plugin implements the hook, so a server without a metrics sink neither
times batches nor keeps the handler's metric calls as records.
"""

from __future__ import annotations

import time

from hookserve.context import Context
from hookserve.plugin_types import MetricRecord
from hookserve.pluginmanager import Hooks
from hookserve.wire.framing import Reply, WorkRequest
from hookserve.worker.batch import BatchRunner, PartSender


class MeteredBatchRunner:
    """Runs batches like the ``BatchRunner`` it wraps, then hands the plugins the batch's
    ``PredictionTime`` (ms, as TorchServe's worker reports it) and the handler's metrics."""

    def __init__(self, runner: BatchRunner, hooks: Hooks, context: Context, model_version: str):
        self.runner = runner
        self.hooks = hooks
        self.metrics = context.metrics
        self.version = model_version
        self.metrics.keep_records(model_version)

    def run(self, batch: list[WorkRequest], send_part: PartSender | None = None) -> list[Reply]:
        started = time.perf_counter()
        replies = self.runner.run(batch, send_part)
        elapsed_ms = (time.perf_counter() - started) * 1000
        prediction = MetricRecord(
            "PredictionTime",
            round(elapsed_ms, 3),
            "ms",
            self.metrics.model_name,
            self.version,
            {"batch_size": str(len(batch))},
        )
        self.hooks.record_metrics(metrics=[prediction, *self.metrics.take_records()])
        return replies


def metered(
    runner: BatchRunner, hooks: Hooks, context: Context, model_version: str
) -> BatchRunner | MeteredBatchRunner:
    """``runner`` measured for the metrics sinks, or as it is when there is none."""
    return MeteredBatchRunner(runner, hooks, context, model_version) if hooks.records_metrics() else runner
