"""The model manager: opens archives, forks model workers and keeps them alive.

It runs as its own process (``python -m hookserve.manager RUN_DIR``), started by the
gunicorn master. It imports torch and the handler modules once and runs no torch op, so a
forked worker starts in milliseconds and shares those pages with its siblings; CUDA is only
ever initialised inside a worker.

The manager is single-threaded (forking from a threaded process is unsafe). It publishes
what frontends need in ``RUN_DIR/routes.json`` (replaced atomically): each model version,
its settings and its workers with their sockets and states.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from hookserve.archive import ModelArchive, archive_stem, open_archive
from hookserve.config import ServerConfig
from hookserve.errors import HookserveError
from hookserve.plugin_types import DeviceRequest
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.worker import WorkerSpec, start_worker

log = logging.getLogger("hookserve.manager")

ROUTES_FILE = "routes.json"
STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 30.0
# A worker that stayed up this long has its restart back-off forgiven.
STABLE_AFTER_S = 60.0


@dataclass
class Worker:
    id: str
    index: int
    device: str
    socket_path: str
    pid: int = 0
    status_fd: int = -1
    state: str = "STARTING"  # STARTING, READY, DEAD
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float = 0.0
    buffer: bytes = b""

    @property
    def gpu_id(self) -> int | None:
        return int(self.device.split(":", 1)[1]) if self.device.startswith("cuda:") else None


@dataclass
class ModelVersion:
    archive: ModelArchive
    min_workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int
    startup_timeout_s: int
    workers: list[Worker] = field(default_factory=list)
    state: str = "LOADING"  # LOADING, READY, FAILED
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.archive.name}/{self.archive.version}"


def model_settings(archive: ModelArchive, config: ServerConfig, gpu_count: int) -> dict:
    """Archive ``model-config.yaml`` over server defaults (API parameters come later)."""
    yaml = archive.config
    return {
        "min_workers": int(yaml.get("minWorkers", config.workers_per_model(gpu_count))),
        "batch_size": int(yaml.get("batchSize", config.batch_size)),
        "max_batch_delay_ms": int(yaml.get("maxBatchDelay", config.max_batch_delay_ms)),
        "response_timeout_s": int(yaml.get("responseTimeout", config.response_timeout_s)),
        "startup_timeout_s": int(yaml.get("startupTimeout", config.startup_timeout_s)),
    }


def visible_gpu_count() -> int:
    import torch

    # device_count() asks NVML / the driver without initialising CUDA in this process.
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class ModelManager:
    def __init__(self, config: ServerConfig, hooks: Hooks):
        self.config = config
        self.hooks = hooks
        self.run_dir = Path(config.run_dir)
        self.models: dict[str, dict[str, ModelVersion]] = {}
        self.defaults: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.selector = selectors.DefaultSelector()
        self.gpu_count = visible_gpu_count()
        self.stopping = False
        self.parent_pid = os.getppid()
        self._socket_counter = 0
        self._routes_dirty = True

    # --- loading ---------------------------------------------------------------------

    def model_sources(self) -> list[tuple[str | None, str]]:
        store = Path(self.config.model_store) if self.config.model_store else None
        sources = []
        for spec in self.config.models:
            if spec.source == "all" and spec.name is None and store:
                sources += [(None, str(p)) for p in sorted(store.iterdir()) if not p.name.startswith(".")]
                continue
            path = Path(spec.source)
            if not path.is_absolute() and store and (store / path).exists():
                path = store / path
            sources.append((spec.name, str(path)))
        return sources

    def load_startup_models(self) -> None:
        extract_root = self.run_dir / "models"
        extract_root.mkdir(exist_ok=True)
        for name, source in self.model_sources():
            try:
                archive = open_archive(source, extract_root, model_name=name)
            except HookserveError as exc:
                log.error("model archive %s not loaded: %s", source, exc.message)
                self.failed[name or archive_stem(Path(source))] = exc.message
                continue
            self.add_model(archive)
        self.publish()

    def add_model(self, archive: ModelArchive) -> ModelVersion:
        version = ModelVersion(archive, **model_settings(archive, self.config, self.gpu_count))
        self.models.setdefault(archive.name, {})[archive.version] = version
        self.defaults.setdefault(archive.name, archive.version)
        for index in range(version.min_workers):
            worker = self.new_worker(version, index)
            version.workers.append(worker)
            self.spawn(version, worker)
        self._routes_dirty = True
        return version

    def new_worker(self, version: ModelVersion, index: int) -> Worker:
        self._socket_counter += 1
        device = self.hooks.select_device(
            request=DeviceRequest(
                model_name=version.archive.name,
                worker_index=index,
                gpu_count=self.gpu_count,
                device_type=version.archive.config.get("deviceType"),
                device_ids=tuple(version.archive.config.get("deviceIds") or ()),
                number_of_gpu=self.config.number_of_gpu,
            )
        )
        return Worker(
            id=f"{version.archive.name}-{version.archive.version}-{index}",
            index=index,
            device=device,
            socket_path=str(self.run_dir / f"w{self._socket_counter}.sock"),
        )

    # --- processes -------------------------------------------------------------------

    def spawn(self, version: ModelVersion, worker: Worker) -> None:
        if os.path.exists(worker.socket_path):
            os.unlink(worker.socket_path)
        read_fd, write_fd = os.pipe()
        spec = WorkerSpec(
            worker_id=worker.id,
            archive=version.archive,
            socket_path=worker.socket_path,
            gpu_id=worker.gpu_id,
            batch_size=version.batch_size,
            max_batch_delay_ms=version.max_batch_delay_ms,
            torch_threads=self.config.torch_threads,
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
            self.selector.close()
            for fd in [w.status_fd for v in self.versions() for w in v.workers if w.status_fd >= 0]:
                os.close(fd)
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

    def versions(self) -> list[ModelVersion]:
        return [v for versions in self.models.values() for v in versions.values()]

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
            if text == "READY":
                worker.state = "READY"
                version.state = "READY"
                log.info("model %s: worker %s ready", version.key, worker.id)
            elif text.startswith("FAILED "):
                self.on_startup_failure(version, worker, text[len("FAILED ") :])
            self._routes_dirty = True

    def on_startup_failure(self, version: ModelVersion, worker: Worker, reason: str) -> None:
        """A worker that cannot load its model will not do better on retry: fail the model."""
        log.error("model %s: worker %s failed to start: %s", version.key, worker.id, reason)
        if version.state == "READY":
            return  # a sibling loaded fine; treat this like a crash (restarted on reap)
        version.state, version.error = "FAILED", reason
        for other in version.workers:
            if other.pid and other.state != "DEAD":
                self._signal(other.pid, signal.SIGKILL)

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
        for version in self.versions():
            for worker in version.workers:
                if worker.pid != pid:
                    continue
                worker.state, worker.pid = "DEAD", 0
                self._routes_dirty = True
                if self.stopping:
                    return
                if version.state == "FAILED":
                    self._drop_failed(version)
                    return
                ran = time.time() - worker.started_at
                if ran > STABLE_AFTER_S:
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
                return

    def _drop_failed(self, version: ModelVersion) -> None:
        if any(w.state != "DEAD" for w in version.workers):
            return
        name = version.archive.name
        self.failed[name] = version.error or "failed"
        versions = self.models.get(name, {})
        versions.pop(version.archive.version, None)
        if not versions:
            self.models.pop(name, None)
            self.defaults.pop(name, None)
        elif self.defaults.get(name) == version.archive.version:
            self.defaults[name] = next(iter(versions))

    def restart_due(self) -> None:
        now = time.monotonic()
        for version in self.versions():
            for worker in version.workers:
                if worker.state == "DEAD" and worker.restart_at and now >= worker.restart_at:
                    worker.restart_at = 0.0
                    self.spawn(version, worker)
                elif worker.state == "STARTING" and time.time() - worker.started_at > version.startup_timeout_s:
                    self.on_startup_failure(
                        version, worker, f"model did not load within startupTimeout={version.startup_timeout_s}s"
                    )
                    self._signal(worker.pid, signal.SIGKILL)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    # --- routes ----------------------------------------------------------------------

    def routes(self) -> dict:
        models = {}
        for name, versions in self.models.items():
            models[name] = {
                "default": self.defaults[name],
                "versions": {
                    number: {
                        "state": v.state,
                        "min_workers": v.min_workers,
                        "batch_size": v.batch_size,
                        "max_batch_delay_ms": v.max_batch_delay_ms,
                        "response_timeout_s": v.response_timeout_s,
                        "workers": [
                            {"id": w.id, "pid": w.pid, "state": w.state, "device": w.device, "socket": w.socket_path}
                            for w in v.workers
                        ],
                    }
                    for number, v in versions.items()
                },
            }
        return {"models": models, "failed": self.failed}

    def publish(self) -> None:
        path = self.run_dir / ROUTES_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.routes()))
        os.replace(tmp, path)
        self._routes_dirty = False

    # --- main loop -------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        self.load_startup_models()
        while not self.stopping:
            for key, _ in self.selector.select(timeout=0.05):
                self.on_status(*key.data)
            self.reap()
            self.restart_due()
            if self._routes_dirty:
                self.publish()
            if os.getppid() != self.parent_pid:
                log.warning("the gunicorn master is gone; stopping")
                self.stopping = True
        self.stop_workers()

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def stop_workers(self) -> None:
        pids = [w.pid for v in self.versions() for w in v.workers if w.pid]
        for pid in pids:
            self._signal(pid, signal.SIGTERM)
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
            self._signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        log.info("all model workers stopped")


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def preload_worker_modules() -> None:
    """Import what every worker needs before any fork, so workers share it."""
    import hookserve.handlers.base_handler  # noqa: F401
    import torch  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [manager] %(levelname)s %(name)s: %(message)s")
    config = ServerConfig.load(argv[0] if argv else None)
    preload_worker_modules()
    pm = create_plugin_manager(disabled=config.disabled_plugins, strict=config.strict_plugins)
    ModelManager(config, Hooks(pm)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
