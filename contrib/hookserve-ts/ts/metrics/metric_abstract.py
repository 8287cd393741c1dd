"""``ts.metrics.metric_abstract.MetricAbstract``: the class of the metrics ``context.metrics``
hands out (hookserve's ``CachedMetric``), for ``isinstance`` checks and annotations."""

from hookserve.handler_metrics import CachedMetric as MetricAbstract

__all__ = ["MetricAbstract"]
