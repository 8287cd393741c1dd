"""Builtin default stages: ``BaseHandler``'s own preprocess / inference / postprocess /
explain_handle, as ``trylast`` hook implementations.

A handler's overrides (adapted by ``hookserve_handler_plugin`` below, with
``hookserve.plugins.handler_plugin``; ``tryfirst``) and installed plugins are
asked first; these answer only for ``BaseHandler`` instances and return ``None`` for anything
else. Essential: without it a ``BaseHandler`` could not run a batch.

``BaseHandler`` is imported inside each hook because frontends import every builtin plugin
and must not import torch; after the first call the import is a ``sys.modules`` lookup.
"""

from __future__ import annotations

from typing import Any

from hookserve.hookspecs import hookimpl


@hookimpl(trylast=True)
def hookserve_preprocess(handler: Any, data: list) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    return BaseHandler.preprocess(handler, data) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_infer(handler: Any, data: Any) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    return BaseHandler.inference(handler, data) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_postprocess(handler: Any, data: Any) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    return BaseHandler.postprocess(handler, data) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_explain(handler: Any, data: Any, raw: list) -> Any:
    from hookserve.handlers.base_handler import BaseHandler

    return BaseHandler.explain_handle(handler, data, raw) if isinstance(handler, BaseHandler) else None


@hookimpl(trylast=True)
def hookserve_handler_plugin(handler: Any) -> object | None:
    from hookserve.plugins.handler_plugin import handler_plugin

    return handler_plugin(handler)
