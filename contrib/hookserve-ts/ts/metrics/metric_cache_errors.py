"""``ts.metrics.metric_cache_errors``: TorchServe's metric errors. ``MetricsCacheKeyError`` is
what ``context.metrics.get_metric`` raises for an unknown metric (hookserve's ``UnknownMetric``)."""

from __future__ import annotations

import yaml

from hookserve.handler_metrics import UnknownMetric as MetricsCacheKeyError

__all__ = [
    "GeneralMetricsCacheError",
    "MetricsCacheIOError",
    "MetricsCacheKeyError",
    "MetricsCachePyYamlError",
    "MetricsCacheTypeError",
    "MetricsCacheValueError",
]


class GeneralMetricsCacheError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class MetricsCacheIOError(IOError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class MetricsCachePyYamlError(yaml.YAMLError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class MetricsCacheTypeError(TypeError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class MetricsCacheValueError(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
