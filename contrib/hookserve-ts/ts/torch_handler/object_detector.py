"""``ts.torch_handler.object_detector.ObjectDetector``: hookserve's ObjectDetector."""

from hookserve.handlers.object_detector import ObjectDetector

__all__ = ["ObjectDetector"]
