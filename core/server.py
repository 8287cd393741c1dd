"""``hookserve serve``: a gunicorn application whose master also owns the model manager.

The same settings serve plain gunicorn through ``hookserve.gunicorn_conf``. The master
owns the model manager process (``hookserve.manager.process``): it starts it in
``on_starting``, restarts it from its master loop when it dies (or stops the server when it
keeps dying), and stops it in ``on_exit``, after the frontends have finished their
in-flight requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import subprocess
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from hookserve.config import ServerConfig
from hookserve.manager.process import ManagerSupervisor, supervise
from hookserve.tuning.garbage_collection import settle_heap
from hookserve.tuning.scheduling import use_batch_scheduling
from hookserve.tuning.send_buffer import send_buffer_shortfall

log = logging.getLogger("hookserve.server")


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gunicorn_settings(config: ServerConfig, manager: subprocess.Popen | None = None) -> dict[str, Any]:
    """Gunicorn settings for a config; one source for ``hookserve serve`` and the conf module.

    ``hookserve serve`` passes the ``manager`` it started before importing gunicorn, so the
    manager's import of torch overlaps gunicorn's own start; otherwise ``on_starting`` starts it.
    """

    def on_starting(arbiter: Any) -> None:
        shortfall = send_buffer_shortfall()
        if shortfall:
            log.warning("%s", shortfall)
        supervisor = arbiter.hookserve_manager = ManagerSupervisor(config, manager)
        supervisor.start()
        supervise(arbiter, supervisor)

    def on_exit(arbiter: Any) -> None:
        supervisor = getattr(arbiter, "hookserve_manager", None)
        if supervisor is not None:
            supervisor.stop()

    def post_worker_init(worker: Any) -> None:
        if config.batch_scheduling:
            use_batch_scheduling()
        settle_heap()

    return {
        "bind": [bind_address(host, port) for host, port in config.listeners()],
        "workers": config.frontend_workers,
        "worker_class": "hookserve.frontend.gunicorn_worker.FrontendWorker",
        "proc_name": "hookserve",
        "on_starting": on_starting,
        "on_exit": on_exit,
        "post_worker_init": post_worker_init,
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
        **tls_settings(config),
    }


TLS_SHUTDOWN_TIMEOUT_S = 2.0


def tls_settings(config: ServerConfig) -> dict[str, Any]:
    """Gunicorn's TLS settings: its certfile/keyfile cover every listener (see ``check_tls``).

    The ``ssl_context`` hook is set even without a certificate here, for a ``--certfile``
    given to gunicorn itself: gunicorn calls it only when it serves TLS.
    """

    def ssl_context(conf: Any, default_ssl_context_factory: Any) -> Any:
        # Called in the frontend worker, in its event loop, just before it creates its servers.
        # Most clients close without a TLS close_notify, and an idle keep-alive client answers
        # the server's only when it next reads: the event loop waits its SSL shutdown timeout
        # (30 s) for it before it reports the connection lost, and a graceful stop waits for
        # that connection as long. Gunicorn's worker passes no ssl_shutdown_timeout; pass one.
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a worker's loop (a test calling the hook)
            loop = None
        if loop is not None and not isinstance(loop.create_server, functools.partial):
            loop.create_server = functools.partial(loop.create_server, ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT_S)
        try:
            return default_ssl_context_factory()
        except Exception as exc:
            # gunicorn's ASGI worker would log this and serve plain HTTP: stop the server instead
            print(f"hookserve: cannot serve TLS with {conf.certfile}: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(3) from None  # gunicorn's WORKER_BOOT_ERROR: the arbiter stops

    settings: dict[str, Any] = {"ssl_context": ssl_context}
    if config.certfile:
        settings.update(certfile=config.certfile, keyfile=config.keyfile)
    return settings


class HookserveApplication(BaseApplication):
    def __init__(self, config: ServerConfig, manager: subprocess.Popen | None = None):
        self.config = config
        self.manager = manager
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_settings(self.config, self.manager).items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from hookserve.app import create_app

        return create_app()
