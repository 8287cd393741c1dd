"""``ts.model_service``: TorchServe's legacy model service API (unsupported)."""
