"""The plugin manager and the typed wrapper through which the rest of hookserve calls hooks
(nothing else touches ``pm.hook``).

Every plugin, builtins included, is an entry point of the ``hookserve`` group: hookserve's
own distribution declares its builtins there (``pyproject.toml``), so they load through the
same path as third-party ones. Order of registration: the block list is applied before any
import, then hookserve's builtins in the order they are declared, then third-party entry
points (registered later, their hooks run before the builtins'), then ``check_pending()``.
A third-party plugin that fails to import, register or declares a hook that does not exist
is logged with its distribution name and version and skipped, unless ``strict`` is set; a
builtin that fails is always fatal.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import pluggy

from hookserve import hookspecs
from hookserve.errors import PluginError, PredictionError
from hookserve.pipeline_types import Batch, EncodedOutput, Model
from hookserve.plugin_types import (
    Batcher,
    BatchSettings,
    CliCommand,
    DeviceRequest,
    HandlerClass,
    MetricRecord,
    ModelEnvironment,
    Routes,
)

if TYPE_CHECKING:
    from hookserve.archive.reading import ModelArchive
    from hookserve.context import Context

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hookserve"
DISTRIBUTION = "hookserve"
DISABLE_ENV = "HOOKSERVE_DISABLE_PLUGINS"  # comma-separated names, like --disable-plugin
STRICT_ENV = "HOOKSERVE_STRICT_PLUGINS"  # "1": a broken third-party plugin is fatal
TRACE_ENV = "HOOKSERVE_TRACE_HOOKS"  # "1": log every hook call (pluggy's tracing)

# Without these a worker cannot run a batch or read a request at all; they cannot be blocked.
ESSENTIAL_PLUGINS = frozenset({"stages", "codecs"})


@dataclass(frozen=True)
class PluginInfo:
    """Where a registered plugin came from, for ``hookserve plugins`` and error messages."""

    name: str
    source: str  # "builtin: hookserve <version>" or "<distribution> <version>"
    module: str
    hooks: tuple[str, ...]


def disabled_from_env(environ: os._Environ | dict = os.environ) -> set[str]:
    return {n.strip() for n in environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def distribution_of(ep: importlib.metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.metadata["Name"], dist.version) if dist is not None else ("?", "?")


class HookservePluginManager(pluggy.PluginManager):
    """pluggy's manager with hookserve's specs, its entry-point loading and where each plugin
    came from (``sources``: plugin name -> ``"builtin: hookserve 0.1.0"`` or
    ``"<distribution> <version>"``)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.sources: dict[str, str] = {}
        self.traced = False  # every hook call logged (HOOKSERVE_TRACE_HOOKS)

    def load_entry_points(self, *, blocked: set[str], strict: bool, third_party: bool = True) -> None:
        """Register hookserve's builtins, then (if ``third_party``) every other distribution's
        plugins of the ``hookserve`` group; nothing blocked is imported."""
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        builtins = [ep for ep in eps if distribution_of(ep)[0] == DISTRIBUTION]
        if not builtins:
            raise PluginError(
                f"no builtin plugins: the {DISTRIBUTION!r} distribution that declares them as entry points "
                f"of the {ENTRY_POINT_GROUP!r} group is not installed (pip install hookserve, or pip install -e .)"
            )
        for ep in builtins:
            if ep.name in blocked or self.has_plugin(ep.name):
                continue
            name, version = distribution_of(ep)
            self._register_entry_point(ep, f"builtin: {name} {version}", strict=True)
        if not third_party:
            return
        for ep in eps:
            name, version = distribution_of(ep)
            if name == DISTRIBUTION or ep.name in blocked or name in blocked or self.has_plugin(ep.name):
                continue
            self._register_entry_point(ep, f"{name} {version}", strict=strict)

    def _register_entry_point(self, ep: importlib.metadata.EntryPoint, source: str, *, strict: bool) -> None:
        try:
            self.register(ep.load(), name=ep.name)
            try:
                self.check_pending()
            except pluggy.PluginValidationError:
                self.unregister(name=ep.name)
                raise
        except Exception as exc:
            message = (
                f"plugin {ep.name!r} ({ep.value}) from distribution {source} is broken: {type(exc).__name__}: {exc}"
            )
            if strict:
                raise PluginError(message) from exc
            log.error("%s; skipped", message)
            return
        self.sources[ep.name] = source


