"""Model archives: read what TorchServe serves, write what torch-model-archiver 0.12 writes.

An archive is a ``.mar`` (zip), a ``.zip``, a ``.tar.gz``/``.tgz`` or a plain folder holding
the model files and ``MAR-INF/MANIFEST.json``. :func:`open_archive` reads one, extracting
archives safely (no entry may land, or point, outside the extraction folder);
:func:`write_archive` builds one from torch-model-archiver's options. Every failure is an
:class:`~hookserve.errors.ArchiveError` whose message names the archive.

This module does not import torch: reading a manifest must stay cheap.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import yaml

from hookserve.errors import ArchiveError

log = logging.getLogger(__name__)

MANIFEST_PATH = "MAR-INF/MANIFEST.json"
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
# TorchServe compares archiverVersion against 0.2.0 and warns below it; what we write is
# torch-model-archiver 0.12's layout, so we claim that version.
ARCHIVER_VERSION = "0.12.0"
ARCHIVE_FORMATS = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}
# torch-model-archiver also accepts "LSP" (the C++ backend); hookserve can neither build
# nor serve those archives, so it is refused rather than written half-right.
RUNTIMES = ("python", "python3")
# Handlers shipped with TorchServe: named, never copied into the archive.
BUILTIN_HANDLERS = frozenset(
    {
        "base_handler",
        "text_classifier",
        "image_classifier",
        "object_detector",
        "image_segmenter",
        "dali_image_classifier",
        "vllm_handler",
        "trt_llm_handler",
    }
)
_ZIP_SUFFIXES = (".mar", ".zip")
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".pt2")
# Manifest keys that name a file in the model folder.
_FILE_KEYS = ("serializedFile", "modelFile", "requirementsFile", "configFile")
# torch-model-archiver leaves these folders out when it walks the model files.
_SKIPPED_DIRS = frozenset({"__MACOSX", "__pycache__"})
# torch-model-archiver expands extra files containing these as glob patterns.
_GLOB_CHARS = re.compile(r"[*?[]")


DEFAULT_VERSION = "1.0"


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


# --------------------------------------------------------------------------- writing


@dataclass
class ArchiveOptions:
    """torch-model-archiver's options, one field per flag (``extra_files`` as a list).

    ``handler`` is a Python file (``h.py``, ``h.py:fn``, or ``h``/``h:fn`` when ``h.py``
    exists), which is copied into the archive, or else a handler name (a TorchServe
    built-in such as ``image_classifier``, or an importable module), which is recorded
    as given. ``export_path`` None means the current directory.
    """

    model_name: str
    handler: str
    version: str = DEFAULT_VERSION
    serialized_file: str | os.PathLike | None = None
    model_file: str | os.PathLike | None = None
    extra_files: Sequence[str | os.PathLike] = ()
    requirements_file: str | os.PathLike | None = None
    config_file: str | os.PathLike | None = None
    runtime: str = "python"
    export_path: str | os.PathLike | None = None
    archive_format: str = "default"
    force: bool = False


def write_archive(options: ArchiveOptions) -> Path:
    """Write the archive ``options`` describe and return its path.

    The output is ``NAME.mar`` (``default``: deflated zip; ``zip-store``: stored zip),
    ``NAME.tar.gz`` (``tgz``; entries under ``NAME/`` as torch-model-archiver writes them)
    or the folder ``NAME/`` (``no-archive``) in the export path. Every file sits at the
    archive root under its base name; folders given as extra files contribute their
    contents. The manifest has the keys torch-model-archiver 0.12 writes for the same
    flags. The output is written under a temporary name and then moved into place, so a
    failure never leaves a partial archive or destroys the one being replaced.
    """
    name = options.model_name
    if not MODEL_NAME_PATTERN.match(name):
        raise ArchiveError(f"model name {name!r} is invalid (allowed: {MODEL_NAME_PATTERN.pattern})")
    if options.archive_format not in ARCHIVE_FORMATS:
        raise ArchiveError(f"archive format {options.archive_format!r} is not one of {', '.join(ARCHIVE_FORMATS)}")
    if options.runtime not in RUNTIMES:
        raise ArchiveError(f"runtime {options.runtime!r} is not one of {', '.join(RUNTIMES)}")
    export_dir = Path(options.export_path if options.export_path is not None else os.getcwd())
    if not export_dir.is_dir():
        raise ArchiveError(f"export path {export_dir} is not a directory")
    output = export_dir / f"{name}{ARCHIVE_FORMATS[options.archive_format]}"
    if (output.exists() or output.is_symlink()) and not options.force:
        raise ArchiveError(f"{output} already exists; use --force to overwrite it")

    files = _collect_files(options)
    manifest = json.dumps(_manifest(options), indent=2)
    try:
        _write_output(output, options.archive_format, name, files, manifest)
    except OSError as e:
        raise ArchiveError(f"cannot write model archive {output}: {e}") from e
    return output


def _collect_files(options: ArchiveOptions) -> dict[str, Path]:
    """Map each archive member name to its source file, in torch-model-archiver's order:
    on a base-name clash the later file wins, as it does there."""
    files: dict[str, Path] = {}

    def add_file(kind: str, value: str | os.PathLike) -> None:
        path = Path(value)
        if not path.is_file():
            raise ArchiveError(f"{kind} {value} not found")
        files[path.name] = path

    if options.model_file is not None:
        add_file("model file", options.model_file)
    if options.serialized_file is not None:
        add_file("serialized file", options.serialized_file)
    handler_file = _handler_file(options.handler)
    if handler_file is not None:
        add_file("handler file", handler_file)
    for extra in options.extra_files:
        _add_extra(files, str(extra).strip())
    if options.requirements_file is not None:
        add_file("requirements file", options.requirements_file)
    if options.config_file is not None:
        add_file("config file", options.config_file)
    # The manifest is generated; a stale one from a re-archived folder must not shadow it.
    files.pop(MANIFEST_PATH, None)
    return files


def _handler_file(handler: str) -> str | None:
    if handler in BUILTIN_HANDLERS:
        return None
    module = handler.split(":", 1)[0]
    path = module if module.endswith(".py") else module + ".py"
    looks_like_file = module.endswith(".py") or "/" in module or os.sep in module
    if looks_like_file or Path(path).is_file():
        return path
    return None


def _add_extra(files: dict[str, Path], item: str) -> None:
    if not item:
        return
    if _GLOB_CHARS.search(item):
        matches = sorted(glob.glob(item))
        if not matches:
            log.warning("extra files pattern %s matched no file", item)
    elif os.path.exists(item):
        matches = [item]
    else:
        raise ArchiveError(f"extra file {item} not found")
    for match in matches:
        path = Path(match)
        if path.is_file():
            files[path.name] = path
        elif path.is_dir():
            files.update(_folder_contents(path))
        else:
            raise ArchiveError(f"extra file {match} is neither a file nor a folder")


def _folder_contents(folder: Path) -> dict[str, Path]:
    contents: dict[str, Path] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        for file_name in sorted(names):
            path = Path(root, file_name)
            contents[path.relative_to(folder).as_posix()] = path
    return contents


def _manifest(options: ArchiveOptions) -> dict:
    # Key order and the omission of unset keys follow torch-model-archiver 0.12's
    # manifest_components, so TorchServe and tools diffing manifests see the same thing.
    model: dict = {"modelName": options.model_name}
    if options.serialized_file is not None:
        model["serializedFile"] = Path(options.serialized_file).name
    model["handler"] = os.path.basename(options.handler)
    if options.model_file is not None:
        model["modelFile"] = Path(options.model_file).name
    if options.version:
        model["modelVersion"] = options.version
    if options.requirements_file is not None:
        model["requirementsFile"] = Path(options.requirements_file).name
    if options.config_file is not None:
        model["configFile"] = Path(options.config_file).name
    return {
        "createdOn": datetime.now().strftime("%d/%m/%Y %H:%M:%S"),
        "runtime": options.runtime,
        "model": model,
        "archiverVersion": ARCHIVER_VERSION,
    }


def _write_output(output: Path, archive_format: str, name: str, files: dict[str, Path], manifest: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        staged = tmp / output.name
        if archive_format == "no-archive":
            for arcname, src in files.items():
                (staged / arcname).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, staged / arcname)
            (staged / MANIFEST_PATH).parent.mkdir(parents=True, exist_ok=True)
            (staged / MANIFEST_PATH).write_text(manifest, encoding="utf-8")
        elif archive_format == "tgz":
            # dereference: a symlinked source is archived as its content, as the copy
            # torch-model-archiver makes first would be.
            with tarfile.open(staged, "w:gz", dereference=True) as tf:
                for arcname, src in files.items():
                    tf.add(src, arcname=f"{name}/{arcname}", recursive=False)
                info = tarfile.TarInfo(f"{name}/{MANIFEST_PATH}")
                data = manifest.encode("utf-8")
                info.size = len(data)
                info.mtime = int(datetime.now().timestamp())
                info.mode = 0o644
                tf.addfile(info, io.BytesIO(data))
        else:
            compression = zipfile.ZIP_STORED if archive_format == "zip-store" else zipfile.ZIP_DEFLATED
            with zipfile.ZipFile(staged, "w", compression) as zf:
                for arcname, src in files.items():
                    zf.write(src, arcname)
                zf.writestr(MANIFEST_PATH, manifest)
        # os.replace swaps a file for a file atomically but cannot replace across kinds.
        if output.is_dir() and not output.is_symlink():
            shutil.rmtree(output)
        elif staged.is_dir() and (output.exists() or output.is_symlink()):
            output.unlink()
        os.replace(staged, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
