"""The registry snapshot a restarted server restores: models, versions, defaults, workers.

Written after every management change as a new file that is fsynced and then renamed
over the old one, so a crash at any moment leaves either the old or the new snapshot,
never a torn one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

log = logging.getLogger("hookserve.manager.snapshot")

SNAPSHOT_FILE = "snapshot.json"
# 2: model settings under the management API's names (min_worker, max_batch_delay, ...)
FORMAT_VERSION = 2
# version 1's setting names -> version 2's: a snapshot written before the upgrade is read
V1_SETTINGS = {
    "min_workers": "min_worker",
    "max_workers": "max_worker",
    "max_batch_delay_ms": "max_batch_delay",
    "response_timeout_s": "response_timeout",
    "startup_timeout_s": "startup_timeout",
}


def write_snapshot(folder: str | os.PathLike, models: dict) -> Path:
    path = Path(folder) / SNAPSHOT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SNAPSHOT_FILE}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(orjson.dumps({"version": FORMAT_VERSION, "models": models}, option=orjson.OPT_INDENT_2))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself must reach the disk
    finally:
        os.close(directory)
    return path


def read_versioned(path: Path, unreadable: str) -> dict | None:
    """A JSON file this format version wrote, or None (missing, unreadable: logged with
    ``unreadable``, the consequence; or of another version)."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        log.error("%s cannot be read (%s); %s", path, exc, unreadable)
        return None
    if isinstance(data, dict) and data.get("version") == 1:
        return upgrade_v1(data)
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        log.error("%s has an unknown format; %s", path, unreadable)
        return None
    return data


def upgrade_v1(data: dict) -> dict:
    """A version-1 file in version 2's shape: only the settings' names changed."""
    for model in (data.get("models") or {}).values():
        for saved in (model.get("versions") or {}).values():
            settings = saved.get("settings") or {}
            saved["settings"] = {V1_SETTINGS.get(key, key): value for key, value in settings.items()}
    return {**data, "version": FORMAT_VERSION}


def read_snapshot(folder: str | os.PathLike) -> dict | None:
    """The snapshot's models, or None when there is none (or it is not ours)."""
    data = read_versioned(Path(folder) / SNAPSHOT_FILE, "starting without the snapshot")
    return data["models"] if data else None


RUN_STATE_FILE = "state.json"


def write_run_state(run_dir: str | os.PathLike, models: dict, failed: dict) -> None:
    """This run's registry, for a manager the master restarts (not fsynced: it lives only
    as long as the run folder, which a machine crash removes anyway)."""
    path = Path(run_dir) / RUN_STATE_FILE
    tmp = path.with_name(f".{RUN_STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps({"version": FORMAT_VERSION, "models": models, "failed": failed}))
    os.replace(tmp, path)


def read_run_state(run_dir: str | os.PathLike) -> dict | None:
    """``{"models": ..., "failed": ...}`` as a previous manager of this run left them, or None."""
    return read_versioned(Path(run_dir) / RUN_STATE_FILE, "starting as a new server would")
