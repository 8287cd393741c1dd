"""The model manager: the registry of models and versions, and the model worker processes.

It runs as its own process (``python -m hookserve.manager RUN_DIR``), started by the
gunicorn master. It imports torch and the handler modules once and runs no torch op, so a
forked worker starts in milliseconds and shares those pages with its siblings; CUDA is only
ever initialised inside a worker.

The manager is single-threaded (forking from a threaded process is unsafe): one selector
loop watches the workers' status pipes and the control socket, reaps exited workers,
restarts crashed ones with back-off and retires drained ones. It publishes what frontends
need in ``RUN_DIR/routes.json`` (replaced atomically; first once its control socket listens
and its start-up models are registered, marked ``ready``) and, after every management
change, the snapshot a restarted server restores plus ``RUN_DIR/state.json``, the same
registry for a manager that the master restarts within this run (see ``recover``).

Model workers die with their manager (``PR_SET_PDEATHSIG``); a manager restarted in a run
folder first kills whatever worker of its predecessor is still there.
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
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from hookserve.archive.reading import ModelArchive, archive_stem
from hookserve.config import ServerConfig
from hookserve.errors import (
    BadRequest,
    Conflict,
    HookserveError,
    InvalidModelVersion,
    ModelNotFound,
    ModelVersionNotFound,
    PluginError,
)
from hookserve.manager.limits import (
    WorkerBounds,
    check_memory,
    estimated_worker_bytes,
    private_bytes,
    strict_int,
)
from hookserve.manager.model_sources import check_registration, model_settings, open_model, validate_name
from hookserve.manager.snapshot import read_run_state, read_snapshot, write_run_state, write_snapshot
from hookserve.plugin_types import DeviceRequest
from hookserve.pluginmanager import Hooks, create_plugin_manager
from hookserve.tuning.garbage_collection import settle_heap
from hookserve.wire.control import CONTROL_SOCKET, DEFAULT_CALL_TIMEOUT_S, ControlServerSide
from hookserve.worker.bootstrap import WorkerSpec, start_worker

log = logging.getLogger("hookserve.manager")

ROUTES_FILE = "routes.json"
STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 30.0
# A worker that stayed up this long has its restart back-off forgiven.
STABLE_AFTER_S = 60.0
# Frontends read routes.json on every request; this lets requests they routed before a
# retirement was published reach the worker, which then drains them before it exits.
RETIRE_DELAY_S = 0.2
# A synchronous call waits for its workers this much longer than startupTimeout (a worker
# killed at startupTimeout is reported, not waited for again), and always answers before
# the frontend gives up on the control call.
WAIT_SLACK_S = 2.0
WAIT_MARGIN_S = 10.0


@dataclass
class Worker:
    id: str
    index: int
    device: str
    socket_path: str
    pid: int = 0
    status_fd: int = -1
    state: str = "STARTING"  # STARTING, READY, DEAD, STOPPING
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float = 0.0
    stop_at: float = 0.0
    buffer: bytes = b""
    last_error: str = ""

    @property
    def gpu_id(self) -> int | None:
        return int(self.device.split(":", 1)[1]) if self.device.startswith("cuda:") else None


@dataclass
class Waiter:
    """A synchronous management call that is answered when its workers are settled."""

    conn: ControlServerSide
    success: str
    since: float = 0.0
    deadline: float = float("inf")


@dataclass
class ModelVersion:
    archive: ModelArchive
    url: str
    settings: dict
    loaded_at_startup: bool = False
    workers: list[Worker] = field(default_factory=list)
    state: str = "LOADING"  # LOADING, READY, FAILED
    error: str | None = None
    waiters: list[Waiter] = field(default_factory=list)
    owns_model_dir: bool = True
    # taken over from a manager that died: a failure to load it again is reported, not dropped
    recovered: bool = False

    @property
    def name(self) -> str:
        return self.archive.name

    @property
    def version(self) -> str:
        return self.archive.version

    @property
    def key(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def target(self) -> int:
        return self.settings["min_workers"]

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.state != "STOPPING"]

    def settled(self) -> bool:
        return (
            not any(w.state == "STOPPING" for w in self.workers)
            and len(self.workers) == self.target
            and all(w.state == "READY" for w in self.workers)
        )


# Files that exist when a GPU driver torch could use is installed (NVIDIA, or AMD's ROCm).
GPU_DRIVER_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")
# Run in a short-lived interpreter: torch counts the GPUs a worker will see (it honours
# CUDA_VISIBLE_DEVICES), through NVML rather than the CUDA runtime.
GPU_PROBE = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
GPU_PROBE_TIMEOUT_S = 120


def gpu_driver_present() -> bool:
    return any(os.path.exists(path) for path in GPU_DRIVER_FILES)


def visible_gpu_count() -> int:
    """The GPUs a worker will see, counted without calling into ``torch.cuda`` here.

    The manager forks workers, and a CUDA context (or even the driver state that
    ``torch.cuda.is_available()`` sets up when it falls back to ``cudaGetDeviceCount``)
    cannot be used by a forked child. Without a GPU driver the answer is 0 at once;
    with one, a short-lived subprocess asks torch (with NVML-based checks) and exits.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if (visible is not None and visible.strip() in ("", "-1")) or not gpu_driver_present():
        return 0
    env = dict(os.environ, PYTORCH_NVML_BASED_CUDA_CHECK="1")
    try:
        probe = subprocess.run(
            [sys.executable, "-c", GPU_PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=GPU_PROBE_TIMEOUT_S,
            check=True,
        )
        return int(probe.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        log.error("cannot count the GPUs (workers run on CPU): %s", str(detail).strip()[-500:])
        return 0


class ModelManager:
    def __init__(self, config: ServerConfig, hooks: Hooks, parent_pid: int):
        self.config = config
        self.hooks = hooks
        self.run_dir = Path(config.run_dir)
        self.extract_root = self.run_dir / "models"
        self.models: dict[str, dict[str, ModelVersion]] = {}
        self.defaults: dict[str, str] = {}
        self.failed: dict[str, str] = {}
        self.retiring: list[tuple[ModelVersion, Worker]] = []
        self.selector = selectors.DefaultSelector()
        self.gpu_count = visible_gpu_count()
        self.bounds = WorkerBounds.from_config(config, self.gpu_count)
        self.stopping = False
        self.parent_pid = parent_pid
        self.parent_manager_pid = os.getpid()
        self._socket_counter = 0
        self._routes_dirty = True
        self.ready_since = time.time()
        self.control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    # --- registry --------------------------------------------------------------------

    def versions(self) -> list[ModelVersion]:
        return [v for versions in self.models.values() for v in versions.values()]

    def find(self, name: str, version: str | None) -> ModelVersion:
        versions = self.models.get(name)
        if not versions:
            raise ModelNotFound(f"Model not found: {name}")
        number = version or self.defaults[name]
        found = versions.get(number)
        if found is None:
            raise ModelVersionNotFound(f"Model version: {number} does not exist for model: {name}")
        return found

    def add_version(
        self, archive: ModelArchive, url: str, settings: dict, *, at_startup: bool, workers: int
    ) -> ModelVersion:
        version = ModelVersion(archive, url, settings, loaded_at_startup=at_startup)
        version.owns_model_dir = Path(archive.model_dir).is_relative_to(self.extract_root)
        self.models.setdefault(archive.name, {})[archive.version] = version
        self.failed.pop(archive.name, None)  # loaded again under that name: no longer a failure
        self.defaults.setdefault(archive.name, archive.version)
        version.settings["min_workers"] = workers
        version.settings["max_workers"] = max(version.settings["max_workers"], workers)
        self.scale_to(version, workers)
        if workers == 0:
            version.state = "READY"
        self._routes_dirty = True
        return version

    def remove_version(self, version: ModelVersion) -> None:
        """Take a version out of the registry; its workers drain and exit, then its files go."""
        versions = self.models.get(version.name, {})
        versions.pop(version.version, None)
        if not versions:
            self.models.pop(version.name, None)
            self.defaults.pop(version.name, None)
        elif self.defaults.get(version.name) == version.version:
            self.defaults[version.name] = next(iter(versions))
        for worker in version.workers:
            self.retire(version, worker, delay=RETIRE_DELAY_S if version.state == "READY" else 0.0)
        version.workers = []
        gone = HookserveError(
            f"Model {version.name} version {version.version} was unregistered before its workers were ready",
        )
        for waiter in version.waiters:
            waiter.conn.fail(gone)
        version.waiters = []
        self._routes_dirty = True
        self._cleanup_if_idle(version)

    def discard(self, archive: ModelArchive) -> None:
        """Drop an archive opened for nothing: its extracted copy, never a folder used in place."""
        if Path(archive.model_dir).is_relative_to(self.extract_root):
            shutil.rmtree(archive.model_dir, ignore_errors=True)

    def _cleanup_if_idle(self, version: ModelVersion) -> None:
        if version.owns_model_dir and not any(v is version for v, _ in self.retiring):
            shutil.rmtree(version.archive.model_dir, ignore_errors=True)

    # --- loading ---------------------------------------------------------------------

    def open_model(
        self, url: str, name: str | None, handler: str | None = None, *, trusted: bool = False
    ) -> ModelArchive:
        return open_model(url, self.config, self.extract_root, name, handler, trusted=trusted)

    def load_startup_models(self) -> None:
        # a previous manager of this run may have left extracted archives: none is in use now
        shutil.rmtree(self.extract_root, ignore_errors=True)
        self.extract_root.mkdir()
        if self.recover():
            return
        restored = self.restore_snapshot()
        store = Path(self.config.model_store) if self.config.model_store else None
        for spec in self.config.models:
            if spec.source == "all" and spec.name is None and store:
                sources = [(None, p.name) for p in sorted(store.iterdir()) if not p.name.startswith(".")]
            else:
                sources = [(spec.name, spec.source)]
            for name, source in sources:
                self.load_startup_model(source, name, restored)
        self.ready_since = time.time()
        self.changed(snapshot=False)

    def recover(self) -> bool:
        """Take over the registry of a manager that died in this run folder, if there was one.

        The run state (``RUN_DIR/state.json``) is this run's registry as last changed,
        written whether or not the snapshot is enabled: ``--no-snapshot`` is about what a
        new server starts with, not about a running server forgetting its models. Start-up
        models that failed stay reported as failed; they are not tried again.
        """
        state = read_run_state(self.run_dir)
        if state is None:
            return False
        log.warning("restarting after a manager that died: restoring %d model(s) of this run", len(state["models"]))
        self.failed.update(state.get("failed", {}))
        self.restore(state["models"], recovered=True)
        self.ready_since = time.time()
        self.changed(snapshot=False)
        return True

    def load_startup_model(self, source: str, name: str | None, restored: set[str]) -> None:
        try:
            archive = self.open_model(source, name, trusted=True)
        except HookserveError as exc:
            log.error("model archive %s not loaded: %s", source, exc.message)
            self.failed[name or archive_stem(Path(source))] = exc.message
            return
        if archive.name in restored:
            log.info("model %s comes from the snapshot; --models entry %s skipped", archive.name, source)
            self.discard(archive)
            return
        if archive.version in self.models.get(archive.name, {}):
            log.error("model %s version %s is given twice at start; %s skipped", archive.name, archive.version, source)
            self.discard(archive)
            return
        try:
            settings = model_settings(archive, self.config, self.gpu_count, {})
            self.check_workers(archive.name, None, settings["min_workers"], archive)
        except HookserveError as exc:
            log.error("model %s (%s) not loaded: %s", archive.name, source, exc.message)
            self.failed[archive.name] = exc.message
            self.discard(archive)
            return
        self.add_version(archive, source, settings, at_startup=True, workers=settings["min_workers"])

    def restore_snapshot(self) -> set[str]:
        folder = self.config.snapshot_folder()
        snapshot = read_snapshot(folder) if folder else None
        if not snapshot:
            return set()
        log.info("restoring %d model(s) from the snapshot in %s", len(snapshot), folder)
        self.restore(snapshot)
        return set(snapshot)

    def restore(self, models: dict, recovered: bool = False) -> None:
        """Register saved models (snapshot, or this run's state when ``recovered``), with their
        versions, defaults and workers. From a snapshot every model counts as loaded at start-up;
        a recovered one keeps what it was."""
        for name, entry in models.items():
            for number, saved in entry["versions"].items():
                try:
                    archive = self.open_model(saved["url"], name, saved.get("handler"), trusted=True)
                except HookserveError as exc:
                    log.error("snapshot model %s version %s not restored: %s", name, number, exc.message)
                    self.failed[name] = exc.message
                    continue
                workers = self.bounded_restore(name, number, saved["settings"]["min_workers"])
                version = self.add_version(
                    archive,
                    saved["url"],
                    dict(saved["settings"]),
                    at_startup=saved.get("loaded_at_startup", True) if recovered else True,
                    workers=workers,
                )
                version.recovered = recovered
            if entry.get("default") in self.models.get(name, {}):
                self.defaults[name] = entry["default"]

    def bounded_restore(self, name: str, number: str, saved: int) -> int:
        """A snapshot's worker count, cut to the worker bounds: a snapshot written before
        the bounds (or under higher ones) must not fork past them at start."""
        others = sum(v.target for v in self.versions())
        allowed = max(0, min(saved, self.bounds.per_model, self.bounds.total - others))
        if allowed < saved:
            log.error(
                "snapshot model %s version %s: %d workers cut to %d (limits: %d per model, --max-workers-per-model; "
                "%d in all, --max-workers)",
                name, number, saved, allowed, self.bounds.per_model, self.bounds.total,
            )  # fmt: skip
        return allowed

    # --- management operations (from the control socket) -------------------------------

    def handle_control(self, conn: ControlServerSide, message: dict) -> None:
        op = message.get("op")
        handler = getattr(self, f"op_{op}", None)
        try:
            if handler is None:
                raise BadRequest(f"unknown control operation {op!r}")
            handler(conn, message)
        except HookserveError as exc:
            conn.fail(exc)
        except Exception as exc:  # noqa: BLE001 - a bad request must not take the manager down
            log.exception("control operation %s failed", op)
            conn.fail(HookserveError(f"{type(exc).__name__}: {exc}"))

    def op_register(self, conn: ControlServerSide, message: dict) -> None:
        url, name = message.get("url"), message.get("model_name")
        check_registration(url, name, message.get("runtime"))
        archive = self.open_model(url, name, message.get("handler"))
        try:
            validate_name("model version", archive.version)
        except BadRequest:
            self.discard(archive)
            raise
        if archive.version in self.models.get(archive.name, {}):
            self.discard(archive)
            raise Conflict(
                f"Model version {archive.version} for model {archive.name} already registered.",
            )
        try:
            settings = model_settings(archive, self.config, self.gpu_count, message)
            workers = message.get("initial_workers")
            workers = settings["min_workers"] if workers is None else worker_count("initial_workers", workers)
            self.check_workers(archive.name, None, workers, archive)
        except HookserveError:
            self.discard(archive)
            raise
        version = self.add_version(archive, url, settings, at_startup=False, workers=workers)
        done = f'Model "{archive.name}" Version: {archive.version} registered with {workers} initial workers'
        if workers == 0:  # TorchServe's answer, synchronous or not
            self.changed()
            conn.answer(200, {"status": f"{done}. Use scale workers API to add workers for the model."})
            return
        self._answer_or_wait(conn, version, message, done)

    def op_scale(self, conn: ControlServerSide, message: dict) -> None:
        version = self.find(message["model"], message.get("version"))
        given_low, given_high = message.get("min_worker"), message.get("max_worker")
        low = version.target if given_low is None else worker_count("min_worker", given_low)
        if given_high is None:
            high = max(low, version.settings["max_workers"])
        else:
            high = worker_count("max_worker", given_high)
        if high < low:
            raise BadRequest(f"Parameter max_worker={high} is less than min_worker={low}")
        self.check_workers(version.name, version, low, version.archive)
        version.settings.update(min_workers=low, max_workers=high)
        self.scale_to(version, low)
        done = f"Workers scaled to {low} for model: {version.name}"
        if message.get("version"):  # TorchServe names the version only when the path did
            done += f", version: {version.version}"
        self._answer_or_wait(conn, version, message, done)

    def op_set_default(self, conn: ControlServerSide, message: dict) -> None:
        version = self.find(message["model"], message["version"])
        self.defaults[version.name] = version.version
        self.changed()
        conn.answer(
            200, {"status": f'Default version successfully updated for model "{version.name}" to "{version.version}"'}
        )

    def op_unregister(self, conn: ControlServerSide, message: dict) -> None:
        name = message["model"]
        if name in self.failed and name not in self.models:
            # a start-up model that failed to load: forgetting it is how /ping stops reporting it
            del self.failed[name]
            self.changed()
            conn.answer(200, {"status": f'Model "{name}" unregistered'})
            return
        version = self.find(message["model"], message.get("version"))
        if self.defaults[version.name] == version.version and len(self.models[version.name]) > 1:
            raise InvalidModelVersion(
                f"Cannot remove default version {version.version} for model {version.name}; "
                "set another version as default first",
            )
        self.remove_version(version)
        self.changed()
        conn.answer(200, {"status": f'Model "{version.name}" unregistered'})

    def op_worker_timeout(self, conn: ControlServerSide, message: dict) -> None:
        """A frontend gave up on a request: replace the worker that holds it."""
        for version in self.versions():
            for worker in version.workers:
                if worker.socket_path == message["socket"] and worker.pid:
                    log.warning("model %s: worker %s exceeded responseTimeout; replacing it", version.key, worker.id)
                    self._signal(worker.pid, signal.SIGKILL)
        conn.answer(200, {"status": "ok"})

    def check_workers(self, name: str, version: ModelVersion | None, count: int, archive: ModelArchive) -> None:
        """Refuse ``count`` workers for a version (``None``: a new one) past the worker
        bounds (400) or beyond the memory the machine has now (507)."""
        others = sum(v.target for v in self.versions() if v is not version)
        live = version.live() if version else []
        measured = max((private_bytes(w.pid) for w in live if w.pid and w.state == "READY"), default=0)
        per_worker = measured or estimated_worker_bytes(archive.model_dir, archive.serialized_file)
        if version is None or count > version.target:  # fewer workers are always allowed
            self.bounds.check(name, count, others)
        check_memory(name, count - len(live), per_worker, measured=bool(measured))

    def _answer_or_wait(self, conn: ControlServerSide, version: ModelVersion, message: dict, done: str) -> None:
        self.changed()
        if str(message.get("synchronous", "true")).lower() == "false":
            conn.answer(202, {"status": "Processing worker updates..."})
        elif version.settled():
            conn.answer(200, {"status": done})
        else:
            now = time.monotonic()
            wait = min(version.settings["startup_timeout_s"] + WAIT_SLACK_S, DEFAULT_CALL_TIMEOUT_S - WAIT_MARGIN_S)
            version.waiters.append(Waiter(conn, done, since=now, deadline=now + wait))

    def settle_waiters(self) -> None:
        now = time.monotonic()
        for version in self.versions():
            if version.waiters and version.settled():
                for waiter in version.waiters:
                    waiter.conn.answer(200, {"status": waiter.success})
                version.waiters = []
            elif any(w.deadline <= now for w in version.waiters):
                late = [w for w in version.waiters if w.deadline <= now]
                version.waiters = [w for w in version.waiters if w.deadline > now]
                for waiter in late:
                    waiter.conn.fail(self.unsettled_error(version, now - waiter.since))

    def unsettled_error(self, version: ModelVersion, waited: float) -> HookserveError:
        """Why a synchronous call's workers are not all up: how many are, and what failed."""
        live = version.live()
        ready = sum(w.state == "READY" for w in live)
        loading = sum(w.state == "STARTING" for w in live)
        failed = [w for w in live if w.state == "DEAD"]
        parts = [
            f"{ready} of {version.target} workers of model {version.name} version {version.version} are ready "
            f"after {waited:.0f} s (startupTimeout={version.settings['startup_timeout_s']}s)"
        ]
        if loading:
            parts.append(f"{loading} still loading")
        if failed:
            parts.append(f"{len(failed)} waiting to restart after a failure")
        draining = sum(w.state == "STOPPING" for w in version.workers)
        if draining:
            parts.append(f"{draining} retired workers still finishing their requests")
        reasons = sorted({w.last_error for w in live if w.state != "READY" and w.last_error})
        if reasons:
            parts.append(f"failures so far: {', '.join(reasons)}")
        parts.append(
            f"the target stays {version.target} and the manager keeps trying; "
            f"GET /models/{version.name} shows the workers, PUT min_worker changes the target"
        )
        return HookserveError("; ".join(parts))

    def changed(self, snapshot: bool = True) -> None:
        """A management change: routes now (before the caller is answered), then the run
        state and (unless told not to, or disabled) the snapshot."""
        self.publish()
        try:
            write_run_state(self.run_dir, self.snapshot(), self.failed)
        except OSError as exc:
            log.error("cannot write the run state in %s: %s", self.run_dir, exc)
        folder = self.config.snapshot_folder() if snapshot else None
        if folder is not None:
            try:
                write_snapshot(folder, self.snapshot())
            except OSError as exc:
                # the change itself is made and must be reported as made; a restart will miss it
                log.error("cannot write the snapshot in %s: %s", folder, exc)

    def snapshot(self) -> dict:
        return {
            name: {
                "default": self.defaults[name],
                "versions": {
                    number: {
                        "url": v.url,
                        "handler": v.archive.handler,
                        "settings": v.settings,
                        "loaded_at_startup": v.loaded_at_startup,
                    }
                    for number, v in versions.items()
                },
            }
            for name, versions in self.models.items()
        }

    # --- workers ---------------------------------------------------------------------

    def scale_to(self, version: ModelVersion, count: int) -> None:
        live = version.live()
        for _ in range(len(live), count):
            worker = self.new_worker(version, self._free_index(version))
            version.workers.append(worker)
            self.spawn(version, worker)
        for worker in sorted(live, key=lambda w: w.index)[count:]:
            version.workers.remove(worker)
            self.retire(version, worker, delay=RETIRE_DELAY_S)
        self._routes_dirty = True

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
            batch_size=version.settings["batch_size"],
            max_batch_delay_ms=version.settings["max_batch_delay_ms"],
            torch_threads=self.config.torch_threads,
            busy_poll_s=self.config.busy_poll_s,
            batch_scheduling=self.config.batch_scheduling,
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
            die_with_parent(self.parent_manager_pid)
            self.selector.close()
            self.control.close()
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

    def _status_fds(self):
        for version in self.versions():
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
            self._routes_dirty = True

    def on_startup_failure(self, version: ModelVersion, worker: Worker, reason: str) -> None:
        """A worker that cannot load its model will not do better on retry: fail the version."""
        log.error("model %s: worker %s failed to start: %s", version.key, worker.id, reason)
        worker.last_error = reason
        if version.state == "READY":
            return  # its siblings loaded: treated like a crash, restarted with back-off
        version.state, version.error = "FAILED", reason
        error = HookserveError(f"Failed to load model {version.name} version {version.version}: {reason}")
        if version.loaded_at_startup or version.recovered:
            self.failed[version.name] = reason
        waiters, version.waiters = version.waiters, []
        if self.models.get(version.name, {}).get(version.version) is version:
            self.remove_version(version)
            self.changed()
        # answered after the routes no longer show it: the caller's next request must not
        for waiter in waiters:
            waiter.conn.fail(error)

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
                if self.models.get(version.name, {}).get(version.version) is not version:
                    self._cleanup_if_idle(version)
                self._routes_dirty = True
                return
        for version in self.versions():
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
        self._routes_dirty = True
        if self.stopping or self.models.get(version.name, {}).get(version.version) is not version:
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
        for version in self.versions():
            for worker in version.workers:
                if worker.state == "DEAD" and worker.restart_at and now >= worker.restart_at:
                    worker.restart_at = 0.0
                    self.spawn(version, worker)
                elif (
                    worker.state == "STARTING"
                    and time.time() - worker.started_at > version.settings["startup_timeout_s"]
                ):
                    self._signal(worker.pid, signal.SIGKILL)
                    self.on_startup_failure(
                        version,
                        worker,
                        f"model did not load within startupTimeout={version.settings['startup_timeout_s']}s",
                    )
        for _, worker in self.retiring:
            if worker.stop_at and now >= worker.stop_at:
                worker.stop_at = 0.0
                self._signal(worker.pid, signal.SIGTERM)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        if pid:
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
                "versions": {number: self._route(v) for number, v in versions.items()},
            }
        manager = {"state": "ready", "pid": os.getpid(), "since": self.ready_since}
        return {"models": models, "failed": self.failed, "manager": manager}

    @staticmethod
    def _route(v: ModelVersion) -> dict:
        return {
            "state": v.state,
            "url": v.url,
            "runtime": v.archive.runtime or "python",
            "loaded_at_startup": v.loaded_at_startup,
            "device_type": v.archive.config.get("deviceType"),
            **v.settings,
            "workers": [
                {
                    "id": w.id,
                    "pid": w.pid,
                    "state": w.state,
                    "device": w.device,
                    "socket": w.socket_path,
                    "started_at": w.started_at,
                }
                for w in v.workers
            ],
        }

    def publish(self) -> None:
        path = self.run_dir / ROUTES_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.routes()))
        os.replace(tmp, path)
        self._routes_dirty = False

    # --- main loop -------------------------------------------------------------------

    def listen(self) -> None:
        path = self.run_dir / CONTROL_SOCKET
        if path.exists():
            path.unlink()
        self.control.bind(str(path))
        self.control.listen(64)
        self.control.setblocking(False)
        self.selector.register(self.control, selectors.EVENT_READ, "control")

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        kill_leftover_workers(self.run_dir)
        for stale in self.run_dir.glob("w*.sock"):  # a previous manager's worker sockets
            stale.unlink(missing_ok=True)
        self.listen()
        self.load_startup_models()
        while not self.stopping:
            for key, _ in self.selector.select(timeout=0.05):
                self.on_event(key)
            self.reap()
            self.tick()
            # publish first: a synchronous caller that gets its answer must see the workers
            if self._routes_dirty:
                self.publish()
            self.settle_waiters()
            if os.getppid() != self.parent_pid:
                log.warning("the gunicorn master is gone; stopping")
                self.stopping = True
        self.stop_workers()

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
            messages = conn.read_messages()
            if messages is None or messages:
                self.selector.unregister(conn.sock)
            if messages is None:
                conn.close()
            for message in messages or ():
                self.handle_control(conn, message)
        else:
            self.on_status(*key.data)

    def _request_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def stop_workers(self) -> None:
        pids = [w.pid for v in self.versions() for w in v.workers if w.pid] + [w.pid for _, w in self.retiring if w.pid]
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


def worker_count(parameter: str, value: object) -> int:
    """A worker count from a control message: an integer, not negative (400 otherwise)."""
    try:
        count = strict_int(value)
    except ValueError:
        message = f"Parameter {parameter}={value!r} is not an integer"
        raise BadRequest(message) from None
    if count < 0:
        raise BadRequest(f"Parameter {parameter}={count} must not be negative")
    return count


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


def describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


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
    preload_worker_modules(hooks)
    # Before the first fork: workers inherit torch's objects frozen (CPython's advice for forked children).
    settle_heap()
    ModelManager(config, hooks, parent_pid).run()
    return 0
