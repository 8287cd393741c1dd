"""``context.metrics``: the metric calls TorchServe handlers make (``add_time`` ...).

Values are kept per metric name and unit in the worker (the last value and a running
count and sum), so handlers written against TorchServe's metrics cache run unchanged.
When a plugin implements ``hookserve_record_metrics`` the worker also keeps each call as a
``MetricRecord`` and hands the batch's records to the plugins after the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from hookserve.plugin_types import MetricRecord


@dataclass
class MetricValue:
    unit: str
    metric_type: str
    last: float = 0.0
    count: int = 0
    total: float = 0.0


class HandlerMetrics:
    def __init__(self, model_name: str):
        self.model_name = model_name
        self.values: dict[str, MetricValue] = {}
        self.model_version: str | None = None
        self.records: list[MetricRecord] | None = None  # kept only for a metrics sink

    def keep_records(self, model_version: str | None) -> None:
        """From now on keep every metric added as a record, until ``take_records``."""
        self.model_version = model_version
        self.records = []

    def take_records(self) -> list[MetricRecord]:
        records, self.records = self.records or [], []
        return records

    def add_metric(
        self,
        name: str,
        value: float,
        unit: str = "count",
        idx: int | None = None,
        dimensions: list | None = None,
        metric_type: str = "COUNTER",
    ) -> None:
        entry = self.values.get(name)
        if entry is None:
            entry = self.values[name] = MetricValue(unit=unit, metric_type=str(metric_type))
        entry.last = float(value)
        entry.count += 1
        entry.total += float(value)
        if self.records is not None:
            self.records.append(
                MetricRecord(name, float(value), unit, self.model_name, self.model_version, _labels(dimensions))
            )

    def add_counter(self, name, value, idx=None, dimensions=None, metric_type="COUNTER"):
        self.add_metric(name, value, "count", idx, dimensions, metric_type)

    def add_time(self, name, value, idx=None, unit="ms", dimensions=None, metric_type="GAUGE"):
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_size(self, name, value, idx=None, unit="MB", dimensions=None, metric_type="GAUGE"):
        self.add_metric(name, value, unit, idx, dimensions, metric_type)

    def add_percent(self, name, value, idx=None, dimensions=None, metric_type="GAUGE"):
        self.add_metric(name, value, "percent", idx, dimensions, metric_type)

    def add_error(self, name, value, dimensions=None):
        self.add_metric(name, value, "count", None, dimensions, "COUNTER")


def _labels(dimensions: list | None) -> dict[str, str]:
    """TorchServe's ``Dimension(name, value)`` objects as labels."""
    return {str(d.name): str(d.value) for d in dimensions or () if hasattr(d, "name") and hasattr(d, "value")}
