"""Server configuration: ``hookserve serve`` flags and TorchServe's ``config.properties``.

A ``ServerConfig`` is built once in the gunicorn master, written as JSON into the run
folder, and read back by the model manager and by every frontend worker.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hookserve.errors import ConfigError

DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
RUN_DIR_ENV = "HOOKSERVE_RUN_DIR"
TOKEN_ENV = "HOOKSERVE_MANAGEMENT_TOKEN"
CONFIG_FILE_NAME = "config.json"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(value: str) -> tuple[str, int]:
    """``host:port``, ``http://host:port`` or ``[v6]:port`` -> ``(host, port)``."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"address {value!r}: only http is supported")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"address {value!r}: {exc}") from None
    if not parts.hostname or port is None:
        raise ConfigError(f"address {value!r}: expected host:port, e.g. 127.0.0.1:8080")
    return parts.hostname, port


@dataclass(frozen=True)
class ModelSpec:
    """A model to load at start: ``name=archive`` (name may be None: the manifest's)."""

    source: str
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        name, sep, source = text.partition("=")
        return cls(source=source, name=name) if sep else cls(source=text)


@dataclass
class ServerConfig:
    inference_address: tuple[str, int] = ("127.0.0.1", 8080)
    management_address: tuple[str, int] = ("127.0.0.1", 8081)
    metrics_address: tuple[str, int] = ("127.0.0.1", 8082)
    model_store: str | None = None
    models: list[ModelSpec] = field(default_factory=list)
    # TorchServe's default: one worker per GPU, else one per CPU core.
    default_workers_per_model: int = 0
    batch_size: int = 1
    max_batch_delay_ms: int = 100
    response_timeout_s: int = 120
    startup_timeout_s: int = 120
    job_queue_size: int = 100
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    number_of_gpu: int | None = None
    frontend_workers: int = 1
    torch_threads: int | None = None
    # Frontends and model workers poll instead of sleeping this long after activity (see
    # hookserve.busy_poll); 0 turns it off.
    busy_poll_us: int = 300
    # Frontends and model workers run as SCHED_BATCH (see hookserve.scheduling).
    batch_scheduling: bool = True
    disabled_plugins: list[str] = field(default_factory=list)
    strict_plugins: bool = False
    # Model URLs beyond the model store must match one of these regexes (TorchServe's key).
    allowed_urls: list[str] = field(default_factory=list)
    snapshot: bool = True
    snapshot_dir: str | None = None
    management_token: str | None = None
    disable_token_auth: bool = False
    enable_model_api: bool = False
    # Worker bounds (0: derived from the machine, see hookserve.limits).
    max_workers_per_model: int = 0
    max_workers: int = 0
    run_dir: str = ""

    @property
    def busy_poll_s(self) -> float:
        return self.busy_poll_us / 1e6

    def workers_per_model(self, gpu_count: int) -> int:
        if self.default_workers_per_model > 0:
            return self.default_workers_per_model
        return gpu_count or os.cpu_count() or 1

    def check_security(self) -> None:
        """Refuse a management API reachable beyond loopback without a token."""
        host, port = self.management_address
        if not is_loopback(host) and not self.management_token and not self.disable_token_auth:
            raise ConfigError(
                f"management listens on {host}:{port}, beyond loopback: set a token with --management-token "
                f"or ${TOKEN_ENV}, or pass --disable-token-auth to run it open on purpose"
            )

    def snapshot_folder(self) -> Path | None:
        """Where the registry snapshot lives: ``snapshot_dir``, else per inference address."""
        if not self.snapshot:
            return None
        if self.snapshot_dir:
            return Path(self.snapshot_dir)
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        host, port = self.inference_address
        return state / "hookserve" / f"{host}-{port}"

    def listeners(self) -> dict[tuple[str, int], list[str]]:
        """Each distinct address with the listener names served on it."""
        found: dict[tuple[str, int], list[str]] = {}
        for name in ("inference", "management", "metrics"):
            found.setdefault(tuple(getattr(self, f"{name}_address")), []).append(name)
        return found

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        data = json.loads(text)
        for key in ("inference_address", "management_address", "metrics_address"):
            data[key] = tuple(data[key])
        data["models"] = [ModelSpec(**m) for m in data["models"]]
        return cls(**data)

    def save(self) -> None:
        path = Path(self.run_dir) / CONFIG_FILE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)

    @classmethod
    def load(cls, run_dir: str | None = None) -> ServerConfig:
        run_dir = run_dir or os.environ.get(RUN_DIR_ENV)
        if not run_dir:
            raise ConfigError(
                f"${RUN_DIR_ENV} is not set: start frontends with 'hookserve serve' or with "
                "gunicorn -c python:hookserve.gunicorn_conf"
            )
        return cls.from_json((Path(run_dir) / CONFIG_FILE_NAME).read_text())


