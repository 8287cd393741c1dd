"""``context.metrics``: the metric calls TorchServe handlers make, ``add_time`` ... and the
custom metrics API (``add_metric_to_cache``, ``get_metric(...).add_or_update(...)``).

Values are kept per metric name and unit in the worker (the last value and a running
count and sum), so handlers written against TorchServe's metrics cache run unchanged.
When a plugin implements ``hookserve_record_metrics`` the worker also keeps each call as a
``MetricRecord`` and hands the batch's records to the plugins after the batch.

Metric types are TorchServe's ``MetricTypes`` members or their names (``"GAUGE"``); the
record carries the name. TorchServe pre-declares the metrics of its ``metrics.yaml``;
hookserve has none, so ``get_metric`` finds what ``add_metric_to_cache`` or an ``add_*``
call created in this worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hookserve.plugin_types import MetricRecord

log = logging.getLogger("hookserve.worker")


class UnknownMetric(KeyError):
    """``get_metric`` of a metric this worker has not created (TorchServe's
    ``MetricsCacheKeyError``, which the ``ts`` path names this class)."""


def metric_type_name(metric_type: Any) -> str:
    """``MetricTypes.GAUGE``, ``"gauge"`` and ``"GAUGE"`` all as ``"GAUGE"``."""
    return str(getattr(metric_type, "name", metric_type)).upper()


class CachedMetric:
    """A declared metric: name, unit, the names of its dimensions, type (TorchServe's
    ``CachingMetric``). Values that break its contract (wrong number of dimension values,
    a negative counter) are logged and dropped, as TorchServe does."""

    def __init__(self, owner: HandlerMetrics, metric_name: str, unit: str, dimension_names: list, metric_type: Any):
        self.owner = owner
        self.metric_name = metric_name
        self.unit = unit
        self.dimension_names = list(dimension_names or [])
        self.metric_type = metric_type

    def add_or_update(self, value: float, dimension_values: list | tuple = (), request_id: str = "") -> None:
        """Record ``value`` with one value per dimension name, in order."""
        values = list(dimension_values or [])
        if len(values) != len(self.dimension_names):
            log.error(
                "metric %s: dimension values %s do not match its dimension names %s; not recorded",
                self.metric_name,
                values,
                self.dimension_names,
            )
            return
        if metric_type_name(self.metric_type) == "COUNTER" and value < 0:
            log.error("metric %s: a counter cannot go down (%s); not recorded", self.metric_name, value)
            return
        labels = {str(name): str(v) for name, v in zip(self.dimension_names, values, strict=True)}
        self.owner.record(self.metric_name, value, self.unit, labels, self.metric_type)

    def update(self, value: float, request_id: str = "", dimensions: list | None = None) -> None:
        """TorchServe's older call: ``dimensions`` are ``Dimension`` objects, which replace the
        metric's dimension names."""
        dimensions = list(dimensions or [])
        self.dimension_names = [d.name for d in dimensions]
        self.add_or_update(value, [d.value for d in dimensions], request_id)


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
        self.cache: dict[tuple[str, str], CachedMetric] = {}  # (type name, metric name) -> metric

    def keep_records(self, model_version: str | None) -> None:
        """From now on keep every metric added as a record, until ``take_records``."""
        self.model_version = model_version
        self.records = []

    def take_records(self) -> list[MetricRecord]:
        records, self.records = self.records or [], []
        return records

    def add_metric_to_cache(
        self, metric_name: str, unit: str, dimension_names: list | None = None, metric_type: Any = "COUNTER"
    ) -> CachedMetric:
        """Declare a metric (replacing one of the same name and type) and return it."""
        metric = CachedMetric(self, metric_name, unit, dimension_names or [], metric_type)
        self.cache[metric_type_name(metric_type), metric_name] = metric
        return metric

    def get_metric(self, metric_name: str, metric_type: Any = "COUNTER") -> CachedMetric:
        """The metric ``add_metric_to_cache`` or an ``add_*`` call declared."""
        try:
            return self.cache[metric_type_name(metric_type), metric_name]
        except KeyError:
            raise UnknownMetric(f"Metric of type '{metric_type}' and name '{metric_name}' doesn't exist") from None

    def add_metric(
        self,
        name: str,
        value: float,
        unit: str = "count",
        idx: int | None = None,
        dimensions: list | None = None,
        metric_type: Any = "COUNTER",
    ) -> None:
        if (metric_type_name(metric_type), name) not in self.cache:
            self.add_metric_to_cache(name, unit, [getattr(d, "name", None) for d in dimensions or ()], metric_type)
        self.record(name, value, unit, _labels(dimensions), metric_type)

    def record(self, name: str, value: float, unit: str, labels: dict[str, str], metric_type: Any) -> None:
        """Keep one value of metric ``name`` (and its record, for a metrics sink)."""
        entry = self.values.get(name)
        if entry is None:
            entry = self.values[name] = MetricValue(unit=unit, metric_type=metric_type_name(metric_type))
        entry.last = float(value)
        entry.count += 1
        entry.total += float(value)
        if self.records is not None:
            self.records.append(
                MetricRecord(
                    name, float(value), unit, self.model_name, self.model_version, labels, metric_type_name(metric_type)
                )
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
