"""``ts.metrics.metric_cache_yaml_impl``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "part of TorchServe's server (its metrics.yaml cache, system and worker metrics), not of the handler API; "
    "hookserve measures the server itself and gives handlers context.metrics",
)
