"""``ts.torch_handler.contractions.CONTRACTION_MAP``: TorchServe's table (hookserve's copy)."""

from hookserve.handlers.contractions import CONTRACTION_MAP

__all__ = ["CONTRACTION_MAP"]
