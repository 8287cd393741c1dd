"""A model version's life in the manager: opened from its archive, checked against the
worker bounds and the memory, added with its workers, failed, removed.

:class:`ModelManager` holds the manager's parts (the registry, the workers' supervisor,
the publisher) and the changes that touch more than one of them; the control API
(:mod:`hookserve.manager.control_api`) and the start-up models
(:mod:`hookserve.manager.startup`) make their changes through it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from hookserve.archive.reading import ModelArchive
from hookserve.config import ServerConfig
from hookserve.errors import HookserveError
from hookserve.manager.gpus import visible_gpu_count
from hookserve.manager.limits import WorkerBounds, check_memory, estimated_worker_bytes, private_bytes
from hookserve.manager.model_sources import open_model
from hookserve.manager.publishing import Publisher
from hookserve.manager.registry import ModelVersion, Registry
from hookserve.manager.supervisor import RETIRE_DELAY_S, Supervisor
from hookserve.pluginmanager import Hooks
from hookserve.wire.routes import ModelSettings

log = logging.getLogger("hookserve.manager")


class ModelManager:
    def __init__(self, config: ServerConfig, hooks: Hooks):
        self.config = config
        self.hooks = hooks
        self.run_dir = Path(config.run_dir)
        self.registry = Registry(self.run_dir / "models")
        self.gpu_count = visible_gpu_count()
        self.bounds = WorkerBounds.from_config(config, self.gpu_count)
        self.publisher = Publisher(config, self.registry)
        self.supervisor = Supervisor(config, hooks, self.registry, self.publisher, self.gpu_count, self.fail_version)

    def open_model(
        self, url: str, name: str | None, handler: str | None = None, *, trusted: bool = False
    ) -> ModelArchive:
        return open_model(url, self.config, self.registry.extract_root, name, handler, trusted=trusted)

    def check_workers(self, name: str, version: ModelVersion | None, count: int, archive: ModelArchive) -> None:
        """Refuse ``count`` workers for a version (``None``: a new one) past the worker
        bounds (400) or beyond the memory the machine has now (507)."""
        others = self.registry.workers_wanted(but=version)
        live = version.live() if version else []
        measured = max((private_bytes(w.pid) for w in live if w.pid and w.state == "READY"), default=0)
        per_worker = measured or estimated_worker_bytes(archive.model_dir, archive.serialized_file)
        if version is None or count > version.target:  # fewer workers are always allowed
            self.bounds.check(name, count, others)
        check_memory(name, count - len(live), per_worker, measured=bool(measured))

    def add_version(
        self, archive: ModelArchive, url: str, settings: ModelSettings, *, at_startup: bool, workers: int
    ) -> ModelVersion:
        settings = replace(settings, min_worker=workers, max_worker=max(settings.max_worker, workers))
        environment = self.hooks.install_dependencies(archive=archive, config=self.config)
        version = self.registry.add(archive, url, settings, at_startup=at_startup, environment=environment)
        self.supervisor.scale_to(version, workers)
        if workers == 0:
            version.state = "READY"
        self.publisher.dirty = True
        return version

    def remove_version(self, version: ModelVersion) -> None:
        """Take a version out of the registry; its workers drain and exit, then its files go."""
        self.registry.remove(version)
        for worker in version.workers:
            self.supervisor.retire(version, worker, delay=RETIRE_DELAY_S if version.state == "READY" else 0.0)
        version.workers = []
        gone = HookserveError(
            f"Model {version.name} version {version.version} was unregistered before its workers were ready",
        )
        for waiter in version.waiters:
            waiter.conn.fail(gone)
        version.waiters = []
        self.publisher.dirty = True
        self.supervisor.cleanup_if_idle(version)

    def fail_version(self, version: ModelVersion, reason: str) -> None:
        """Its first workers cannot load it: it leaves the registry, and its waiting callers hear why."""
        version.state, version.error = "FAILED", reason
        error = HookserveError(f"Failed to load model {version.name} version {version.version}: {reason}")
        if version.loaded_at_startup or version.recovered:
            self.registry.failed[version.name] = reason
        waiters, version.waiters = version.waiters, []
        if self.registry.holds(version):
            self.remove_version(version)
            self.publisher.changed()
        # answered after the routes no longer show it: the caller's next request must not
        for waiter in waiters:
            waiter.conn.fail(error)
