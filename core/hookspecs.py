"""Every hook hookserve calls: the one file to read to know what a plugin can extend.

Hooks take keyword arguments only. Implement them in a module or class and publish it in
the ``hookserve`` entry-point group::

    # pyproject.toml of a plugin package
    [project.entry-points.hookserve]
    my_plugin = "my_package.plugin"

``firstresult`` hooks stop at the first implementation that returns something other than
``None``; returning ``None`` means "not mine". Builtin defaults are ``trylast`` so every
installed plugin is asked before them.

Inside a model worker the model's own handler is adapted into a plugin registered with
``tryfirst`` for the stages it overrides, so the handler wins, installed plugins fill what
it leaves out and builtin defaults come last. A wrapper (``@hookimpl(wrapper=True)``) sees
every stage of every model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from hookserve.archive.reading import ModelArchive
    from hookserve.config import ServerConfig
    from hookserve.context import Context
    from hookserve.plugin_types import Batcher, BatchSettings, DeviceRequest, HandlerClass, Routes

PROJECT_NAME = "hookserve"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- model worker: loading -------------------------------------------------------------


@hookspec(firstresult=True)
def hookserve_load(archive: ModelArchive, context: Context) -> Any | None:
    """Build the model object of one worker from its archive.

    Called by ``BaseHandler.initialize``. Stops at the first non-None result. The builtin
    loader (``trylast``) handles an eager ``modelFile`` class plus a state dict (loaded with
    ``weights_only=True``), TorchScript files and ``torch.export`` programs (``.pt2``).

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
def hookserve_handler_plugin(handler: Any) -> object | None:
    """Adapt a model's handler instance into a plugin registered for that model only.

    Called once per worker after the handler is resolved and before it is initialized. The
    plugin returned is registered under ``handler:<model name>``; its stage implementations
    should be ``tryfirst`` and answer only for ``handler``, so the handler's own methods win,
    installed plugins fill what it leaves out and builtin defaults come last. Stops at the
    first non-None result. The builtin (``stages``, ``trylast``) adapts ``BaseHandler``
    subclasses: the stages a subclass overrides become ``tryfirst`` implementations.

    :param handler: the model's handler instance (a ``BaseHandler``, a plain class, a module).
    :return: a plugin object, or ``None`` when this plugin does not adapt such handlers.

    Example::

        @hookimpl
        def hookserve_handler_plugin(handler):
            if isinstance(handler, MyFrameworkHandler):
                return MyFrameworkStages(handler)
    """


# --- model worker: the stages of one batch ---------------------------------------------


@hookspec(firstresult=True)
def hookserve_preprocess(handler: Any, data: list[dict], context: Context) -> Any | None:
    """Turn the batch of request inputs into what ``hookserve_infer`` takes.

    Stops at the first non-None result.

    :param handler: the model's handler instance (``handler.model``, ``handler.device``).
    :param data: one dict per request (``{"body": ...}``, form field names, ...).
    :param context: the request batch's context (headers, request ids, response status).

    Example::

        @hookimpl
        def hookserve_preprocess(handler, data, context):
            return torch.stack([torch.as_tensor(row["body"]) for row in data])
    """


@hookspec(firstresult=True)
def hookserve_infer(handler: Any, data: Any, context: Context) -> Any | None:
    """Run the model on the preprocessed batch. Stops at the first non-None result.

    Example::

        @hookimpl
        def hookserve_infer(handler, data, context):
            with torch.inference_mode():
                return handler.model(data)
    """


@hookspec(firstresult=True)
def hookserve_postprocess(handler: Any, data: Any, context: Context) -> list | None:
    """Turn the model output into one reply per request, in request order.

    Stops at the first non-None result.

    Example::

        @hookimpl
        def hookserve_postprocess(handler, data, context):
            return data.argmax(dim=1).tolist()
    """


@hookspec(firstresult=True)
def hookserve_explain(handler: Any, data: Any, raw: list[dict], context: Context) -> list | None:
    """Explain the model's answer for each request (the ``/explanations`` path).

    :param data: the preprocessed batch.
    :param raw: the request inputs as they were before preprocessing.

    Example::

        @hookimpl
        def hookserve_explain(handler, data, raw, context):
            return IntegratedGradients(handler.model).attribute(data, target=0).tolist()
    """


@hookspec(firstresult=True)
def hookserve_batcher(settings: BatchSettings) -> Batcher | None:
    """Decide how a model worker forms batches from the requests it has received.

    Called once per worker; stops at the first non-None result. The builtin ``batching``
    plugin (``trylast``) fills up to ``batch_size`` and waits at most ``max_batch_delay``,
    and only while replies it just sent can still bring requests back.

    Example::

        @hookimpl
        def hookserve_batcher(settings):
            return FixedDelayBatcher(settings.batch_size, settings.max_batch_delay_ms / 1000)
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
