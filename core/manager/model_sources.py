"""Where a model comes from and the settings it runs with.

``url`` (management API, ``--models``, snapshot) is resolved safely: a name or relative
path must stay inside the model store; anything else (absolute paths, ``file://``,
``http(s)://``) must match one of ``allowed_urls``. Settings are layered: API parameters
over the archive's ``model-config.yaml`` over the server config.
"""

from __future__ import annotations

import os
import re
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from hookserve.archive.reading import ModelArchive, open_archive
from hookserve.config import ServerConfig
from hookserve.errors import BadRequest, Conflict, DownloadArchiveError, ModelNotFound
from hookserve.manager.limits import SETTING_MINIMUMS, strict_int
from hookserve.wire.routes import ModelSettings

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
DOWNLOAD_TIMEOUT_S = 60


def validate_name(what: str, value: str) -> str:
    if not NAME_PATTERN.match(value):
        raise BadRequest(
            f"{what} {value!r} is invalid: use letters, digits, '_', '-' and '.', starting with a letter or digit",
        )
    return value


def resolve_model_url(url: str, config: ServerConfig, *, trusted: bool = False) -> str:
    """A local path for ``url``, downloading it into the model store when it is allowed.

    ``trusted`` is for what the operator wrote on the command line (and the snapshot made
    from it): local paths anywhere are fine there; API callers get the model store only.
    """
    parts = urlsplit(url)
    if trusted:
        # a model downloaded earlier is in the store under its file name
        local = os.path.basename(parts.path) if parts.scheme in ("http", "https") else parts.path
        in_store = Path(config.model_store or ".") / local
        if in_store.exists() or not parts.scheme:
            return str(in_store if in_store.exists() else Path(local))
    # TorchServe's rule: an allowed_urls prefix followed by "../" must not reach beyond it
    if ".." in parts.path.split("/"):
        raise ModelNotFound(f"Relative path is not allowed in url: {url}")
    if parts.scheme in ("http", "https"):
        _check_allowed(url, config)
        return _download(url, config)
    if parts.scheme == "file":
        _check_allowed(url, config)
        return parts.path
    if parts.scheme:
        raise BadRequest(f"model url scheme {parts.scheme!r} is not supported")
    path = Path(url)
    if path.is_absolute():
        _check_allowed(url, config)
        return url
    if not config.model_store:
        raise ModelNotFound(f"Model not found in model store: {url} (no --model-store is set)")
    store = Path(config.model_store).resolve()
    candidate = (store / path).resolve()
    if not candidate.is_relative_to(store):
        raise ModelNotFound(f"Model url {url} points outside the model store")
    if not candidate.exists():
        raise ModelNotFound(f"Model not found in model store: {url}")
    return str(candidate)


def check_registration(url: object, model_name: object, runtime: object) -> None:
    """Refuse a registration's parameters before anything is opened (400)."""
    if not url:
        raise BadRequest("Parameter url is required.")
    for key, value in (("url", url), ("model_name", model_name)):
        if value is not None and not isinstance(value, str):
            raise BadRequest(f"Parameter {key} must be a string")
    if model_name is not None:
        validate_name("model_name", model_name)
    if runtime not in (None, "python", "python3"):
        raise BadRequest(f"runtime {runtime!r} is not supported (python only)")


def open_model(
    url: str,
    config: ServerConfig,
    work_dir: Path,
    name: str | None,
    handler: str | None = None,
    *,
    trusted: bool = False,
) -> ModelArchive:
    """The archive ``url`` names (see :func:`resolve_model_url`), opened into ``work_dir``,
    its handler set by ``handler``, else by ``default_service_handler`` when it names none."""
    path = resolve_model_url(url, config, trusted=trusted)
    archive = open_archive(path, work_dir, model_name=name)
    if handler:
        archive.manifest["model"]["handler"] = handler
    elif not archive.handler and config.default_service_handler:
        archive.manifest["model"]["handler"] = config.default_service_handler  # as TorchServe
    return archive


def _check_allowed(url: str, config: ServerConfig) -> None:
    if not any(re.fullmatch(pattern, url) for pattern in config.allowed_urls):
        raise ModelNotFound(
            f"Model url {url} is outside the model store and matches none of allowed_urls",
        )


def _download(url: str, config: ServerConfig) -> str:
    if not config.model_store:
        raise BadRequest("downloading a model needs --model-store to put it in")
    name = os.path.basename(urlsplit(url).path)
    if not name or not NAME_PATTERN.match(name):
        raise BadRequest(f"cannot derive an archive file name from {url}")
    target = Path(config.model_store) / name
    if target.exists():
        raise Conflict(f"{name} already exists in the model store")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(target, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise DownloadArchiveError(f"cannot download {url}: {exc}") from None
    return str(target)


def model_settings(archive: ModelArchive, config: ServerConfig, gpu_count: int, given: dict[str, int]) -> ModelSettings:
    """The settings ``given`` (API parameters) > ``model-config.yaml`` > server config > defaults.

    Each value must be an integer within :data:`hookserve.manager.limits.SETTING_MINIMUMS`, and
    ``max_worker`` at least ``min_worker``; a 400 names the parameter or the
    ``model-config.yaml`` key that is wrong.
    """
    yaml = archive.config
    origins: dict[str, str] = {}

    def pick(setting: str, yaml_key: str, default: int) -> int:
        value = given.get(setting)
        origin = f"Parameter {setting}"
        if value is None and yaml.get(yaml_key) is not None:
            value = yaml[yaml_key]
            origin = f"model-config.yaml of model {archive.name}: {yaml_key}"
        elif value is None:
            value = default
            origin = f"server setting {setting}"
        origins[setting] = origin
        try:
            number = strict_int(value)
        except ValueError:
            raise BadRequest(f"{origin}={value!r} is not an integer") from None
        minimum, unit = SETTING_MINIMUMS[setting]
        if number < minimum:
            raise BadRequest(f"{origin}={number} is invalid: it must be at least {minimum} ({unit})")
        return number

    min_worker = pick("min_worker", "minWorkers", config.workers_per_model(gpu_count))
    max_worker = pick("max_worker", "maxWorkers", min_worker)
    explicit_max = given.get("max_worker") is not None or yaml.get("maxWorkers") is not None
    if explicit_max and max_worker < min_worker:
        raise BadRequest(
            f"{origins['max_worker']}={max_worker} is less than {origins['min_worker']}={min_worker}",
        )
    return ModelSettings(
        min_worker=min_worker,
        max_worker=max(min_worker, max_worker),
        batch_size=pick("batch_size", "batchSize", config.batch_size),
        max_batch_delay=pick("max_batch_delay", "maxBatchDelay", config.max_batch_delay),
        response_timeout=pick("response_timeout", "responseTimeout", config.response_timeout),
        startup_timeout=pick("startup_timeout", "startupTimeout", config.startup_timeout),
    )
