"""``ts.handler_utils.micro_batching.MicroBatching``: hookserve's, TorchServe 0.12's pipeline of
micro-batches on stage threads (``hookserve.handlers.micro_batching``)."""

from hookserve.handlers.micro_batching import HANDLER_METHODS, MicroBatching

__all__ = ["HANDLER_METHODS", "MicroBatching"]
