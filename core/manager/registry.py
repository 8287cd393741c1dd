"""The manager's registry: models, their versions and default versions, and the start-up
models that failed to load. Data only; the workers a version has are forked and stopped by
:mod:`hookserve.manager.supervisor`."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hookserve.archive.reading import ModelArchive
from hookserve.errors import ModelNotFound, ModelVersionNotFound
from hookserve.plugin_types import ModelEnvironment
from hookserve.wire.control import ControlServerSide
from hookserve.wire.routes import ModelSettings


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
    settings: ModelSettings
    loaded_at_startup: bool = False
    workers: list[Worker] = field(default_factory=list)
    state: str = "LOADING"  # LOADING, READY, FAILED
    error: str | None = None
    waiters: list[Waiter] = field(default_factory=list)
    owns_model_dir: bool = True
    # taken over from a manager that died: a failure to load it again is reported, not dropped
    recovered: bool = False
    # from hookserve_install_dependencies: what its workers add before importing the handler
    environment: ModelEnvironment = field(default_factory=ModelEnvironment)

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
        return self.settings.min_worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.state != "STOPPING"]

    def settled(self) -> bool:
        return (
            not any(w.state == "STOPPING" for w in self.workers)
            and len(self.workers) == self.target
            and all(w.state == "READY" for w in self.workers)
        )


class Registry:
    """Models by name, versions by number; ``extract_root`` holds the archives it extracted."""

    def __init__(self, extract_root: Path):
        self.extract_root = extract_root
        self.models: dict[str, dict[str, ModelVersion]] = {}
        self.defaults: dict[str, str] = {}
        # start-up models that failed to load: name -> reason (``/ping`` reports them)
        self.failed: dict[str, str] = {}

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

    def has(self, name: str, number: str) -> bool:
        return number in self.models.get(name, {})

    def holds(self, version: ModelVersion) -> bool:
        """Whether ``version`` is still the one registered under its name and number."""
        return self.models.get(version.name, {}).get(version.version) is version

    def workers_wanted(self, but: ModelVersion | None = None) -> int:
        """Workers every version (``but`` one) is to have."""
        return sum(v.target for v in self.versions() if v is not but)

    def add(
        self,
        archive: ModelArchive,
        url: str,
        settings: ModelSettings,
        *,
        at_startup: bool,
        environment: ModelEnvironment,
    ) -> ModelVersion:
        version = ModelVersion(archive, url, settings, loaded_at_startup=at_startup, environment=environment)
        version.owns_model_dir = Path(archive.model_dir).is_relative_to(self.extract_root)
        self.models.setdefault(archive.name, {})[archive.version] = version
        self.failed.pop(archive.name, None)  # loaded again under that name: no longer a failure
        self.defaults.setdefault(archive.name, archive.version)
        return version

    def remove(self, version: ModelVersion) -> None:
        """Take a version out; the default passes to another version of the model."""
        versions = self.models.get(version.name, {})
        versions.pop(version.version, None)
        if not versions:
            self.models.pop(version.name, None)
            self.defaults.pop(version.name, None)
        elif self.defaults.get(version.name) == version.version:
            self.defaults[version.name] = next(iter(versions))

    def discard(self, archive: ModelArchive) -> None:
        """Drop an archive opened for nothing: its extracted copy, never a folder used in place."""
        if Path(archive.model_dir).is_relative_to(self.extract_root):
            shutil.rmtree(archive.model_dir, ignore_errors=True)

    def saved(self) -> dict:
        """The registry as the snapshot and the run state keep it."""
        return {
            name: {
                "default": self.defaults[name],
                "versions": {
                    number: {
                        "url": v.url,
                        "handler": v.archive.handler,
                        "settings": v.settings.to_json(),
                        "loaded_at_startup": v.loaded_at_startup,
                    }
                    for number, v in versions.items()
                },
            }
            for name, versions in self.models.items()
        }
