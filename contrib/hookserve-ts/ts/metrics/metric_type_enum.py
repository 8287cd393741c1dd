"""``ts.metrics.metric_type_enum.MetricTypes``: the ``metric_type`` of a handler metric."""

from __future__ import annotations

import enum


class MetricTypes(enum.Enum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
