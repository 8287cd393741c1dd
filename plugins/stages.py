"""Builtin pipeline defaults (``trylast``): the whole-batch hook runs the stage hooks, and
the stages are ``BaseHandler``'s own preprocess / inference / postprocess /
explain_handle / describe_handle.

A model's handler is adapted by ``hookserve_handler_plugin`` below
(``hookserve.plugins.handler_plugin``; ``tryfirst``), and installed plugins are asked before
these. The stage defaults answer only for ``BaseHandler`` instances and return ``None`` for
anything else. Essential: without it no batch would run.

``BaseHandler`` is imported inside each hook because frontends import every builtin plugin
and must not import torch; after the first call the import is a ``sys.modules`` lookup.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hookserve.hookspecs import hookimpl
from hookserve.pipeline_types import DESCRIBE, EXPLAIN, Batch, Model

if TYPE_CHECKING:
    from hookserve.context import Context


@hookimpl(trylast=True)
def hookserve_handle_batch(model: Model, batch: Batch, context: Context) -> list:
    """Describe, explain, or preprocess -> infer -> postprocess, each stage a hook; timed as
    TorchServe's ``BaseHandler.handle`` times itself (the handler's ``HandlerTime`` metric)."""
    from hookserve.handlers.base_handler import BaseHandler

    started = time.time()
    hooks = model.hooks
    handler = model.handler
    if isinstance(handler, BaseHandler):
        # what TorchServe's handle sets before the stages, which may read them
        handler.context = context
        if batch.kind == EXPLAIN:
            handler.explain = True
    if batch.kind == DESCRIBE:
        replies = hooks.describe(model=model, batch=batch, context=context)
    else:
        data = hooks.preprocess(model=model, batch=batch, context=context)
        if batch.kind == EXPLAIN:
            replies = hooks.explain(model=model, data=data, batch=batch, context=context)
        else:
            replies = hooks.postprocess(
                model=model, data=hooks.infer(model=model, data=data, context=context), context=context
            )
    context.metrics.add_time("HandlerTime", round((time.time() - started) * 1000, 2), None, "ms")
    return replies


@hookimpl(trylast=True)
def hookserve_preprocess(model: Model, batch: Batch) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    handler = model.handler
    return BaseHandler.preprocess(handler, batch.data) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_infer(model: Model, data: Any) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    handler = model.handler
    return BaseHandler.inference(handler, data) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_postprocess(model: Model, data: Any) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    handler = model.handler
    return BaseHandler.postprocess(handler, data) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_explain(model: Model, data: Any, batch: Batch) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    handler = model.handler
    return BaseHandler.explain_handle(handler, data, batch.data) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_describe(model: Model, batch: Batch) -> list | None:
    from hookserve.handlers.base_handler import BaseHandler

    handler = model.handler
    if not isinstance(handler, BaseHandler):
        return None
    return [BaseHandler.describe_handle(handler) for _ in batch.requests]


@hookimpl(trylast=True)
def hookserve_handler_plugin(model: Model) -> object | None:
    from hookserve.plugins.handler_plugin import handler_plugin

    return handler_plugin(model)
