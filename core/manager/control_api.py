"""The management operations the manager takes on its control socket, one handler per
message type of :mod:`hookserve.wire.control`, and the synchronous calls waiting for their
workers."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hookserve.errors import BadRequest, Conflict, HookserveError, InvalidModelVersion
from hookserve.manager.lifecycle import ModelManager
from hookserve.manager.model_sources import check_registration, model_settings, validate_name
from hookserve.manager.registry import ModelVersion, Waiter
from hookserve.manager.supervisor import send_signal
from hookserve.wire.control import (
    DEFAULT_CALL_TIMEOUT_S,
    ControlServerSide,
    RegisterModel,
    ReplaceWorker,
    ScaleWorkers,
    SetDefault,
    Unregister,
    decode_control,
)

log = logging.getLogger("hookserve.manager")

# A synchronous call waits for its workers this much longer than startup_timeout (a worker
# killed at startup_timeout is reported, not waited for again), and always answers before
# the frontend gives up on the control call.
WAIT_SLACK_S = 2.0
WAIT_MARGIN_S = 10.0


class ControlApi:
    def __init__(self, manager: ModelManager):
        self.manager = manager
        self.registry = manager.registry
        self.handlers: dict[type, Callable[[ControlServerSide, Any], None]] = {
            RegisterModel: self.register,
            ScaleWorkers: self.scale,
            SetDefault: self.set_default,
            Unregister: self.unregister,
            ReplaceWorker: self.replace_worker,
        }

    def handle(self, conn: ControlServerSide, line: bytes) -> None:
        """Decode one message and run its handler; every failure is the caller's answer."""
        op = "?"
        try:
            message = decode_control(line)
            op = message.op
            self.handlers[type(message)](conn, message)
        except HookserveError as exc:
            conn.fail(exc)
        except Exception as exc:  # noqa: BLE001 - a bad request must not take the manager down
            log.exception("control operation %s failed", op)
            conn.fail(HookserveError(f"{type(exc).__name__}: {exc}"))

    def register(self, conn: ControlServerSide, message: RegisterModel) -> None:
        manager, registry = self.manager, self.registry
        url, name = message.url, message.model_name
        check_registration(url, name, message.runtime)
        archive = manager.open_model(url, name, message.handler)
        try:
            validate_name("model version", archive.version)
        except BadRequest:
            registry.discard(archive)
            raise
        if registry.has(archive.name, archive.version):
            registry.discard(archive)
            raise Conflict(
                f"Model version {archive.version} for model {archive.name} already registered.",
            )
        try:
            settings = model_settings(archive, manager.config, manager.gpu_count, message.settings())
            workers = message.initial_workers
            workers = settings.min_worker if workers is None else worker_count("initial_workers", workers)
            manager.check_workers(archive.name, None, workers, archive)
        except HookserveError:
            registry.discard(archive)
            raise
        version = manager.add_version(archive, url, settings, at_startup=False, workers=workers)
        done = f'Model "{archive.name}" Version: {archive.version} registered with {workers} initial workers'
        if workers == 0:  # TorchServe's answer, synchronous or not
            manager.publisher.changed()
            conn.answer(200, {"status": f"{done}. Use scale workers API to add workers for the model."})
            return
        self.answer_or_wait(conn, version, message.synchronous, done)

    def scale(self, conn: ControlServerSide, message: ScaleWorkers) -> None:
        version = self.registry.find(message.model, message.version)
        low = version.target if message.min_worker is None else worker_count("min_worker", message.min_worker)
        if message.max_worker is None:
            high = max(low, version.settings.max_worker)
        else:
            high = worker_count("max_worker", message.max_worker)
        if high < low:
            raise BadRequest(f"Parameter max_worker={high} is less than min_worker={low}")
        self.manager.check_workers(version.name, version, low, version.archive)
        version.settings = replace(version.settings, min_worker=low, max_worker=high)
        self.manager.supervisor.scale_to(version, low)
        done = f"Workers scaled to {low} for model: {version.name}"
        if message.version:  # TorchServe names the version only when the path did
            done += f", version: {version.version}"
        self.answer_or_wait(conn, version, message.synchronous, done)

    def set_default(self, conn: ControlServerSide, message: SetDefault) -> None:
        version = self.registry.find(message.model, message.version)
        self.registry.defaults[version.name] = version.version
        self.manager.publisher.changed()
        conn.answer(
            200, {"status": f'Default version successfully updated for model "{version.name}" to "{version.version}"'}
        )

    def unregister(self, conn: ControlServerSide, message: Unregister) -> None:
        registry, name = self.registry, message.model
        if name in registry.failed and name not in registry.models:
            # a start-up model that failed to load: forgetting it is how /ping stops reporting it
            del registry.failed[name]
            self.manager.publisher.changed()
            conn.answer(200, {"status": f'Model "{name}" unregistered'})
            return
        version = registry.find(name, message.version)
        if registry.defaults[version.name] == version.version and len(registry.models[version.name]) > 1:
            raise InvalidModelVersion(
                f"Cannot remove default version {version.version} for model {version.name}; "
                "set another version as default first",
            )
        self.manager.remove_version(version)
        self.manager.publisher.changed()
        conn.answer(200, {"status": f'Model "{version.name}" unregistered'})

    def replace_worker(self, conn: ControlServerSide, message: ReplaceWorker) -> None:
        for version in self.registry.versions():
            for worker in version.workers:
                if worker.socket_path == message.socket and worker.pid:
                    log.warning("model %s: worker %s exceeded responseTimeout; replacing it", version.key, worker.id)
                    send_signal(worker.pid, signal.SIGKILL)
        conn.answer(200, {"status": "ok"})

    def answer_or_wait(self, conn: ControlServerSide, version: ModelVersion, synchronous: bool, done: str) -> None:
        self.manager.publisher.changed()
        if not synchronous:
            conn.answer(202, {"status": "Processing worker updates..."})
        elif version.settled():
            conn.answer(200, {"status": done})
        else:
            now = time.monotonic()
            wait = min(version.settings.startup_timeout + WAIT_SLACK_S, DEFAULT_CALL_TIMEOUT_S - WAIT_MARGIN_S)
            version.waiters.append(Waiter(conn, done, since=now, deadline=now + wait))

    def settle_waiters(self) -> None:
        now = time.monotonic()
        for version in self.registry.versions():
            if version.waiters and version.settled():
                for waiter in version.waiters:
                    waiter.conn.answer(200, {"status": waiter.success})
                version.waiters = []
            elif any(w.deadline <= now for w in version.waiters):
                late = [w for w in version.waiters if w.deadline <= now]
                version.waiters = [w for w in version.waiters if w.deadline > now]
                for waiter in late:
                    waiter.conn.fail(unsettled_error(version, now - waiter.since))


def unsettled_error(version: ModelVersion, waited: float) -> HookserveError:
    """Why a synchronous call's workers are not all up: how many are, and what failed."""
    live = version.live()
    ready = sum(w.state == "READY" for w in live)
    loading = sum(w.state == "STARTING" for w in live)
    failed = [w for w in live if w.state == "DEAD"]
    parts = [
        f"{ready} of {version.target} workers of model {version.name} version {version.version} are ready "
        f"after {waited:.0f} s (startupTimeout={version.settings.startup_timeout}s)"
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


def worker_count(parameter: str, value: int) -> int:
    """A worker count from a control message: not negative (400 otherwise)."""
    if value < 0:
        raise BadRequest(f"Parameter {parameter}={value} must not be negative")
    return value
