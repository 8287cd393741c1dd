"""``ts.torch_handler``: TorchServe's default handlers, as hookserve's classes."""
