"""``ts.handler_utils.preprocess``: TorchServe's preprocessing pipelines (only DALI, unsupported)."""
