"""The model manager's process: ``python -m hookserve.manager RUN_DIR [MASTER_PID]``.

Started by the gunicorn master, it imports torch and the handler modules once and runs no
torch op, so a forked worker starts in milliseconds and shares those pages with its
siblings; CUDA is only ever initialised inside a worker.

The manager is single-threaded (forking from a threaded process is unsafe): one selector
loop watches the workers' status pipes and the control socket, reaps exited workers,
restarts crashed ones with back-off and retires drained ones. It publishes what frontends
need in ``RUN_DIR/routes.json`` (first once its control socket listens and its start-up
models are registered, marked ``ready``) and, after every management change, the snapshot
a restarted server restores plus ``RUN_DIR/state.json``, the same registry for a manager
that the master restarts within this run (see :mod:`hookserve.manager.startup`).
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import socket
import sys

from hookserve.config import ServerConfig
from hookserve.errors import PluginError
from hookserve.manager.control_api import ControlApi
from hookserve.manager.lifecycle import ModelManager
from hookserve.manager.startup import StartupModels
from hookserve.manager.supervisor import kill_leftover_workers
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.tuning.garbage_collection import settle_heap
from hookserve.wire.control import CONTROL_SOCKET, ControlServerSide

log = logging.getLogger("hookserve.manager")


class ManagerProcess:
    """The loop: control connections, worker status, reaping, restarts, publishing."""

    def __init__(self, config: ServerConfig, hooks: Hooks, parent_pid: int):
        self.manager = ModelManager(config, hooks)
        self.supervisor = self.manager.supervisor
        self.selector = self.supervisor.selector
        self.api = ControlApi(self.manager)
        self.parent_pid = parent_pid
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.supervisor.inherited.append(self.control)

    def listen(self) -> None:
        path = self.manager.run_dir / CONTROL_SOCKET
        if path.exists():
            path.unlink()
        self.control.bind(str(path))
        self.control.listen(64)
        self.control.setblocking(False)
        self.selector.register(self.control, selectors.EVENT_READ, "control")

    def run(self) -> None:
        supervisor, publisher = self.supervisor, self.manager.publisher
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        run_dir = self.manager.run_dir
        kill_leftover_workers(run_dir)
        for stale in run_dir.glob("w*.sock"):  # a previous manager's worker sockets
            stale.unlink(missing_ok=True)
        self.listen()
        StartupModels(self.manager).load()
        while not supervisor.stopping:
            for key, _ in self.selector.select(timeout=0.05):
                self.on_event(key)
            supervisor.reap()
            supervisor.tick()
            # publish first: a synchronous caller that gets its answer must see the workers
            if publisher.dirty:
                publisher.publish()
            self.api.settle_waiters()
            if os.getppid() != self.parent_pid:
                log.warning("the gunicorn master is gone; stopping")
                supervisor.stopping = True
        supervisor.stop_all()

    def on_event(self, key: selectors.SelectorKey) -> None:
        if key.data == "control":
            try:
                sock, _ = self.control.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, ControlServerSide(sock))
        elif isinstance(key.data, ControlServerSide):
            conn = key.data
            lines = conn.read_messages()
            if lines is None or lines:
                self.selector.unregister(conn.sock)
            if lines is None:
                conn.close()
            for line in lines or ():
                self.api.handle(conn, line)
        else:
            self.supervisor.on_status(*key.data)

    def _request_stop(self, signum: int, frame: object) -> None:
        self.supervisor.stopping = True


def preload_worker_modules(hooks: Hooks) -> None:
    """Import what every worker needs before any fork, so workers share it: torch and the
    handler classes the plugins name (``BaseHandler`` and the default handlers among them)."""
    import torch  # noqa: F401

    try:
        hooks.handler_classes()
    except PluginError as exc:  # two plugins claim one name: each model that uses it says so
        log.error("handler classes not preloaded: %s", exc.message)


def main(argv: list[str] | None = None) -> int:
    """``python -m hookserve.manager RUN_DIR [MASTER_PID]``: the manager stops when the
    master is gone (given by the master, which may exit before we could ask for our parent)."""
    argv = sys.argv[1:] if argv is None else argv
    parent_pid = int(argv[1]) if len(argv) > 1 else os.getppid()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [manager] %(levelname)s %(name)s: %(message)s")
    config = ServerConfig.load(argv[0] if argv else None)
    hooks = Hooks(create_plugin_manager(disabled=config.disabled_plugins, strict=config.strict_plugins))
    hooks.configure(config=config)
    preload_worker_modules(hooks)
    # Before the first fork: workers inherit torch's objects frozen (CPython's advice for forked children).
    settle_heap()
    ManagerProcess(config, hooks, parent_pid).run()
    return 0
