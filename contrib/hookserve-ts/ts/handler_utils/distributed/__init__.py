"""``ts.handler_utils.distributed``: TorchServe's multi-process helpers (none supported)."""
