"""``ts.torch_handler.base_handler.BaseHandler``: hookserve's ``BaseHandler`` (same API)."""

from hookserve.handlers.base_handler import BaseHandler

__all__ = ["BaseHandler"]
