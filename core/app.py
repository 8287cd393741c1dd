"""The ASGI app that gunicorn's workers run: ``gunicorn 'hookserve.app:create_app()'``.

Built in each frontend worker after the fork, from the config the master wrote into the
run folder, with the model client that reaches the model workers. Given a ``service``
(e.g. :class:`hookserve.inprocess.InProcessService`) it is built in-process instead, with
no run folder and no socket. The HTTP app and its routes come from plugins.
"""

from __future__ import annotations

import logging
from typing import Any

from hookserve.config import ServerConfig
from hookserve.frontend.request_metrics import model_client
from hookserve.model_service import ModelService
from hookserve.plugin_types import Routes
from hookserve.pluginmanager import Hooks, create_plugin_manager


def create_app(config: ServerConfig | None = None, service: ModelService | None = None) -> Any:
    """The ASGI app for ``service`` (default: the model client of the run folder that
    ``config``, by default read from ``$HOOKSERVE_RUN_DIR``, names).

    In-process, ``config`` defaults to :class:`ServerConfig`'s defaults; the listeners are
    told apart by the port a request came in on (the inference address's port first)."""
    if service is None:
        config = config or ServerConfig.load()
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s [frontend] %(levelname)s %(name)s: %(message)s")
    config = config or ServerConfig()
    hooks = Hooks(create_plugin_manager(disabled=config.disabled_plugins, strict=config.strict_plugins))
    hooks.configure(config=config)
    if service is None:
        service = model_client(hooks, config.run_dir, config.job_queue_size, config.busy_poll_s)
    routes = Routes(models=service, config=config)
    hooks.http_routes(routes=routes, config=config)
    return hooks.http_app(routes=routes, config=config)
