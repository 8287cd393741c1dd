"""The builtin HTTP frontend: falcon ASGI apps for the inference, management and metrics
listeners, run by gunicorn's workers. It never imports torch."""

from __future__ import annotations

from typing import Any

from hookserve.config import ServerConfig
from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import Routes

# The manager and the model workers register every builtin plugin too, but only frontends
# serve HTTP: falcon (about 0.1 s to import) is imported by the hooks, not by this module,
# so it delays no model from loading.


@hookimpl
def hookserve_http_routes(routes: Routes, config: ServerConfig) -> None:
    from hookserve.plugins.http.inference import PingResource, PredictionsResource
    from hookserve.plugins.http.management import (
        ManagementResources,
        ModelResource,
        ModelsResource,
        SetDefaultResource,
    )

    predictions = PredictionsResource(routes.models, config)
    explanations = PredictionsResource(routes.models, config, kind="explain")
    routes.add("inference", "/ping", PingResource(routes.models))
    for prefix, resource in (("/predictions", predictions), ("/explanations", explanations)):
        routes.add("inference", prefix + "/{model_name}", resource)
        routes.add("inference", prefix + "/{model_name}/{version}", resource)
    shared = ManagementResources(routes.models, config)
    model = ModelResource(shared)
    routes.add("management", "/models", ModelsResource(shared))
    routes.add("management", "/models/{model_name}", model)
    routes.add("management", "/models/{model_name}/{version}", model)
    routes.add("management", "/models/{model_name}/{version}/set-default", SetDefaultResource(shared))


@hookimpl(trylast=True)
def hookserve_http_app(routes: Routes, config: ServerConfig) -> Any:
    from hookserve.plugins.http.app import create_listener_apps

    return create_listener_apps(routes, config)