# config.properties key -> (ServerConfig field, converter)
def _int(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"config.properties: {key}={value!r} is not an integer") from None


def _bool(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"config.properties: {key}={value!r} is not true or false")
    return value.lower() == "true"


def _models(key: str, value: str) -> list[ModelSpec]:
    value = value.strip()
    if value in ("", "standalone"):
        return []
    return [ModelSpec.parse(item) for item in value.split(",") if item.strip()]


TS_PROPERTIES = {
    "inference_address": ("inference_address", lambda k, v: parse_address(v)),
    "management_address": ("management_address", lambda k, v: parse_address(v)),
    "metrics_address": ("metrics_address", lambda k, v: parse_address(v)),
    "model_store": ("model_store", lambda k, v: v),
    "load_models": ("models", _models),
    "default_workers_per_model": ("default_workers_per_model", _int),
    "batch_size": ("batch_size", _int),
    "max_batch_delay": ("max_batch_delay_ms", _int),
    "default_response_timeout": ("response_timeout_s", _int),
    "default_startup_timeout": ("startup_timeout_s", _int),
    "job_queue_size": ("job_queue_size", _int),
    "max_request_size": ("max_request_size", _int),
    "number_of_gpu": ("number_of_gpu", _int),
    "number_of_netty_threads": ("frontend_workers", _int),
    "allowed_urls": ("allowed_urls", lambda k, v: [u.strip() for u in v.split(",") if u.strip()]),
    "enable_model_api": ("enable_model_api", _bool),
    "disable_token_authorization": ("disable_token_auth", _bool),
}
# Keys that TorchServe knows and that have no meaning here: accepted quietly.
TS_IGNORED = re.compile(
    r"^(grpc_.*|enable_envvars_config|install_py_dep_per_model|disable_system_metrics|"
    r"vmargs|netty_client_threads|async_logging|cors_.*|enable_metrics_api|metrics_mode|"
    r"metrics_config|model_snapshot|workflow_store|"
    r"max_response_size|unregister_model_timeout|"
    r"default_service_handler|decode_input_request|service_envelope|.*_ssl.*|"
    r"private_key_file|certificate_file|keystore.*|plugins_path|use_env_allowed_urls|"
    r"models|limit_max_image_pixels|minWorkers|maxWorkers|ipex_enable|cpu_launcher_.*|"
    r"tsConfigFile)$"
)


PROPERTY_LINE = re.compile(r"^(?P<key>[^=:\s]+)\s*[=:]\s*(?P<value>.*)$")


def read_properties(path: str | os.PathLike) -> dict[str, str]:
    """Java ``.properties`` as TorchServe writes them: ``key=value``, ``#`` comments."""
    props: dict[str, str] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read --ts-config {path}: {exc.strerror}") from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        match = PROPERTY_LINE.match(line)
        if not match:
            raise ConfigError(f"{path}:{number}: expected key=value, got {raw!r}")
        props[match["key"]] = match["value"]
    return props


def apply_ts_properties(config: ServerConfig, props: dict[str, str], origin: str) -> None:
    unknown = []
    for key, value in props.items():
        if key in TS_PROPERTIES:
            attr, convert = TS_PROPERTIES[key]
            setattr(config, attr, convert(key, value))
        elif not TS_IGNORED.match(key):
            unknown.append(key)
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))}")
