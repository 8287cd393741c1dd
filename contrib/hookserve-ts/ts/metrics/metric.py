"""``ts.metrics.metric``: not supported, see the ImportError."""

from ts._unsupported import refuse

raise refuse(
    __name__,
    "TorchServe's pre-0.8 metrics objects; record metrics through context.metrics "
    "(add_metric, add_counter, add_time, add_metric_to_cache / get_metric), which hookserve hands to its metrics plugins",
)
