"""hookserve: serve PyTorch models and TorchServe archives over HTTP, built on pluggy."""

__version__ = "0.1.0"
