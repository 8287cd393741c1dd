"""``ts.metrics``: the metric names TorchServe handlers import (``Dimension``, ``MetricTypes``).

The metrics themselves are hookserve's: ``context.metrics`` is a
:class:`hookserve.handler_metrics.HandlerMetrics`, which takes these as arguments.
"""
