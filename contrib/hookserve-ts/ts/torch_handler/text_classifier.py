"""``ts.torch_handler.text_classifier.TextClassifier``: hookserve's text classifier.

Its tokenization is hookserve's (whitespace, ``vocab.json``), not TorchServe's torchtext one.
"""

from hookserve.handlers.text_classifier import TextClassifier

__all__ = ["TextClassifier"]
