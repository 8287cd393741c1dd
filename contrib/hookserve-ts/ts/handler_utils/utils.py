"""``ts.handler_utils.utils``: ``import_class`` and ``send_intermediate_predict_response``.

``send_intermediate_predict_response`` streams as in TorchServe 0.12: each call sends every
request of ``req_id_map`` its item of ``ret`` at once, as the next chunk of a chunked HTTP
response, and what ``handle`` returns is the last chunk (``Context.send_intermediate_reply``).
"""

from __future__ import annotations

import importlib
import os
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
    """Send ``ret[idx]`` now to the client of each request ``idx`` of ``req_id_map``
    (``{batch index: request id}``, usually ``context.request_ids``).

    ``message`` and ``code`` are TorchServe's whole-batch status, which its frontend does not
    show a client either: each part carries the status, headers and content type the handler
    set for its request (``context.set_response_status``, default 200). Under torchrun only
    rank 0 replies, as in TorchServe.
    """
    if str(os.getenv("LOCAL_RANK", "0")) != "0":
        return
    for idx in req_id_map:
        context.send_intermediate_reply(idx, ret[idx])
