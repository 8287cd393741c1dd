"""``ts.torch_handler.distributed``: TorchServe's multi-process handlers (none supported)."""
