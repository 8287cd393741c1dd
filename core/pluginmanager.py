"""The plugin manager factory and the typed wrapper through which the rest of hookserve
calls hooks (nothing else touches ``pm.hook``).

Order of registration: builtin plugins by module path, then the block list is applied and
entry points of the ``hookserve`` group are loaded (a blocked plugin is never imported),
then ``check_pending()``. A third-party plugin that fails to import, register or declares
a hook that does not exist is logged with its distribution name and version and skipped,
unless ``strict`` is set.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from hookserve import hookspecs
from hookserve.errors import PluginError
from hookserve.plugin_types import Batcher, BatchSettings, DeviceRequest, HandlerClass, Routes

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hookserve"
DISABLE_ENV = "HOOKSERVE_DISABLE_PLUGINS"  # comma-separated names, like --disable-plugin
STRICT_ENV = "HOOKSERVE_STRICT_PLUGINS"  # "1": a broken third-party plugin is fatal
TRACE_ENV = "HOOKSERVE_TRACE_HOOKS"  # "1": log every hook call (pluggy's tracing)

BUILTIN_PLUGINS = (
    "hookserve.plugins.loader",
    "hookserve.plugins.stages",
    "hookserve.plugins.gpu",
    "hookserve.plugins.batching",
    "hookserve.plugins.handlers",
    "hookserve.plugins.http",
)
# Without these a worker cannot run a BaseHandler at all; they cannot be blocked.
ESSENTIAL_PLUGINS = frozenset({"stages"})


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from, for ``hookserve plugins`` and error messages."""

    name: str
    source: str  # "builtin" or "<distribution> <version>"
    module: str
    hooks: tuple[str, ...]


def builtin_name(module_path: str) -> str:
    return module_path.rsplit(".", 1)[-1]


def disabled_from_env(environ: os._Environ | dict = os.environ) -> set[str]:
    return {n.strip() for n in environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def create_plugin_manager(
    *, disabled: Iterable[str] = (), strict: bool | None = None, entry_points: bool = True
) -> pluggy.PluginManager:
    """Build a plugin manager with builtins and installed plugins registered.

    ``disabled`` adds to the names in ``$HOOKSERVE_DISABLE_PLUGINS``; a name is a builtin's
    short name (``gpu``), an entry-point name or a distribution name.
    """
    blocked = set(disabled) | disabled_from_env()
    unblockable = blocked & ESSENTIAL_PLUGINS
    if unblockable:
        raise PluginError(f"plugin(s) {sorted(unblockable)} are essential and cannot be disabled")
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0")

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.sources = {}  # plugin name -> source, read by plugin_infos()
    for module_path in BUILTIN_PLUGINS:
        name = builtin_name(module_path)
        if name in blocked:
            continue
        pm.register(importlib.import_module(module_path), name=name)
        pm.sources[name] = "builtin"
    if entry_points:
        _load_entry_points(pm, blocked, strict)
    pm.check_pending()
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        pm.trace.root.setwriter(lambda msg: log.info("hook trace: %s", msg.rstrip()))
        pm.enable_tracing()
    return pm


def _load_entry_points(pm: pluggy.PluginManager, blocked: set[str], strict: bool) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist else "?"
        source = f"{dist_name} {dist.version if dist else '?'}"
        if ep.name in blocked or dist_name in blocked or pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            try:
                pm.check_pending()
            except pluggy.PluginValidationError:
                pm.unregister(name=ep.name)
                raise
        except Exception as exc:
            message = (
                f"plugin {ep.name!r} ({ep.value}) from distribution {source} is broken: {type(exc).__name__}: {exc}"
            )
            if strict:
                raise PluginError(message) from exc
            log.error("%s; skipped", message)
            continue
        pm.sources[ep.name] = source


def plugin_infos(pm: pluggy.PluginManager) -> list[PluginInfo]:
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", type(plugin).__module__)
        infos.append(PluginInfo(name, pm.sources.get(name, "registered at run time"), module, hooks))
    return infos


class Hooks:
    """Typed calls of every hook; the only place that reaches into ``pm.hook``."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self._hook = pm.hook

    def load(self, *, archive: Any, context: Any) -> Any:
        return self._hook.hookserve_load(archive=archive, context=context)

    def preprocess(self, *, handler: Any, data: list, context: Any) -> Any:
        return self._hook.hookserve_preprocess(handler=handler, data=data, context=context)

    def infer(self, *, handler: Any, data: Any, context: Any) -> Any:
        return self._hook.hookserve_infer(handler=handler, data=data, context=context)

    def postprocess(self, *, handler: Any, data: Any, context: Any) -> Any:
        return self._hook.hookserve_postprocess(handler=handler, data=data, context=context)

    def explain(self, *, handler: Any, data: Any, raw: list, context: Any) -> Any:
        return self._hook.hookserve_explain(handler=handler, data=data, raw=raw, context=context)

    def batcher(self, *, settings: BatchSettings) -> Batcher:
        batcher = self._hook.hookserve_batcher(settings=settings)
        if batcher is None:
            raise PluginError("no plugin supplies a batcher (is the builtin 'batching' plugin disabled?)")
        return batcher

    def select_device(self, *, request: DeviceRequest) -> str:
        return self._hook.hookserve_select_device(request=request) or "cpu"

    def http_routes(self, *, routes: Routes, config: Any) -> None:
        self._hook.hookserve_http_routes(routes=routes, config=config)

    def http_app(self, *, routes: Routes, config: Any) -> Any:
        app = self._hook.hookserve_http_app(routes=routes, config=config)
        if app is None:
            raise PluginError("no plugin builds the HTTP app (is the builtin 'http' plugin disabled?)")
        return app

    def handler_classes(self) -> dict[str, HandlerClass]:
        """All named handler classes; a name claimed by two plugins is an error naming both."""
        found: dict[str, tuple[HandlerClass, str]] = {}
        for impl in self._hook.hookserve_handler_classes.get_hookimpls():
            for item in impl.function() or ():
                if item.name in found:
                    other = found[item.name][1]
                    raise PluginError(
                        f"handler name {item.name!r} is registered by plugin {other!r} "
                        f"({self.pm.sources.get(other, '?')}) and by plugin {impl.plugin_name!r} "
                        f"({self.pm.sources.get(impl.plugin_name, '?')})"
                    )
                found[item.name] = (item, impl.plugin_name)
        return {name: item for name, (item, _) in found.items()}
