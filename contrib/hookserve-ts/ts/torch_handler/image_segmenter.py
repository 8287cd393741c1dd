"""``ts.torch_handler.image_segmenter.ImageSegmenter``: hookserve's ImageSegmenter."""

from hookserve.handlers.image_segmenter import ImageSegmenter

__all__ = ["ImageSegmenter"]
