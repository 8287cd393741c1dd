"""``hookserve serve``: a gunicorn application whose master also owns the model manager.

The same settings serve plain gunicorn through ``hookserve.gunicorn_conf``. The master
creates the run folder (config, sockets, routes), starts the model manager process in
``on_starting`` and stops it in ``on_exit``, after the frontends have finished their
in-flight requests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.workers.gasgi import ASGIWorker

from hookserve.config import RUN_DIR_ENV, ServerConfig

MANAGER_STOP_TIMEOUT_S = 30


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_settings(config: ServerConfig) -> dict[str, Any]:
    """Gunicorn settings for a config; one source for ``hookserve serve`` and the conf module."""

    def on_starting(arbiter: Any) -> None:
        config.run_dir = tempfile.mkdtemp(prefix="hookserve-")
        os.environ[RUN_DIR_ENV] = config.run_dir
        config.save()
        arbiter.hookserve_manager = subprocess.Popen([sys.executable, "-m", "hookserve.manager", config.run_dir])

    def on_exit(arbiter: Any) -> None:
        manager = getattr(arbiter, "hookserve_manager", None)
        if manager is not None and manager.poll() is None:
            manager.send_signal(signal.SIGTERM)
            try:
                manager.wait(MANAGER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                manager.kill()
                manager.wait()
        if config.run_dir:
            shutil.rmtree(config.run_dir, ignore_errors=True)

    return {
        "bind": [bind_address(host, port) for host, port in config.listeners()],
        "workers": config.frontend_workers,
        "worker_class": "hookserve.server.FrontendWorker",
        "proc_name": "hookserve",
        "on_starting": on_starting,
        "on_exit": on_exit,
        "graceful_timeout": 30,
        # Idle keep-alive connections hold up a graceful stop until they time out: keep it short.
        "keepalive": 5,
        # A client that goes away gets its request task cancelled at once, which withdraws
        # the request from its model worker if it has not started.
        "asgi_disconnect_grace_period": 0,
        # Bodies are capped by max_request_size in the app; headers keep gunicorn's limits.
        "accesslog": None,
        # Operators use the management API; gunicorn's own control socket would also clash
        # between servers sharing a home folder.
        "control_socket_disable": True,
    }


class FrontendWorker(ASGIWorker):
    """Gunicorn's ASGI worker, closing its listeners as soon as SIGTERM arrives (the stock
    worker notices its stop flag only at its next once-a-second heartbeat and accepts new
    connections until then)."""

    def handle_exit_signal(self) -> None:
        super().handle_exit_signal()
        for server in self.servers:
            server.close()


class HookserveApplication(BaseApplication):
    def __init__(self, config: ServerConfig):
        self.config = config
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_settings(self.config).items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from hookserve.app import create_app

        return create_app()
