"""``ts.handler_utils.utils``: ``import_class`` and ``send_intermediate_predict_response``.

hookserve replies once per request when the batch is done, so a handler cannot stream
partial replies yet: ``send_intermediate_predict_response`` raises ``NotImplementedError``
saying so rather than dropping the partial reply silently.
"""

from __future__ import annotations

import importlib
from typing import Any


def import_class(class_name: str, module_prefix: str | None = None) -> type:
    """The class named by ``"module.Class"``, the module optionally under ``module_prefix``."""
    module_name, _, name = class_name.rpartition(".")
    module = importlib.import_module(f"{module_prefix}.{module_name}" if module_prefix is not None else module_name)
    found = getattr(module, name, None)
    if found is None:
        raise ImportError(f"class:{name} not found in module:{module_name}.")
    return found


def send_intermediate_predict_response(ret: list, req_id_map: dict, message: str, code: int, context: Any) -> None:
    """Would send a partial reply before the batch ends: hookserve has no streamed replies."""
    raise NotImplementedError(
        "send_intermediate_predict_response: hookserve does not stream replies yet (streamed "
        "responses are a separate hookserve issue); return the whole reply from handle() instead"
    )
