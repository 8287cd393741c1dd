"""Model archives as torch-model-archiver 0.12 writes them (``hookserve archive``).

:func:`write_archive` builds a ``.mar``, ``.tar.gz`` or folder from torch-model-archiver's
options, with the manifest keys that tool writes; :mod:`hookserve.archive.reading` opens it.
Every failure is an :class:`~hookserve.errors.ArchiveError`.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hookserve.archive.reading import DEFAULT_VERSION, MANIFEST_PATH, MODEL_NAME_PATTERN
from hookserve.errors import ArchiveError

log = logging.getLogger(__name__)

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
# torch-model-archiver leaves these folders out when it walks the model files.
_SKIPPED_DIRS = frozenset({"__MACOSX", "__pycache__"})
# torch-model-archiver expands extra files containing these as glob patterns.
_GLOB_CHARS = re.compile(r"[*?[]")


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
