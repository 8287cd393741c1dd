"""``ts.metrics.metric_cache_abstract.MetricCacheAbstract``: the class of ``context.metrics``
(hookserve's ``HandlerMetrics``), for ``isinstance`` checks and annotations."""

from hookserve.handler_metrics import HandlerMetrics as MetricCacheAbstract

__all__ = ["MetricCacheAbstract"]
