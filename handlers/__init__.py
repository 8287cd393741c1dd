"""Handlers: ``BaseHandler`` and the default handlers (the names ``--handler`` takes).

``from hookserve.handlers import BaseHandler, ImageClassifier, TextClassifier`` works; the
classes (and torch, which they import) are loaded on first use (PEP 562), so importing
this package, as the builtin plugins do in torch-free frontends, imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hookserve.lazy_exports import lazy_exports

# public name -> the module that defines it
_PUBLIC = {
    "BaseHandler": "hookserve.handlers.base_handler",
    "ImageClassifier": "hookserve.handlers.image_classifier",
    "ImageSegmenter": "hookserve.handlers.image_segmenter",
    "ObjectDetector": "hookserve.handlers.object_detector",
    "TextClassifier": "hookserve.handlers.text_classifier",
}

# a literal list, so linters and IDEs see the names
__all__ = [
    "BaseHandler",
    "ImageClassifier",
    "ImageSegmenter",
    "ObjectDetector",
    "TextClassifier",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads them
    from hookserve.handlers.base_handler import BaseHandler
    from hookserve.handlers.image_classifier import ImageClassifier
    from hookserve.handlers.image_segmenter import ImageSegmenter
    from hookserve.handlers.object_detector import ObjectDetector
    from hookserve.handlers.text_classifier import TextClassifier

__getattr__, __dir__ = lazy_exports(globals(), _PUBLIC)
