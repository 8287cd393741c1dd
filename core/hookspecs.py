"""Every hook hookserve calls: the one file to read to know what a plugin can extend.

Hooks take keyword arguments only. Implement them in a module or class and publish it in
the ``hookserve`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points.hookserve]
    my_plugin = "my_package.plugin"

``firstresult`` hooks stop at the first implementation that returns something other than
``None``; returning ``None`` means "not mine". Builtin defaults are ``trylast`` so every
installed plugin is asked before them.

The model worker owns the pipeline. For every batch of every model it calls
``hookserve_handle_batch``; the builtin default (``stages``, ``trylast``) runs the stage
hooks: ``hookserve_preprocess`` -> ``hookserve_infer`` -> ``hookserve_postprocess``, or
``hookserve_preprocess`` -> ``hookserve_explain`` for an ``explain`` batch, or
``hookserve_describe``. A stage for which every implementation returns ``None`` is a
``PredictionError`` that names the stage and the model.

The model's own handler is adapted (``hookserve_handler_plugin``) into a plugin registered
for that model only, whose implementations are ``tryfirst``, so for every hook the order is:

1. the handler's plugin: a function handler, a plain class or a class that overrides
   ``handle`` implements ``hookserve_handle_batch`` (its ``handle`` runs exactly as written);
   a ``BaseHandler`` subclass implements the stages it overrides;
2. installed plugins, in the reverse order of registration;
3. builtin defaults (``trylast``): ``BaseHandler``'s own stages.

A wrapper (``@hookimpl(wrapper=True)``) on ``hookserve_handle_batch`` sees every batch of
every model, whatever its handler; a wrapper on a stage sees that stage wherever the stage
hooks run.

Loading: the worker calls the handler's ``initialize(context)`` (for a function handler,
``fn(None, context)``). Handlers never reach the plugin manager; ``BaseHandler.initialize``
gets its model from ``context.load_model()``, a loader the worker binds to this archive
that calls ``hookserve_load`` once. So a handler that sets ``self.model`` itself, or a
function handler, never causes a load, and a subclass that calls ``super().initialize``
loads once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hookserve.archive.reading import ModelArchive
    from hookserve.config import ServerConfig
    from hookserve.context import Context
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

PROJECT_NAME = "hookserve"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- model worker: loading -------------------------------------------------------------


@hookspec(firstresult=True)
def hookserve_load(archive: ModelArchive, context: Context) -> Any | None:
    """Build the model object of one worker from its archive.

    Called when the handler asks for its model (``BaseHandler.initialize`` calls
    ``context.load_model()``), at most once per worker. Stops at the first non-None result;
    when every plugin returns ``None`` the worker reports that nothing could load the archive.
    The builtin loader (``trylast``) handles an eager ``modelFile`` class plus a state dict
    (loaded with ``weights_only=True``), TorchScript files and ``torch.export`` programs
    (``.pt2``).

    :param archive: the opened model archive (``archive.model_dir``, ``archive.manifest``).
    :param context: the worker's context; ``context.system_properties["gpu_id"]`` is its GPU.
    :return: the model, or ``None`` if this plugin does not know the archive's format.

    Example::

        @hookimpl
        def hookserve_load(archive, context):
            if archive.serialized_file and archive.serialized_file.endswith(".onnx"):
                return OnnxModel(archive.model_dir / archive.serialized_file)
    """


@hookspec(firstresult=True)
def hookserve_handler_plugin(model: Model) -> object | None:
    """Adapt a model's handler into a plugin registered for that model only.

    Called once per worker after the handler is resolved and before it is initialized. The
    plugin returned is registered under ``handler:<model name>``; its implementations should
    be ``tryfirst`` and answer only for ``model`` (``model.handler``), so the handler wins,
    installed plugins fill what it leaves out and builtin defaults come last. Stops at the
    first non-None result. The builtin (``stages``, ``trylast``) adapts every handler
    hookserve can run: a ``BaseHandler`` subclass into the stages it overrides, anything
    else (function, plain class, a class overriding ``handle``) into ``hookserve_handle_batch``.

    :param model: the model, whose ``handler`` is the instance (or entry function).
    :return: a plugin object, or ``None`` when this plugin does not adapt such handlers.

    Example::

        @hookimpl
        def hookserve_handler_plugin(model):
            if isinstance(model.handler, MyFrameworkHandler):
                return MyFrameworkStages(model.handler)
    """


# --- model worker: one batch -----------------------------------------------------------


@hookspec(firstresult=True)
def hookserve_handle_batch(model: Model, batch: Batch, context: Context) -> list | None:
    """Run one batch of ``model``: one reply per request, in request order.

    Called by the worker for every batch of every model; stops at the first non-None result,
    which must be a list as long as the batch (an exception object in place of an item
    fails that request alone). A handler that owns its ``handle`` answers first (its
    adapter is ``tryfirst``); the builtin default (``stages``, ``trylast``) runs the stage
    hooks. Wrap it to see every batch::

        @hookimpl(wrapper=True)
        def hookserve_handle_batch(model, batch, context):
            started = time.perf_counter()
            replies = yield
            log.info("%s: %d requests in %.1f ms", model.name, len(batch), (time.perf_counter() - started) * 1e3)
            return replies

    :param model: the model (``model.handler``, ``model.loaded``, ``model.device``).
    :param batch: the requests (``batch.kind``, ``batch.requests``; ``batch.data`` is the list
        of one dict per request that a TorchServe ``handle(data, context)`` takes).
    :param context: the handler's context, pointed at this batch (headers, request ids,
        response status and headers).
    """


@hookspec(firstresult=True)
def hookserve_preprocess(model: Model, batch: Batch, context: Context) -> Any | None:
    """Turn the batch's request inputs into what ``hookserve_infer`` takes.

    Stops at the first non-None result; ``None`` from every plugin is an error.

    Example::

        @hookimpl
        def hookserve_preprocess(model, batch, context):
            return torch.stack([torch.as_tensor(row["body"]) for row in batch.data]).to(model.device)
    """


@hookspec(firstresult=True)
def hookserve_infer(model: Model, data: Any, context: Context) -> Any | None:
    """Run the model on the preprocessed batch ``data``. Stops at the first non-None result.

    Example::

        @hookimpl
        def hookserve_infer(model, data, context):
            with torch.inference_mode():
                return model.loaded(data)
    """


@hookspec(firstresult=True)
def hookserve_postprocess(model: Model, data: Any, context: Context) -> list | None:
    """Turn the model output ``data`` into one reply per request, in request order.

    Stops at the first non-None result.

    Example::

        @hookimpl
        def hookserve_postprocess(model, data, context):
            return data.argmax(dim=1).tolist()
    """


@hookspec(firstresult=True)
def hookserve_explain(model: Model, data: Any, batch: Batch, context: Context) -> list | None:
    """Explain the model's answer for the requests of an ``explain`` batch (``/explanations``).

    :param data: the preprocessed batch.
    :param batch: the requests as they were before preprocessing (``batch.data``).

    Example::

        @hookimpl
        def hookserve_explain(model, data, batch, context):
            return IntegratedGradients(model.loaded).attribute(data, target=0).tolist()
    """


@hookspec(firstresult=True)
def hookserve_describe(model: Model, batch: Batch, context: Context) -> list | None:
    """Answer a ``describe`` batch (the management API's ``customized=true``): one item per
    request. The builtin default gives ``BaseHandler.describe_handle()`` to each.

    Example::

        @hookimpl
        def hookserve_describe(model, batch, context):
            return [{"inputs": "3 floats"}] * len(batch) if model.name == "tiny" else None
    """


# --- model worker: request fields in, reply bodies out --------------------------------


@hookspec(firstresult=True)
def hookserve_decode_input(content_type: str, data: bytes) -> Any | None:
    """Decode one request field (the body, or one form field) for the handler.

    Called once per field; stops at the first non-None result. The builtin ``codecs``
    plugin (``trylast``) parses JSON, gives ``text/*`` as ``str`` and anything else as
    ``bytes``; raise ``hookserve.errors.BadRequest`` for a field that is not what its
    content type says (the client gets a 400). Keep it cheap: it runs on every request.

    Example::

        @hookimpl
        def hookserve_decode_input(content_type, data):
            if content_type.startswith("application/x-npy"):
                return numpy.load(io.BytesIO(data))
    """


@hookspec(firstresult=True)
def hookserve_encode_output(item: Any) -> EncodedOutput | None:
    """Encode one handler reply into a body and its default content type.

    Called once per reply; stops at the first non-None result. The builtin ``codecs``
    plugin (``trylast``) sends ``bytes`` as they are, ``str`` as UTF-8 text and anything
    else as JSON. A content type the handler set (``context.set_response_content_type``)
    wins over the one returned here.

    Example::

        @hookimpl
        def hookserve_encode_output(item):
            if isinstance(item, numpy.ndarray):
                return EncodedOutput(item.tobytes(), "application/x-raw-float32")
    """


@hookspec(firstresult=True)
def hookserve_batcher(settings: BatchSettings) -> Batcher | None:
    """Decide how a model worker forms batches from the requests it has received.

    Called once per worker; stops at the first non-None result. The builtin ``batching``
    plugin (``trylast``) fills up to ``batch_size`` and waits at most ``max_batch_delay``,
    and only while replies it just sent can still bring requests back or requests that
    frontends have sent are still arriving.

    Example::

        @hookimpl
        def hookserve_batcher(settings):
            return FixedDelayBatcher(settings.batch_size, settings.max_batch_delay / 1000)
    """


# --- model manager ---------------------------------------------------------------------


@hookspec(firstresult=True)
def hookserve_select_device(request: DeviceRequest) -> str | None:
    """Choose the device of a new model worker. Stops at the first non-None result.

    :param request: the model's ``deviceType`` / ``deviceIds``, the worker's index among the
        model's workers, the number of visible GPUs and the server's ``number_of_gpu`` cap.
    :return: ``"cuda:N"`` or ``"cpu"``; the builtin ``gpu`` plugin (``trylast``) spreads
        workers round-robin over the allowed GPUs and falls back to ``"cpu"``.

    Example::

        @hookimpl
        def hookserve_select_device(request):
            return "cuda:0" if request.model_name == "big" and request.gpu_count else None
    """


# --- registration hooks: return typed objects with a name -----------------------------


@hookspec
def hookserve_handler_classes() -> list[HandlerClass]:
    """Name handler classes so ``--handler NAME`` finds them (``image_classifier`` ...).

    Every plugin's list is collected; a name given twice is an error that names both
    plugins.

    Example::

        @hookimpl
        def hookserve_handler_classes():
            return [HandlerClass(name="audio_classifier", cls=AudioClassifier)]
    """


@hookspec
def hookserve_http_routes(routes: Routes, config: ServerConfig) -> None:
    """Add HTTP resources to the frontend's listeners.

    :param routes: ``routes.add(listener, uri_template, resource)`` where ``listener`` is
        ``"inference"``, ``"management"`` or ``"metrics"``; ``routes.models`` is the
        :class:`hookserve.model_service.ModelService` that runs the models (model workers
        under ``hookserve serve``, this process under an in-process service).

    Example::

        @hookimpl
        def hookserve_http_routes(routes, config):
            routes.add("inference", "/hello", HelloResource())
    """


@hookspec(firstresult=True)
def hookserve_http_app(routes: Routes, config: ServerConfig) -> Any | None:
    """Build the ASGI application that gunicorn's workers run from the collected routes.

    The builtin ``http`` plugin (``trylast``) builds one falcon app per listener address;
    a plugin can replace the whole frontend. Stops at the first non-None result.

    Example::

        @hookimpl
        def hookserve_http_app(routes, config):
            return MyStarletteApp(routes.table["inference"], config)
    """


# --- every process: configuration ------------------------------------------------------


@hookspec(historic=True)
def hookserve_configure(config: ServerConfig) -> None:
    """Take the server's configuration once it is loaded.

    Called once in every process that has a plugin manager: ``hookserve serve``'s master,
    the model manager (whose model workers inherit it) and each frontend worker. The call
    is historic: a plugin registered later in that process (a model's handler plugin) gets
    it on registration. Keep what the plugin needs from ``config``; do not change it.

    :param config: the loaded ``ServerConfig`` (``config.model_store``, ``config.run_dir`` ...).

    Example::

        @hookimpl
        def hookserve_configure(config):
            settings.model_store = config.model_store
    """


# --- model manager: a model version's dependencies --------------------------------------


@hookspec(firstresult=True)
def hookserve_install_dependencies(archive: ModelArchive, config: ServerConfig) -> ModelEnvironment | None:
    """Make what a model version needs importable before its workers start.

    Called by the manager once per registered model version, before its first worker is
    forked; every worker of that version applies the returned environment (its ``sys_path``
    folders go in front of ``sys.path``, its ``environ`` into ``os.environ``) before it
    imports the handler. Stops at the first non-None result. The builtin ``dependencies``
    plugin (``trylast``) adds nothing: the model runs with the server's own packages.

    :param archive: the opened archive; ``archive.requirements_file`` names its
        requirements.txt inside ``archive.model_dir``, if it has one.
    :param config: the server configuration.
    :return: a ``ModelEnvironment``, or ``None`` to leave the decision to other plugins.

    Example::

        @hookimpl
        def hookserve_install_dependencies(archive, config):
            if archive.requirements_file:
                return ModelEnvironment(sys_path=(str(pip_install_target(archive)),))
    """


# --- frontends and model workers: measurements -----------------------------------------


@hookspec
def hookserve_record_metrics(metrics: list[MetricRecord]) -> None:
    """Receive measurements; every implementation is called.

    A model worker calls it once per batch (``PredictionTime`` and what the handler added to
    ``context.metrics``, such as ``HandlerTime``); a frontend calls it with the requests it
    finished since its last call (``ts_inference_latency_microseconds``, one per request).
    Neither measures nor calls anything when no plugin implements this hook. It runs on the
    request path: keep it quick (queue the records, export them elsewhere). An exception
    is logged and never fails a request.

    Example::

        @hookimpl
        def hookserve_record_metrics(metrics):
            for m in metrics:
                statsd.timing(f"{m.model_name}.{m.name}", m.value)
    """


# --- the command line -----------------------------------------------------------------


@hookspec
def hookserve_cli_commands() -> list[CliCommand]:
    """Add subcommands to ``hookserve`` (``hookserve demo`` is the builtin ``demo`` plugin's).

    Every plugin's list is collected; a name given by two plugins, or one of the core's
    (``serve``, ``archive``, ``plugins``), is an error naming both.

    Example::

        @hookimpl
        def hookserve_cli_commands():
            return [CliCommand(name="hello", help="say hello", add_arguments=lambda p: None, run=lambda args: 0)]
    """
