"""``ts.torch_handler.request_envelope.base.BaseEnvelope``: TorchServe's envelope contract.

An envelope turns the batch's request bodies of one wire format into the flat items a
handler's ``handle`` expects, and that ``handle``'s results back into replies of the format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class BaseEnvelope(ABC):
    """Wraps ``handle_fn(data, context)``: ``parse_input`` before it, ``format_output`` after it."""

    def __init__(self, handle_fn: Callable[[Any, Any], Any]):
        self._handle_fn = handle_fn

    def handle(self, data: list, context: Any) -> Any:
        # Empty batches and empty results pass through untouched, as in TorchServe.
        if data:
            data = self.parse_input(data)
        results = self._handle_fn(data, context)
        if results:
            results = self.format_output(results)
        return results

    @abstractmethod
    def parse_input(self, data: list) -> Any:
        """The batch's request rows as the items ``handle_fn`` takes."""

    @abstractmethod
    def format_output(self, data: Any) -> Any:
        """``handle_fn``'s results as one reply per request row."""
