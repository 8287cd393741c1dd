"""``ts.metrics.caching_metric.CachingMetric``: what ``context.metrics.get_metric`` returns
(hookserve's ``CachedMetric``: ``add_or_update(value, dimension_values)``, ``update``)."""

from hookserve.handler_metrics import CachedMetric as CachingMetric

__all__ = ["CachingMetric"]