def create_plugin_manager(
    *, disabled: Iterable[str] = (), strict: bool | None = None, third_party: bool = True
) -> HookservePluginManager:
    """Build a plugin manager with builtins and (unless ``third_party`` is false) installed
    plugins registered.

    ``disabled`` adds to the names in ``$HOOKSERVE_DISABLE_PLUGINS``; a name is an entry-point
    name (a builtin's is its short name, ``gpu``) or a third-party distribution's name.
    """
    blocked = set(disabled) | disabled_from_env()
    unblockable = blocked & (ESSENTIAL_PLUGINS | {DISTRIBUTION})
    if unblockable:
        raise PluginError(f"plugin(s) {sorted(unblockable)} are essential and cannot be disabled")
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "") not in ("", "0")
    pm = HookservePluginManager()
    pm.load_entry_points(blocked=blocked, strict=strict, third_party=third_party)
    pm.check_pending()
    if os.environ.get(TRACE_ENV, "") not in ("", "0"):
        pm.trace.root.setwriter(lambda msg: log.info("hook trace: %s", msg.rstrip()))
        pm.enable_tracing()
        pm.traced = True
    return pm


def plugin_infos(pm: HookservePluginManager) -> list[PluginInfo]:
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

    def __init__(self, pm: HookservePluginManager):
        self.pm = pm
        self._hook = pm.hook

    def load(self, *, archive: ModelArchive, context: Context) -> Any:
        return self._hook.hookserve_load(archive=archive, context=context)

    def handler_plugin(self, *, model: Model) -> object | None:
        return self._hook.hookserve_handler_plugin(model=model)

    def handle_batch(self, *, model: Model, batch: Batch, context: Context) -> Any:
        """The batch's replies, unchecked: the worker checks them (``Batch.check_replies``)."""
        return self._hook.hookserve_handle_batch(model=model, batch=batch, context=context)

    # The stages: a stage no plugin answered is an error, never a silent None passed on.

    def preprocess(self, *, model: Model, batch: Batch, context: Context) -> Any:
        result = self._hook.hookserve_preprocess(model=model, batch=batch, context=context)
        return result if result is not None else _no_result("preprocess", model)

    def infer(self, *, model: Model, data: Any, context: Context) -> Any:
        result = self._hook.hookserve_infer(model=model, data=data, context=context)
        return result if result is not None else _no_result("infer", model)

    def postprocess(self, *, model: Model, data: Any, context: Context) -> list:
        result = self._hook.hookserve_postprocess(model=model, data=data, context=context)
        return result if result is not None else _no_result("postprocess", model)

    def explain(self, *, model: Model, data: Any, batch: Batch, context: Context) -> list:
        result = self._hook.hookserve_explain(model=model, data=data, batch=batch, context=context)
        return result if result is not None else _no_result("explain", model)

    def describe(self, *, model: Model, batch: Batch, context: Context) -> list:
        result = self._hook.hookserve_describe(model=model, batch=batch, context=context)
        return result if result is not None else _no_result("describe", model)

    def decode_input(self, *, content_type: str, data: bytes) -> Any:
        """The decoded field; ``None`` only when a plugin decoded it to ``None`` (JSON ``null``)."""
        return self._hook.hookserve_decode_input(content_type=content_type, data=data)

    def encode_output(self, *, item: Any) -> EncodedOutput:
        encoded = self._hook.hookserve_encode_output(item=item)
        if encoded is None:
            raise PredictionError(f"no plugin can encode a handler output of type {type(item).__name__}")
        return encoded

    # A model worker's per-request calls, resolved once per worker: where exactly one plain
    # implementation answers (the builtin alone, the common case), it is called directly,
    # without pluggy's per-call machinery (1-2 µs a call here, three calls a request). A
    # wrapper, a second implementation or hook tracing keeps the hook call.

    def _only_implementation(self, caller: pluggy.HookCaller, argnames: tuple[str, ...]) -> Callable[..., Any] | None:
        impls = caller.get_hookimpls()
        if self.pm.traced or len(impls) != 1:
            return None
        impl = impls[0]
        if impl.wrapper or impl.hookwrapper or tuple(impl.argnames) != argnames:
            return None
        return impl.function

    def input_decoder(self) -> Callable[[str, bytes], Any]:
        """``decode_input`` as ``decode(content_type, data)``, for a worker's request loop."""
        only = self._only_implementation(self._hook.hookserve_decode_input, ("content_type", "data"))
        if only is not None:
            return only
        return lambda content_type, data: self.decode_input(content_type=content_type, data=data)

    def output_encoder(self) -> Callable[[Any], EncodedOutput]:
        """``encode_output`` as ``encode(item)``, for a worker's request loop."""
        only = self._only_implementation(self._hook.hookserve_encode_output, ("item",))
        if only is None:
            return lambda item: self.encode_output(item=item)

        def encode(item: Any) -> EncodedOutput:
            encoded = only(item)
            return encoded if encoded is not None else self.encode_output(item=item)

        return encode

    def batch_handler(self) -> Callable[[Model, Batch, Context], Any]:
        """``handle_batch`` as ``handle(model, batch, context)``, for a worker's batch loop."""
        only = self._only_implementation(self._hook.hookserve_handle_batch, ("model", "batch", "context"))
        if only is not None:
            return only
        return lambda model, batch, context: self.handle_batch(model=model, batch=batch, context=context)

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
        return self._named("handler name", self._hook.hookserve_handler_classes)

    def _named(self, what: str, caller: pluggy.HookCaller, taken: dict[str, str] | None = None) -> dict[str, Any]:
        """Every plugin's named items from a register-style hook. A name given twice, or one
        of ``taken`` (name -> who has it), is an error that names both plugins."""
        found: dict[str, tuple[Any, str]] = {}
        for impl in caller.get_hookimpls():
            for item in impl.function() or ():
                if taken and item.name in taken:
                    raise PluginError(
                        f"{what} {item.name!r} of plugin {impl.plugin_name!r} "
                        f"({self.pm.sources.get(impl.plugin_name, '?')}) is taken by {taken[item.name]}"
                    )
                if item.name in found:
                    other = found[item.name][1]
                    raise PluginError(
                        f"{what} {item.name!r} is registered by plugin {other!r} "
                        f"({self.pm.sources.get(other, '?')}) and by plugin {impl.plugin_name!r} "
                        f"({self.pm.sources.get(impl.plugin_name, '?')})"
                    )
                found[item.name] = (item, impl.plugin_name)
        return {name: item for name, (item, _) in found.items()}

    def configure(self, *, config: Any) -> None:
        """Hand the loaded config to every plugin, and to those registered later in this process."""
        self._hook.hookserve_configure.call_historic(kwargs={"config": config})

    def install_dependencies(self, *, archive: Any, config: Any) -> ModelEnvironment:
        return self._hook.hookserve_install_dependencies(archive=archive, config=config) or ModelEnvironment()

    def records_metrics(self) -> bool:
        """Whether any plugin takes metrics: without one, nothing is measured for them."""
        return bool(self._hook.hookserve_record_metrics.get_hookimpls())

    def record_metrics(self, *, metrics: list[MetricRecord]) -> None:
        """Hand ``metrics`` to every sink; a sink that fails is logged, never the request's failure."""
        try:
            self._hook.hookserve_record_metrics(metrics=metrics)
        except Exception:
            log.exception("a hookserve_record_metrics implementation failed; %d records dropped", len(metrics))

    def cli_commands(self, *, core: Iterable[str]) -> dict[str, CliCommand]:
        """Plugins' subcommands by name; a name that two plugins, or a plugin and the core
        (``core``: the core's command names), both give is an error naming both."""
        taken = {name: "hookserve's core command" for name in core}
        return self._named("command", self._hook.hookserve_cli_commands, taken)


def _no_result(stage: str, model: Model) -> NoReturn:
    raise PredictionError(
        f"no plugin produced a result for stage {stage!r} of model {model.name!r} "
        f"(every implementation of hookserve_{stage} returned None)"
    )
