"""What the manager tells the rest of the server: the routes table frontends read, the run
state a manager restarted within this run takes over, and the snapshot a restarted server
restores."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from hookserve.config import ServerConfig
from hookserve.manager.registry import ModelVersion, Registry
from hookserve.manager.snapshot import write_run_state, write_snapshot
from hookserve.wire.routes import ManagerStatus, ModelEntry, RoutesTable, VersionEntry, WorkerEntry, write_routes

log = logging.getLogger("hookserve.manager")


class Publisher:
    """Publishes the registry; ``dirty`` marks routes to publish at the next turn of the loop."""

    def __init__(self, config: ServerConfig, registry: Registry):
        self.config = config
        self.registry = registry
        self.run_dir = Path(config.run_dir)
        self.dirty = True
        self.ready_since = time.time()

    def routes(self) -> RoutesTable:
        registry = self.registry
        models = {
            name: ModelEntry(
                default=registry.defaults[name],
                versions={number: version_entry(v) for number, v in versions.items()},
            )
            for name, versions in registry.models.items()
        }
        manager = ManagerStatus(state="ready", pid=os.getpid(), since=self.ready_since)
        return RoutesTable(models=models, failed=dict(registry.failed), manager=manager)

    def publish(self) -> None:
        write_routes(self.run_dir, self.routes(), "manager")
        self.dirty = False

    def changed(self, snapshot: bool = True) -> None:
        """A management change: routes now (before the caller is answered), then the run
        state and (unless told not to, or disabled) the snapshot."""
        self.publish()
        saved = self.registry.saved()
        try:
            write_run_state(self.run_dir, saved, self.registry.failed)
        except OSError as exc:
            log.error("cannot write the run state in %s: %s", self.run_dir, exc)
        folder = self.config.snapshot_folder() if snapshot else None
        if folder is not None:
            try:
                write_snapshot(folder, saved)
            except OSError as exc:
                # the change itself is made and must be reported as made; a restart will miss it
                log.error("cannot write the snapshot in %s: %s", folder, exc)


def version_entry(v: ModelVersion) -> VersionEntry:
    return VersionEntry(
        state=v.state,
        url=v.url,
        runtime=v.archive.runtime or "python",
        loaded_at_startup=v.loaded_at_startup,
        device_type=v.archive.config.get("deviceType"),
        settings=v.settings,
        workers=tuple(
            WorkerEntry(
                id=w.id, pid=w.pid, state=w.state, device=w.device, socket=w.socket_path, started_at=w.started_at
            )
            for w in v.workers
        ),
    )
