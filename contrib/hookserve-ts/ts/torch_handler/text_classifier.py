"""``ts.torch_handler.text_classifier.TextClassifier``: hookserve's, which replies as
TorchServe 0.12's does on its archives (``source_vocab.pt``, an ``EmbeddingBag`` model) and
answers every text of a batch."""

from hookserve.handlers.text_classifier import TextClassifier

__all__ = ["TextClassifier"]
