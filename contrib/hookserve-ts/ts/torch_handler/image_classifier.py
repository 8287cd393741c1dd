"""``ts.torch_handler.image_classifier.ImageClassifier``: hookserve's image classifier."""

from hookserve.handlers.image_classifier import ImageClassifier

__all__ = ["ImageClassifier"]
