"""A model's handler instance adapted into a pluggy plugin, so its overrides win.

Only the stages the handler's class overrides relative to ``BaseHandler`` become ``tryfirst``
hook implementations; the stages it inherits are left to installed plugins and then to
``BaseHandler``'s own methods (the builtin ``stages`` plugin, ``trylast``). Each
implementation answers only for its own handler instance, so plugins of several models can
share one plugin manager.
"""

from __future__ import annotations

from typing import Any

from hookserve.handlers.base_handler import BaseHandler
from hookserve.hookspecs import hookimpl

# BaseHandler method -> the hook it implements
STAGE_HOOKS = {
    "preprocess": "hookserve_preprocess",
    "inference": "hookserve_infer",
    "postprocess": "hookserve_postprocess",
    "explain_handle": "hookserve_explain",
}


class HandlerPlugin:
    """The hook implementations of one handler; attributes are set by :func:`handler_plugin`."""

    def __init__(self, handler: BaseHandler):
        self.handler = handler

    def __repr__(self) -> str:
        return f"<HandlerPlugin of {type(self.handler).__qualname__}>"


def handler_plugin(handler: Any) -> HandlerPlugin | None:
    """A plugin with the stages ``handler`` overrides, or ``None`` (not a BaseHandler, or none)."""
    if not isinstance(handler, BaseHandler):
        return None
    overridden = [
        method for method in STAGE_HOOKS if getattr(type(handler), method) is not getattr(BaseHandler, method)
    ]
    if not overridden:
        return None
    own = handler
    # pluggy passes hook arguments by parameter name, so each stage needs its own signature.
    impls = {
        "preprocess": lambda handler, data: own.preprocess(data) if handler is own else None,
        "inference": lambda handler, data: own.inference(data) if handler is own else None,
        "postprocess": lambda handler, data: own.postprocess(data) if handler is own else None,
        "explain_handle": lambda handler, data, raw: own.explain_handle(data, raw) if handler is own else None,
    }
    plugin = HandlerPlugin(handler)
    for method in overridden:
        setattr(plugin, STAGE_HOOKS[method], hookimpl(tryfirst=True)(impls[method]))
    return plugin
