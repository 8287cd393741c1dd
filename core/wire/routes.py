"""The routes table: ``RUN_DIR/routes.json``, what frontends need to reach the model workers.

The manager publishes it after every change (a new file renamed over the old one, so a
reader sees one whole table); before a manager runs, the master rewrites only its
``manager`` entry (see ``hookserve.manager.process``). Frontends read it on every request
(re-reading it when it changes) to route requests, describe models and answer ``/ping``.
This module is the only one that writes or reads the file; a reader gets a
:class:`RoutesTable` checked once, or a :class:`~hookserve.wire.contracts.WireError`
naming the field that is wrong.

:class:`ModelSettings` is a model version's settings under one name each, the management
API's parameter names, from the HTTP request through the manager to the worker; only the
edges that speak another format (TorchServe's describe-model keys, ``model-config.yaml``,
``config.properties``) spell them differently.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from hookserve.wire.contracts import decode

ROUTES_FILE = "routes.json"


@dataclass(frozen=True)
class ModelSettings:
    """A model version's settings; ``max_batch_delay`` in milliseconds, timeouts in seconds."""

    min_worker: int
    max_worker: int
    batch_size: int
    max_batch_delay: int
    response_timeout: int
    startup_timeout: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object, where: str = "settings") -> ModelSettings:
        return decode(cls, data, where)


@dataclass
class WorkerEntry:
    """One model worker: ``state`` is STARTING, READY, DEAD, STOPPING, or LOST (its manager died)."""

    id: str
    pid: int
    state: str
    device: str
    socket: str
    started_at: float


@dataclass
class VersionEntry:
    """One model version: ``state`` is LOADING, READY or FAILED."""

    state: str
    url: str
    runtime: str
    loaded_at_startup: bool
    device_type: str | None
    settings: ModelSettings
    workers: tuple[WorkerEntry, ...] = ()


@dataclass
class ModelEntry:
    default: str
    versions: dict[str, VersionEntry]


@dataclass(frozen=True)
class ManagerStatus:
    """``state``: starting, restarting (the master writes these two), ready, stopped."""

    state: str
    since: float = 0.0
    pid: int | None = None
    reason: str | None = None

    def describe(self) -> str:
        """Why the manager cannot take a call now, in words for an error message."""
        reason = f": {self.reason}" if self.reason else ""
        if self.state == "starting":
            return "the model manager is still starting"
        if self.state == "restarting":
            return f"the model manager is restarting{reason}"
        if self.state == "stopped":
            return f"the model manager has stopped{reason}"
        return "the model manager has not started"


# Before any manager wrote the table: nothing is known, least of all that it runs.
NOT_STARTED = ManagerStatus(state="not started")


@dataclass
class RoutesTable:
    models: dict[str, ModelEntry] = field(default_factory=dict)
    # start-up models that failed to load: name -> reason
    failed: dict[str, str] = field(default_factory=dict)
    manager: ManagerStatus = NOT_STARTED

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes) -> RoutesTable:
        return decode(cls, orjson.loads(data), "")


def routes_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / ROUTES_FILE


def read_routes(run_dir: str | os.PathLike) -> RoutesTable:
    """The table as last written; raises ``OSError``, ``orjson.JSONDecodeError`` or ``WireError``."""
    return RoutesTable.from_json(routes_path(run_dir).read_bytes())


def write_routes(run_dir: str | os.PathLike, table: RoutesTable, writer: str) -> None:
    """Replace the table at once (readers never see half of it); ``writer`` names the temporary
    file, so the master and the manager never share one."""
    path = routes_path(run_dir)
    tmp = path.with_name(f".{ROUTES_FILE}.{writer}.tmp")
    tmp.write_bytes(table.to_json())
    os.replace(tmp, path)
