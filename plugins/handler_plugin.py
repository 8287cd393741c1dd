"""A model's handler adapted into a pluggy plugin, so what the handler defines wins.

* A ``BaseHandler`` subclass that keeps ``BaseHandler.handle``: the stages its class
  overrides (``preprocess``, ``inference``, ``postprocess``, ``explain_handle``,
  ``describe_handle``) become ``tryfirst`` stage hook implementations; the stages it inherits
  are left to installed plugins and then to ``BaseHandler``'s own methods (the builtin
  ``stages`` plugin, ``trylast``). No plugin when it overrides none.
* Anything else (a function handler, a plain class with ``initialize`` / ``handle``, a
  ``BaseHandler`` subclass that overrides ``handle``, in its class or on the instance): a ``tryfirst``
  ``hookserve_handle_batch`` that calls its ``handle(data, context)`` exactly as TorchServe
  would, so wrappers of the whole-batch hook see its batches too.

Each implementation answers only for its own handler, so the plugins of several models can
share one plugin manager.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hookserve.handlers.base_handler import BaseHandler
from hookserve.hookspecs import hookimpl
from hookserve.pipeline_types import Batch, Model

if TYPE_CHECKING:
    from hookserve.context import Context

# BaseHandler method -> the hook it implements
STAGE_HOOKS = {
    "preprocess": "hookserve_preprocess",
    "inference": "hookserve_infer",
    "postprocess": "hookserve_postprocess",
    "explain_handle": "hookserve_explain",
    "describe_handle": "hookserve_describe",
}


class HandlerPlugin:
    """The hook implementations of one handler; attributes are set by :func:`handler_plugin`."""

    def __init__(self, handler: Any):
        self.handler = handler

    def __repr__(self) -> str:
        return f"<HandlerPlugin of {getattr(self.handler, '__qualname__', type(self.handler).__qualname__)}>"


def handler_plugin(model: Model) -> HandlerPlugin | None:
    """The plugin of ``model.handler`` (see the module docstring), or ``None`` when it has
    neither stages to override nor a ``handle``."""
    handler = model.handler
    # an instance's own ``handle`` (TorchServe's ``self.handle = MicroBatching(self)``) counts too
    if (
        isinstance(handler, BaseHandler)
        and type(handler).handle is BaseHandler.handle
        and "handle" not in vars(handler)
    ):
        return _stages_plugin(handler)
    handle = handler if inspect.isroutine(handler) else getattr(handler, "handle", None)
    return _whole_batch_plugin(handler, handle) if callable(handle) else None


def _whole_batch_plugin(handler: Any, handle: Callable[[list, Context], Any]) -> HandlerPlugin:
    def hookserve_handle_batch(model: Model, batch: Batch, context: Context) -> list | None:
        if model.handler is not handler:
            return None
        # checked here: a None must fail as the handler's own answer, not fall through to the stages
        return batch.check_replies(handle(batch.data, context))

    plugin = HandlerPlugin(handler)
    plugin.hookserve_handle_batch = hookimpl(tryfirst=True)(hookserve_handle_batch)
    return plugin


def _stages_plugin(handler: BaseHandler) -> HandlerPlugin | None:
    overridden = [
        method for method in STAGE_HOOKS if getattr(type(handler), method) is not getattr(BaseHandler, method)
    ]
    if not overridden:
        return None
    own = handler
    # pluggy passes hook arguments by parameter name, so each stage needs its own signature.
    impls = {
        "preprocess": lambda model, batch: own.preprocess(batch.data) if model.handler is own else None,
        "inference": lambda model, data: own.inference(data) if model.handler is own else None,
        "postprocess": lambda model, data: own.postprocess(data) if model.handler is own else None,
        "explain_handle": lambda model, data, batch: (
            own.explain_handle(data, batch.data) if model.handler is own else None
        ),
        "describe_handle": lambda model, batch: (
            [own.describe_handle() for _ in batch.requests] if model.handler is own else None
        ),
    }
    plugin = HandlerPlugin(handler)
    for method in overridden:
        setattr(plugin, STAGE_HOOKS[method], hookimpl(tryfirst=True)(impls[method]))
    return plugin
