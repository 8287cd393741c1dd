"""The ASGI app that gunicorn's workers run: ``gunicorn 'hookserve.app:create_app()'``.

Built in each frontend worker after the fork, from the config the master wrote into the
run folder. The HTTP app and its routes come from plugins.
"""

from __future__ import annotations

import logging
from typing import Any

from hookserve.config import ServerConfig
from hookserve.frontend.request_metrics import model_client
from hookserve.plugin_types import Routes
from hookserve.pluginmanager import Hooks, create_plugin_manager


def create_app(config: ServerConfig | None = None) -> Any:
    config = config or ServerConfig.load()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s [frontend] %(levelname)s %(name)s: %(message)s")
    hooks = Hooks(create_plugin_manager(disabled=config.disabled_plugins, strict=config.strict_plugins))
    hooks.configure(config=config)
    routes = Routes(
        models=model_client(hooks, config.run_dir, config.job_queue_size, config.busy_poll_s), config=config
    )
    hooks.http_routes(routes=routes, config=config)
    return hooks.http_app(routes=routes, config=config)
