"""What the default handlers' ``/explanations`` share: which input and ``target`` a request
names, the target's range check, and Captum's import.

A request names its target as a ``target`` field (a query parameter ``?target=3`` or a form
field, which arrive as text) or inside a JSON body ``{"data": ..., "target": 3}``, whose
``data`` is then the input. Captum is the optional extra ``hookserve[explain]``: it is
imported when a request asks for an explanation, so a server without it serves predictions
as before and answers explanations with :class:`~hookserve.errors.ExplanationsUnavailable` (501).
"""

from __future__ import annotations

import types
from typing import Any

from hookserve.errors import BadRequest, ExplanationsUnavailable


def request_input(row: dict) -> Any:
    """The request's ``data`` or ``body``; of a JSON body ``{"data": ...}``, its ``data``."""
    value = row.get("data") or row.get("body")
    if isinstance(value, dict) and "data" in value:
        return value["data"]
    return value


def request_target(row: dict, index: int) -> int:
    """The class request ``index`` wants explained, 0 when it names none."""
    value = row.get("target")
    body = row.get("body")
    if value is None and isinstance(body, dict):
        value = body.get("target")
    if value is None or value == "" or value == b"":
        return 0
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, bool):  # JSON true is no class index, though int(True) is 1
        value = str(value).lower()
    try:
        return int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"request {index}: target must be a class index (an integer), got {value!r}") from None


def check_target(target: int, classes: int) -> None:
    """A target the model has no class for is the client's 400, naming the classes, rather
    than an indexing error deep inside Captum."""
    if not 0 <= target < classes:
        raise BadRequest(f"target {target} is out of range: the model has {classes} classes (0 to {classes - 1})")


def captum_attr() -> types.ModuleType:
    """``captum.attr``, or the 501 that says to install the extra."""
    try:
        import captum.attr
    except ImportError as exc:
        raise ExplanationsUnavailable(
            f"explanations need Captum, which this server cannot import ({exc}); "
            "install it with: pip install hookserve[explain]"
        ) from None
    return captum.attr
