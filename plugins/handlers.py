"""Builtin handler names: ``base_handler``, ``image_classifier``, ``image_segmenter``,
``object_detector``, ``text_classifier``.

The handler classes are imported inside the hook: frontends import every builtin plugin
and must not import torch.
"""

from __future__ import annotations

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import HandlerClass


@hookimpl
def hookserve_handler_classes() -> list[HandlerClass]:
    from hookserve.handlers.base_handler import BaseHandler
    from hookserve.handlers.image_classifier import ImageClassifier
    from hookserve.handlers.image_segmenter import ImageSegmenter
    from hookserve.handlers.object_detector import ObjectDetector
    from hookserve.handlers.text_classifier import TextClassifier

    return [
        HandlerClass(name="base_handler", cls=BaseHandler),
        HandlerClass(name="image_classifier", cls=ImageClassifier),
        HandlerClass(name="image_segmenter", cls=ImageSegmenter),
        HandlerClass(name="object_detector", cls=ObjectDetector),
        HandlerClass(name="text_classifier", cls=TextClassifier),
    ]
