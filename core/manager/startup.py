"""The models a manager starts with: this run's registry when it takes over from a manager
that died, else the snapshot and then ``--models``."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from hookserve.archive.reading import archive_stem
from hookserve.errors import HookserveError
from hookserve.manager.lifecycle import ModelManager
from hookserve.manager.model_sources import model_settings
from hookserve.manager.snapshot import read_run_state, read_snapshot
from hookserve.wire.contracts import WireError
from hookserve.wire.routes import ModelSettings

log = logging.getLogger("hookserve.manager")


class StartupModels:
    def __init__(self, manager: ModelManager):
        self.manager = manager
        self.registry = manager.registry

    def load(self) -> None:
        # a previous manager of this run may have left extracted archives: none is in use now
        shutil.rmtree(self.registry.extract_root, ignore_errors=True)
        self.registry.extract_root.mkdir()
        if self.recover():
            return
        restored = self.restore_snapshot()
        config = self.manager.config
        store = Path(config.model_store) if config.model_store else None
        for spec in config.models:
            if spec.source == "all" and spec.name is None and store:
                sources = [(None, p.name) for p in sorted(store.iterdir()) if not p.name.startswith(".")]
            else:
                sources = [(spec.name, spec.source)]
            for name, source in sources:
                self.load_model(source, name, restored)
        self.manager.publisher.ready_since = time.time()
        self.manager.publisher.changed(snapshot=False)

    def recover(self) -> bool:
        """Take over the registry of a manager that died in this run folder, if there was one.

        The run state (``RUN_DIR/state.json``) is this run's registry as last changed,
        written whether or not the snapshot is enabled: ``--no-snapshot`` is about what a
        new server starts with, not about a running server forgetting its models. Start-up
        models that failed stay reported as failed; they are not tried again.
        """
        state = read_run_state(self.manager.run_dir)
        if state is None:
            return False
        log.warning("restarting after a manager that died: restoring %d model(s) of this run", len(state["models"]))
        self.registry.failed.update(state.get("failed", {}))
        self.restore(state["models"], recovered=True)
        self.manager.publisher.ready_since = time.time()
        self.manager.publisher.changed(snapshot=False)
        return True

    def load_model(self, source: str, name: str | None, restored: set[str]) -> None:
        manager, registry = self.manager, self.registry
        try:
            archive = manager.open_model(source, name, trusted=True)
        except HookserveError as exc:
            log.error("model archive %s not loaded: %s", source, exc.message)
            registry.failed[name or archive_stem(Path(source))] = exc.message
            return
        if archive.name in restored:
            log.info("model %s comes from the snapshot; --models entry %s skipped", archive.name, source)
            registry.discard(archive)
            return
        if registry.has(archive.name, archive.version):
            log.error("model %s version %s is given twice at start; %s skipped", archive.name, archive.version, source)
            registry.discard(archive)
            return
        try:
            settings = model_settings(archive, manager.config, manager.gpu_count, {})
            manager.check_workers(archive.name, None, settings.min_worker, archive)
        except HookserveError as exc:
            log.error("model %s (%s) not loaded: %s", archive.name, source, exc.message)
            registry.failed[archive.name] = exc.message
            registry.discard(archive)
            return
        manager.add_version(archive, source, settings, at_startup=True, workers=settings.min_worker)

    def restore_snapshot(self) -> set[str]:
        folder = self.manager.config.snapshot_folder()
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
        manager, registry = self.manager, self.registry
        for name, entry in models.items():
            for number, saved in entry["versions"].items():
                try:
                    settings = ModelSettings.from_json(saved["settings"], f"{name}.versions.{number}.settings")
                    archive = manager.open_model(saved["url"], name, saved.get("handler"), trusted=True)
                except (HookserveError, WireError) as exc:
                    message = exc.message if isinstance(exc, HookserveError) else str(exc)
                    log.error("snapshot model %s version %s not restored: %s", name, number, message)
                    registry.failed[name] = message
                    continue
                workers = self.bounded(name, number, settings.min_worker)
                version = manager.add_version(
                    archive,
                    saved["url"],
                    settings,
                    at_startup=saved.get("loaded_at_startup", True) if recovered else True,
                    workers=workers,
                )
                version.recovered = recovered
            if entry.get("default") in registry.models.get(name, {}):
                registry.defaults[name] = entry["default"]

    def bounded(self, name: str, number: str, saved: int) -> int:
        """A snapshot's worker count, cut to the worker bounds: a snapshot written before
        the bounds (or under higher ones) must not fork past them at start."""
        bounds = self.manager.bounds
        others = self.registry.workers_wanted()
        allowed = max(0, min(saved, bounds.per_model, bounds.total - others))
        if allowed < saved:
            log.error(
                "snapshot model %s version %s: %d workers cut to %d (limits: %d per model, --max-workers-per-model; "
                "%d in all, --max-workers)",
                name, number, saved, allowed, bounds.per_model, bounds.total,
            )  # fmt: skip
        return allowed
