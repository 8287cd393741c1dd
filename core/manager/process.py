"""The model manager as a child of the gunicorn master: started in a new run folder,
supervised (restarted when it dies, or the server stopped with the reason when it keeps
dying), stopped after the frontends have finished their in-flight requests.

The master tells frontends how the manager is doing through ``RUN_DIR/routes.json``, the
file the manager publishes its routes in: before a manager runs, the master writes the
``manager`` entry as ``starting`` (first start) or ``restarting`` (the previous one died: its
workers are marked ``LOST``, since they die with it); the manager replaces the whole file,
with ``ready``, once its control socket listens and its start-up models are registered.
The two never write at the same time: the master writes only while no manager runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from hookserve.config import RUN_DIR_ENV, ServerConfig
from hookserve.wire.routes import ManagerStatus, RoutesTable, read_routes, routes_path, write_routes

log = logging.getLogger("hookserve.master")

MANAGER_STOP_TIMEOUT_S = 30
# A manager that dies more often than this within the window is not going to do better:
# the server stops, with the reason in its log, so that a process supervisor restarts it.
MAX_MANAGER_RESTARTS = 3
RESTART_WINDOW_S = 60.0
# The first death is answered at once (the registry is back within the manager's start-up
# time); deaths that follow it within the window wait 1 s, then 2 s (the master loop wakes at
# least once a second), which also keeps a manager that cannot start from spinning.
RESTART_DELAYS_S = (0.0, 1.0, 2.0)
# gunicorn's own exit status for a worker that cannot boot; a supervisor treats it as a failure
MANAGER_FAILED_EXIT_STATUS = 3


def start_manager(config: ServerConfig) -> subprocess.Popen:
    """Create the run folder (config, sockets, routes) and start the manager working in it."""
    config.run_dir = tempfile.mkdtemp(prefix="hookserve-")
    os.environ[RUN_DIR_ENV] = config.run_dir
    config.save()
    mark_manager(config.run_dir, "starting")
    return spawn_manager(config)


def spawn_manager(config: ServerConfig) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hookserve.manager", config.run_dir, str(os.getpid())])


def stop_manager(manager: subprocess.Popen | None, config: ServerConfig) -> None:
    """Stop the manager (which drains its workers) and remove the run folder."""
    if manager is not None and manager.poll() is None:
        manager.send_signal(signal.SIGTERM)
        try:
            manager.wait(MANAGER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            manager.kill()
            manager.wait()
    if config.run_dir:
        shutil.rmtree(config.run_dir, ignore_errors=True)


def mark_manager(run_dir: str, state: str, reason: str | None = None) -> None:
    """Write the ``manager`` entry of the routes while no manager runs (see the module doc).

    Models stay listed (a request for one waits for the new manager's workers instead of
    getting a 404), but none of their workers is routed to any more.
    """
    try:
        routes = read_routes(run_dir)
    except (OSError, ValueError):  # none yet (or unreadable: orjson's and the contract's errors)
        routes = RoutesTable()
    for entry in routes.models.values():
        for info in entry.versions.values():
            for worker in info.workers:
                worker.state = "LOST"
    routes.manager = ManagerStatus(state=state, since=time.time(), reason=reason)
    try:
        write_routes(run_dir, routes, "master")
    except OSError as exc:  # the master loop must go on: frontends then see the old routes
        log.error("cannot mark the model manager %s in %s: %s", state, routes_path(run_dir), exc)


class ManagerSupervisor:
    """The master's watch over the manager, driven from gunicorn's master loop.

    ``reap`` runs first in the arbiter's reaping (on SIGCHLD): a targeted ``waitpid`` that
    claims the manager before gunicorn's ``waitpid(-1)`` would reap it as an unknown child.
    ``tick`` runs on every turn of the master loop: it starts a replacement, or raises
    gunicorn's ``HaltServer`` when the manager keeps dying.
    """

    def __init__(self, config: ServerConfig, manager: subprocess.Popen | None = None):
        self.config = config
        self.manager = manager
        self.deaths: list[float] = []
        self.restart_due = False
        self.restart_at = 0.0
        self.stopping = False
        self.restarts = 0
        self.log = log  # gunicorn's error log once supervise() runs

    def start(self) -> None:
        if self.manager is None:
            self.manager = start_manager(self.config)

    def reap(self) -> None:
        manager = self.manager
        if manager is None or self.stopping or manager.returncode is not None:
            return
        try:
            pid, status = os.waitpid(manager.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: gone, its status unknown
            pid, status = manager.pid, -1
        if pid == 0:
            return
        manager.returncode = status
        self.on_death(describe_status(status))

    def on_death(self, how: str) -> None:
        now = time.monotonic()
        self.deaths = [t for t in self.deaths if now - t < RESTART_WINDOW_S] + [now]
        self.log.error("the model manager (pid %d) died (%s)", self.manager.pid, how)
        mark_manager(self.config.run_dir, "restarting", reason=f"the previous manager died ({how})")
        self.restart_due = True
        self.restart_at = now + RESTART_DELAYS_S[min(len(self.deaths), len(RESTART_DELAYS_S)) - 1]

    def tick(self) -> None:
        if self.stopping:
            return
        self.reap()
        if not self.restart_due:
            return
        if len(self.deaths) > MAX_MANAGER_RESTARTS:
            reason = (
                f"the model manager died {len(self.deaths)} times within {RESTART_WINDOW_S:g} s "
                f"(last pid {self.manager.pid}); stopping the server so that its supervisor can restart it"
            )
            mark_manager(self.config.run_dir, "stopped", reason=reason)
            self.stopping = True
            from gunicorn.errors import HaltServer

            raise HaltServer(reason, MANAGER_FAILED_EXIT_STATUS)
        if time.monotonic() < self.restart_at:
            return
        self.restart_due = False
        self.manager = spawn_manager(self.config)
        self.restarts += 1
        self.log.warning("the model manager restarted as pid %d (restart %d)", self.manager.pid, self.restarts)

    def stop(self) -> None:
        self.stopping = True
        stop_manager(self.manager, self.config)


def describe_status(status: int) -> str:
    if status < 0:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def supervise(arbiter: object, supervisor: ManagerSupervisor) -> None:
    """Hook the supervisor into gunicorn's master loop.

    Gunicorn has no per-turn hook and reaps every child with ``waitpid(-1)``; the arbiter's
    own ``reap_workers`` and ``manage_workers`` (run on SIGCHLD and on every turn of the
    loop, at least once a second) are wrapped on this arbiter instance, as gunicorn itself
    reaps its dirty arbiter before ``reap_workers`` runs. ``stop`` is wrapped so that a
    manager exiting while the server stops is not restarted.
    """
    supervisor.log = getattr(arbiter, "log", log)
    reap_workers = arbiter.reap_workers  # type: ignore[attr-defined]
    manage_workers = arbiter.manage_workers  # type: ignore[attr-defined]
    stop = arbiter.stop  # type: ignore[attr-defined]

    def stop_without_restarts(graceful: bool = True) -> None:
        # the server is stopping: a manager that exits now (Ctrl-C reaches it too) is not a death
        supervisor.stopping = True
        stop(graceful)

    def reap_manager_then_workers() -> None:
        supervisor.reap()
        reap_workers()

    def manage_manager_and_workers() -> None:
        supervisor.tick()
        manage_workers()

    arbiter.reap_workers = reap_manager_then_workers  # type: ignore[attr-defined]
    arbiter.manage_workers = manage_manager_and_workers  # type: ignore[attr-defined]
    arbiter.stop = stop_without_restarts  # type: ignore[attr-defined]
