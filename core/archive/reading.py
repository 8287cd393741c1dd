"""Model archives as TorchServe serves them: open a ``.mar``, ``.zip``, ``.tar.gz`` or folder.

An archive is a ``.mar`` (zip), a ``.zip``, a ``.tar.gz``/``.tgz`` or a plain folder holding
the model files and ``MAR-INF/MANIFEST.json``. :func:`open_archive` reads one, extracting
archives safely (no entry may land, or point, outside the extraction folder). Every failure
is an :class:`~hookserve.errors.ArchiveError` whose message names the archive. Writing
archives is :mod:`hookserve.archive.writing`.

This module does not import torch: reading a manifest must stay cheap.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import yaml

from hookserve.errors import ArchiveError

MANIFEST_PATH = "MAR-INF/MANIFEST.json"
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
DEFAULT_VERSION = "1.0"
_ZIP_SUFFIXES = (".mar", ".zip")
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".pt2")
# Manifest keys that name a file in the model folder.
_FILE_KEYS = ("serializedFile", "modelFile", "requirementsFile", "configFile")


@dataclass
class ModelArchive:
    """An opened archive. ``model_dir`` holds the model files and stays valid until the
    caller removes the ``work_dir`` it was extracted into (folders are used in place).

    ``manifest`` is MANIFEST.json as written (with ``model.modelName`` set to the name the
    model is served under); ``config`` is the parsed model-config.yaml, ``{}`` if none.
    """

    source: str
    model_dir: Path
    manifest: dict
    config: dict = field(default_factory=dict)

    @property
    def _model(self) -> dict:
        return self.manifest["model"]

    @property
    def name(self) -> str:
        return self._model["modelName"]

    @property
    def version(self) -> str:
        """The manifest's version; ``"1.0"`` (the archiver's default) for old manifests without one."""
        return str(self._model.get("modelVersion") or DEFAULT_VERSION)

    @property
    def handler(self) -> str | None:
        return self._model.get("handler")

    @property
    def serialized_file(self) -> str | None:
        return self._model.get("serializedFile")

    @property
    def model_file(self) -> str | None:
        return self._model.get("modelFile")

    @property
    def requirements_file(self) -> str | None:
        return self._model.get("requirementsFile")

    @property
    def config_file(self) -> str | None:
        return self._model.get("configFile")

    @property
    def runtime(self) -> str | None:
        return self.manifest.get("runtime")


# --------------------------------------------------------------------------- reading


def open_archive(source: str | os.PathLike, work_dir: Path, *, model_name: str | None = None) -> ModelArchive:
    """Open ``source`` (a .mar/.zip, .tar.gz/.tgz, or folder) and validate its manifest.

    Archives are extracted into a new subfolder of ``work_dir`` (created if needed) that
    the caller owns; on failure that subfolder is removed again. If the extracted content
    is a single folder without a manifest at its root (as ``tar`` of a folder, and
    torch-model-archiver's ``tgz`` format, produce), that folder is the model folder.

    Without a MANIFEST.json the model is served with defaults: runtime ``python``, version
    ``1.0``, no handler, and the serialized file set when exactly one ``*.pt``/``*.pth``/
    ``*.pt2`` sits at the model folder's root. The served name is ``model_name`` if given,
    else the manifest's ``modelName``, else the source's stem (``resnet`` for
    ``resnet.tar.gz``); it must match TorchServe's model-name pattern.
    """
    path = Path(source)
    work_dir = Path(work_dir)
    label = str(source)
    if not path.exists():
        raise ArchiveError(f"model archive {label} not found")
    stem = archive_stem(path)
    if path.is_dir():
        return _load(label, path.resolve(), stem, model_name)

    work_dir.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{stem}-", dir=work_dir)).resolve()
    try:
        _extract(path, dest, label)
        return _load(label, _model_root(dest), stem, model_name)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in _TAR_SUFFIXES + _ZIP_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _model_root(dest: Path) -> Path:
    if (dest / MANIFEST_PATH).exists():
        return dest
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def _load(label: str, model_dir: Path, stem: str, model_name: str | None) -> ModelArchive:
    manifest_file = model_dir / MANIFEST_PATH
    if manifest_file.is_file():
        manifest = _read_manifest(label, manifest_file)
    else:
        manifest = _default_manifest(model_dir)
    model = manifest["model"]
    model["modelName"] = model_name or model.get("modelName") or stem
    if not isinstance(model["modelName"], str) or not MODEL_NAME_PATTERN.match(model["modelName"]):
        raise ArchiveError(
            f"model archive {label}: model name {model['modelName']!r} is invalid "
            f"(allowed: {MODEL_NAME_PATTERN.pattern})"
        )
    for key in _FILE_KEYS:
        if model.get(key) is not None:
            _check_named_file(label, model_dir, key, model[key])
    config = _read_config(label, model_dir, model.get("configFile"))
    return ModelArchive(source=label, model_dir=model_dir, manifest=manifest, config=config)


def _read_manifest(label: str, manifest_file: Path) -> dict:
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchiveError(f"model archive {label}: {MANIFEST_PATH} is not valid JSON: {e}") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("model"), dict):
        raise ArchiveError(f"model archive {label}: {MANIFEST_PATH} has no 'model' section")
    return manifest


def _default_manifest(model_dir: Path) -> dict:
    model: dict = {"modelVersion": DEFAULT_VERSION}
    weights = [p.name for p in model_dir.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES]
    if len(weights) == 1:
        model["serializedFile"] = weights[0]
    return {"runtime": "python", "model": model}


def _check_named_file(label: str, model_dir: Path, key: str, name: object) -> None:
    # The manifest comes from the archive, so a name like "../../etc/passwd" must not
    # lead the server to read outside the model folder.
    if not isinstance(name, str) or not _is_plain_relative(name):
        raise ArchiveError(f"model archive {label}: manifest {key} {name!r} is not a path inside the archive")
    if not (model_dir / name).is_file():
        raise ArchiveError(f"model archive {label}: manifest names {key} {name!r} but the archive has no such file")


def _read_config(label: str, model_dir: Path, config_file: str | None) -> dict:
    if config_file is None:
        return {}
    try:
        config = yaml.safe_load((model_dir / config_file).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ArchiveError(f"model archive {label}: {config_file} is not valid YAML: {e}") from e
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ArchiveError(f"model archive {label}: {config_file} must be a YAML mapping, not {type(config).__name__}")
    return config


def _is_plain_relative(name: str) -> bool:
    parts = re.split(r"[/\\]", name)
    return bool(name) and not os.path.isabs(name) and not name.startswith("\\") and ".." not in parts


# ------------------------------------------------------------------------ extraction


def _extract(path: Path, dest: Path, label: str) -> None:
    lower = path.name.lower()
    if lower.endswith(_ZIP_SUFFIXES):
        kind = "zip"
    elif lower.endswith(_TAR_SUFFIXES):
        kind = "tar"
    elif zipfile.is_zipfile(path):
        kind = "zip"
    elif tarfile.is_tarfile(path):
        kind = "tar"
    else:
        raise ArchiveError(
            f"model archive {label} is neither a zip (.mar, .zip) nor a tar (.tar.gz, .tgz) archive nor a folder"
        )
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                _write_entries(_zip_entries(zf), dest, label)
        else:
            with tarfile.open(path) as tf:
                _write_entries(_tar_entries(tf, label), dest, label)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise ArchiveError(f"model archive {label} is not a valid {kind} archive: {e}") from e
    except OSError as e:
        raise ArchiveError(f"model archive {label} cannot be extracted: {e}") from e
    _check_links_inside(dest, label)


# An entry is (name, kind, payload): kind "dir" (payload None), "file" (payload opens a
# readable stream), or "symlink" (payload is the link target).
_Entry = tuple[str, str, None | str | Callable[[], IO[bytes]]]


def _zip_entries(zf: zipfile.ZipFile) -> Iterator[_Entry]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            yield info.filename, "symlink", zf.read(info).decode("utf-8")
        elif info.is_dir():
            yield info.filename, "dir", None
        else:
            yield info.filename, "file", (lambda info=info: zf.open(info))


def _tar_entries(tf: tarfile.TarFile, label: str) -> Iterator[_Entry]:
    for member in tf:
        if member.isdir():
            yield member.name, "dir", None
        elif member.issym():
            yield member.name, "symlink", member.linkname
        elif member.isfile() or member.islnk():
            # Hard links are written as copies: extractfile reads the target's data from
            # the archive itself, so the link never touches the file system.
            yield member.name, "file", (lambda member=member: tf.extractfile(member))
        else:
            raise ArchiveError(
                f"model archive {label}: entry {member.name!r} is a device or fifo, "
                "which a model archive may not contain"
            )


def _write_entries(entries: Iterator[_Entry], dest: Path, label: str) -> None:
    for name, kind, payload in entries:
        target = _safe_target(dest, name, label)
        if target == dest:
            continue  # "./" entries of tar archives made with "tar -C dir ."
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            target.mkdir(exist_ok=True)
        elif kind == "symlink":
            _check_link(dest, target, name, str(payload), label)
            if target.is_symlink():
                target.unlink()
            target.symlink_to(str(payload))
        else:
            with payload() as stream, open(target, "wb") as out:  # type: ignore[operator]
                shutil.copyfileobj(stream, out)


def _safe_target(dest: Path, name: str, label: str) -> Path:
    if not _is_plain_relative(name):
        raise ArchiveError(
            f"model archive {label}: entry {name!r} escapes the extraction folder "
            "(absolute path or '..'); refusing to extract"
        )
    target = dest / name
    # realpath resolves symlinks extracted by earlier entries, so writing through a
    # link is caught as well as a literal path.
    if not _inside(dest, os.path.realpath(target)):
        raise ArchiveError(
            f"model archive {label}: entry {name!r} resolves outside the extraction folder "
            "through a symlink; refusing to extract"
        )
    return Path(os.path.normpath(target))


def _check_link(dest: Path, target: Path, name: str, link: str, label: str) -> None:
    resolved = os.path.realpath(os.path.join(target.parent, link))
    if os.path.isabs(link) or not _inside(dest, resolved):
        raise ArchiveError(
            f"model archive {label}: symlink {name!r} -> {link!r} points outside the "
            "extraction folder; refusing to extract"
        )


def _check_links_inside(dest: Path, label: str) -> None:
    # A link that pointed inside when it was written can be redirected outside by a later
    # link it passes through; only the final tree tells.
    for root, dirs, files in os.walk(dest):
        for entry in dirs + files:
            path = os.path.join(root, entry)
            if os.path.islink(path) and not _inside(dest, os.path.realpath(path)):
                raise ArchiveError(
                    f"model archive {label}: symlink {os.path.relpath(path, dest)!r} -> "
                    f"{os.readlink(path)!r} points outside the extraction folder"
                )


def _inside(dest: Path, resolved: str) -> bool:
    return resolved == str(dest) or resolved.startswith(str(dest) + os.sep)
