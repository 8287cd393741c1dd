"""The model workers' supervisor: fork them, read their status, reap them, restart a
crashed one with back-off, retire drained ones and stop them all.

A worker is forked from the manager (torch and the handler modules already imported, no
torch op run), reports ``READY`` or ``FAILED reason`` on a status pipe, and dies with the
manager (``PR_SET_PDEATHSIG``); a manager restarted in a run folder first kills whatever
worker of its predecessor is still there (:func:`kill_leftover_workers`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import selectors
import shutil
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from hookserve.config import ServerConfig
from hookserve.manager.publishing import Publisher
from hookserve.manager.registry import ModelVersion, Registry, Worker
from hookserve.plugin_types import DeviceRequest
from hookserve.pluginmanager import Hooks
from hookserve.worker.bootstrap import WorkerSpec, start_worker

log = logging.getLogger("hookserve.manager")

STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 30.0
# A worker that stayed up this long has its restart back-off forgiven.
STABLE_AFTER_S = 60.0
# Frontends read routes.json on every request; this lets requests they routed before a
# retirement was published reach the worker, which then drains them before it exits.
RETIRE_DELAY_S = 0.2


class Supervisor:
    """The workers of every registered version, and the retired ones still draining.

    ``failed_to_load(version, reason)`` is called when a version's first workers cannot load
    it; ``inherited`` are the manager's sockets a forked worker closes; ``stopping`` is set
    when the manager stops (crashed workers are then not restarted).
    """

    def __init__(
        self,
        config: ServerConfig,
        hooks: Hooks,
        registry: Registry,
        routes: Publisher,
        gpu_count: int,
        failed_to_load: Callable[[ModelVersion, str], None],
    ):
        self.config = config
        self.hooks = hooks
        self.registry = registry
        self.routes = routes
        self.gpu_count = gpu_count
        self.failed_to_load = failed_to_load
        self.run_dir = Path(config.run_dir)
        self.selector = selectors.DefaultSelector()
        self.inherited: list[socket.socket] = []
        self.retiring: list[tuple[ModelVersion, Worker]] = []
        self.stopping = False
        self.manager_pid = os.getpid()
        self._socket_counter = 0

    def cleanup_if_idle(self, version: ModelVersion) -> None:
        """Remove a version's extracted files once none of its workers is still draining."""
        if version.owns_model_dir and not any(v is version for v, _ in self.retiring):
            shutil.rmtree(version.archive.model_dir, ignore_errors=True)

    def scale_to(self, version: ModelVersion, count: int) -> None:
        live = version.live()
        for _ in range(len(live), count):
            worker = self.new_worker(version, self._free_index(version))
            version.workers.append(worker)
            self.spawn(version, worker)
        for worker in sorted(live, key=lambda w: w.index)[count:]:
            version.workers.remove(worker)
            self.retire(version, worker, delay=RETIRE_DELAY_S)
        self.routes.dirty = True

    @staticmethod
    def _free_index(version: ModelVersion) -> int:
        used = {w.index for w in version.workers}
        return next(i for i in range(len(used) + 1) if i not in used)

    def retire(self, version: ModelVersion, worker: Worker, delay: float) -> None:
        """Stop routing to a worker, then let it drain what it has and exit."""
        if not worker.pid:
            return
        worker.state = "STOPPING"
        worker.stop_at = time.monotonic() + delay
        self.retiring.append((version, worker))

    def new_worker(self, version: ModelVersion, index: int) -> Worker:
        self._socket_counter += 1
        device = self.hooks.select_device(
            request=DeviceRequest(
                model_name=version.name,
                worker_index=index,
                gpu_count=self.gpu_count,
                device_type=version.archive.config.get("deviceType"),
                device_ids=tuple(version.archive.config.get("deviceIds") or ()),
                number_of_gpu=self.config.number_of_gpu,
            )
        )
        return Worker(
            id=f"{version.name}-{version.version}-{index}",
            index=index,
            device=device,
            # named by manager too: a restarted manager's workers never reuse a dead one's path
            socket_path=str(self.run_dir / f"w{os.getpid()}-{self._socket_counter}.sock"),
        )

    def spawn(self, version: ModelVersion, worker: Worker) -> None:
        if os.path.exists(worker.socket_path):
            os.unlink(worker.socket_path)
        read_fd, write_fd = os.pipe()
        spec = WorkerSpec(
            worker_id=worker.id,
            archive=version.archive,
            socket_path=worker.socket_path,
            gpu_id=worker.gpu_id,
            batch_size=version.settings.batch_size,
            max_batch_delay=version.settings.max_batch_delay,
            torch_threads=self.config.torch_threads,
            busy_poll_s=self.config.busy_poll_s,
            batch_scheduling=self.config.batch_scheduling,
            environment=version.environment,
        )
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            self._become_worker(spec, write_fd)
        os.close(write_fd)
        worker.pid, worker.status_fd, worker.state = pid, read_fd, "STARTING"
        worker.started_at, worker.buffer = time.time(), b""
        self.selector.register(read_fd, selectors.EVENT_READ, (version, worker))
        log.info("model %s: started worker %s pid %d on %s", version.key, worker.id, pid, worker.device)

    def _become_worker(self, spec: WorkerSpec, status_fd: int) -> None:
        """In the forked child: drop the manager's state, run the worker, never return."""
        code = 0
        try:
            die_with_parent(self.manager_pid)
            self.selector.close()
            for inherited in self.inherited:
                inherited.close()
            for _, key in list(self._status_fds()):
                os.close(key)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group; the manager stops workers in order.
            signal.signal(signal.SIGINT, signal.SIG_IGN)

            def report(line: str) -> None:
                os.write(status_fd, line.encode() + b"\n")

            start_worker(spec, self.hooks, report)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the manager must hear it
            code = 1
            message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            try:
                os.write(status_fd, f"FAILED {message}\n".encode())
            except OSError:
                pass
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)

    def _status_fds(self) -> Iterator[tuple[Worker, int]]:
        for version in self.registry.versions():
            for worker in version.workers:
                if worker.status_fd >= 0:
                    yield worker, worker.status_fd
        for _, worker in self.retiring:
            if worker.status_fd >= 0:
                yield worker, worker.status_fd

    def on_status(self, version: ModelVersion, worker: Worker) -> None:
        try:
            chunk = os.read(worker.status_fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(worker.status_fd)
            os.close(worker.status_fd)
            worker.status_fd = -1
            return
        worker.buffer += chunk
        while b"\n" in worker.buffer:
            line, worker.buffer = worker.buffer.split(b"\n", 1)
            text = line.decode(errors="replace")
            if text == "READY" and worker.state == "STARTING":
                worker.state = "READY"
                version.state = "READY"
                log.info("model %s: worker %s ready", version.key, worker.id)
            elif text.startswith("FAILED "):
                self.on_startup_failure(version, worker, text[len("FAILED ") :])
            self.routes.dirty = True

    def on_startup_failure(self, version: ModelVersion, worker: Worker, reason: str) -> None:
        """A worker that cannot load its model will not do better on retry: the version fails
        (unless its siblings loaded: then it is a crash, restarted with back-off)."""
        log.error("model %s: worker %s failed to start: %s", version.key, worker.id, reason)
        worker.last_error = reason
        if version.state != "READY":
            self.failed_to_load(version, reason)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.on_exit(pid, status)

    def on_exit(self, pid: int, status: int) -> None:
        for version, worker in list(self.retiring):
            if worker.pid == pid:
                self.retiring.remove((version, worker))
                worker.pid, worker.state = 0, "DEAD"
                self._close_status(worker)
                log.info("model %s: worker %s stopped (%s)", version.key, worker.id, describe_exit(status))
                if not self.registry.holds(version):
                    self.cleanup_if_idle(version)
                self.routes.dirty = True
                return
        for version in self.registry.versions():
            for worker in version.workers:
                if worker.pid == pid:
                    self._on_crash(version, worker, pid, status)
                    return

    def _on_crash(self, version: ModelVersion, worker: Worker, pid: int, status: int) -> None:
        worker.pid = 0  # reaped: never signal that pid again
        if not self.stopping:
            # its last words first (READY, or FAILED with the reason), when they are still unread
            while worker.status_fd >= 0 and select.select([worker.status_fd], [], [], 0)[0]:
                self.on_status(version, worker)
        loading = worker.state == "STARTING"
        worker.state = "DEAD"
        if not worker.last_error or not loading:
            worker.last_error = f"the worker exited with {describe_exit(status)}"
        self.routes.dirty = True
        if self.stopping or not self.registry.holds(version):
            return
        if loading and version.state != "READY":
            # died loading without a word (os._exit, a signal): no better on retry, like FAILED
            self.on_startup_failure(
                version, worker, f"the worker exited while loading the model: {describe_exit(status)}"
            )
            return
        if time.time() - worker.started_at > STABLE_AFTER_S:
            worker.restarts = 0
        delay = min(MAX_BACKOFF_S, 0.5 * 2**worker.restarts)
        worker.restarts += 1
        worker.restart_at = time.monotonic() + delay
        log.warning(
            "model %s: worker %s (pid %d) exited with %s; restarting in %.1f s",
            version.key,
            worker.id,
            pid,
            describe_exit(status),
            delay,
        )

    def _close_status(self, worker: Worker) -> None:
        if worker.status_fd >= 0:
            self.selector.unregister(worker.status_fd)
            os.close(worker.status_fd)
            worker.status_fd = -1

    def tick(self) -> None:
        """Time-driven work: restarts that are due, retirements, start-up deadlines."""
        now = time.monotonic()
        for version in self.registry.versions():
            for worker in version.workers:
                if worker.state == "DEAD" and worker.restart_at and now >= worker.restart_at:
                    worker.restart_at = 0.0
                    self.spawn(version, worker)
                elif worker.state == "STARTING" and time.time() - worker.started_at > version.settings.startup_timeout:
                    send_signal(worker.pid, signal.SIGKILL)
                    self.on_startup_failure(
                        version,
                        worker,
                        f"model did not load within startupTimeout={version.settings.startup_timeout}s",
                    )
        for _, worker in self.retiring:
            if worker.stop_at and now >= worker.stop_at:
                worker.stop_at = 0.0
                send_signal(worker.pid, signal.SIGTERM)

    def stop_all(self) -> None:
        pids = [w.pid for v in self.registry.versions() for w in v.workers if w.pid] + [
            w.pid for _, w in self.retiring if w.pid
        ]
        for pid in pids:
            send_signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        remaining = set(pids)
        while remaining and time.monotonic() < deadline:
            for pid in list(remaining):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    remaining.discard(pid)
            time.sleep(0.02)
        for pid in remaining:
            send_signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        log.info("all model workers stopped")


PR_SET_PDEATHSIG = 1
# loaded once in the manager, not in every forked worker
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def die_with_parent(parent: int) -> None:
    """In a forked worker: be killed when the manager dies, whichever way it dies."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)


def kill_leftover_workers(run_dir: Path) -> list[int]:
    """SIGKILL the processes of a previous manager of this run folder that still live.

    Its workers were forked from it, so they carry its command line
    (``python -m hookserve.manager RUN_DIR MASTER_PID``), which names this run folder.
    """
    me, mine = os.getpid(), os.getuid()
    needle = os.fsencode(str(run_dir))
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{pid}").st_uid != mine:
                continue
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hookserve.manager" in args and needle in args:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    if killed:
        log.warning("killed %d process(es) left by the previous manager: %s", len(killed), killed)
    return killed


def send_signal(pid: int, sig: int) -> None:
    """Signal a worker that may have exited meanwhile (0: one never started or already reaped)."""
    if pid:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"
