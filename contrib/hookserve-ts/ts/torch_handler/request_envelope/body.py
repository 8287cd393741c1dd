"""``ts.torch_handler.request_envelope.body.BodyEnvelope``: each request's body, unchanged."""

from __future__ import annotations

from typing import Any

from ts.torch_handler.request_envelope.base import BaseEnvelope


class BodyEnvelope(BaseEnvelope):
    """Hands ``handle_fn`` each request's ``data`` (or ``body``) and returns its results as they are."""

    def parse_input(self, data: list) -> list:
        return [row.get("data") or row.get("body") for row in data]

    def format_output(self, data: Any) -> Any:
        return data
