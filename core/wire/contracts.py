"""Decoding JSON into the dataclasses that are hookserve's wire contracts, checked once.

The routes table and the control messages cross process boundaries as JSON. Each side
works with typed dataclasses; :func:`decode` turns parsed JSON into one, checking every
field against its annotation, so a malformed file or message fails at the edge with an
error naming the field (``models.mlp.versions.1.0.workers[0].pid must be an integer, got
'x'``) instead of a ``KeyError`` deep inside a handler. Unknown keys are ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


class WireError(ValueError):
    """JSON that does not have the shape of its contract; the message names the field."""


def decode(cls: type[T], data: object, where: str) -> T:
    """``data`` (parsed JSON) as an instance of the dataclass ``cls``; ``where`` names it in
    errors (an empty ``where`` names the fields alone)."""
    if not isinstance(data, dict):
        raise WireError(f"{where} must be an object, got {_shown(data)}")
    hints, fields = _shape(cls)
    values = {}
    for field in fields:
        if field.name in data:
            values[field.name] = _value(hints[field.name], data[field.name], _join(where, field.name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise WireError(f"{_join(where, field.name)} is missing")
    return cls(**values)


@functools.cache
def _shape(cls: type) -> tuple[dict[str, Any], tuple[dataclasses.Field, ...]]:
    """A contract's annotations and fields, worked out once per class (frontends decode the
    routes table every time it changes)."""
    return typing.get_type_hints(cls), tuple(f for f in dataclasses.fields(cls) if f.init)


def _value(hint: Any, value: object, where: str) -> Any:
    if hint in _KINDS:  # most fields: checked before anything slower
        return _scalar(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _value(option, value, where)
            except WireError as exc:
                errors.append(exc)
        raise errors[0]
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, where)  # type: ignore[arg-type]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise WireError(f"{where} must be an object, got {_shown(value)}")
        return {str(k): _value(item, v, _join(where, str(k))) for k, v in value.items()}
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, list):
            raise WireError(f"{where} must be a list, got {_shown(value)}")
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is Any:
        return value
    return _scalar(hint, value, where)


def _scalar(hint: type, value: object, where: str) -> Any:
    # bool is an int in Python, never in these contracts; an integer is a fine float
    wanted = (int, float) if hint is float else hint
    if isinstance(value, bool) != (hint is bool) or not isinstance(value, wanted):
        raise WireError(f"{where} must be {_KINDS[hint]}, got {_shown(value)}")
    return float(value) if hint is float else value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
