"""``ts.torch_handler.vision_handler.VisionHandler``: hookserve's VisionHandler."""

from hookserve.handlers.vision_handler import VisionHandler

__all__ = ["VisionHandler"]
