"""Server configuration: ``hookserve serve`` flags and TorchServe's ``config.properties``.

A ``ServerConfig`` is built once in the gunicorn master, written as JSON into the run
folder, and read back by the model manager and by every frontend worker.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hookserve.errors import ConfigError

DEFAULT_MAX_REQUEST_SIZE = 64 * 1024 * 1024
RUN_DIR_ENV = "HOOKSERVE_RUN_DIR"
TOKEN_ENV = "HOOKSERVE_MANAGEMENT_TOKEN"
TS_CONFIG_FILE_ENV = "TS_CONFIG_FILE"
CONFIG_FILE_NAME = "config.json"
ADDRESS_NAMES = ("inference", "management", "metrics")

log = logging.getLogger("hookserve.config")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(value: str) -> tuple[str, int]:
    """``host:port``, ``http://host:port``, ``https://host:port`` or ``[v6]:port`` -> ``(host, port)``.

    The scheme is not part of the answer: ``address_scheme`` reads it, ``check_tls`` holds it
    to the server's one TLS setting."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"address {value!r}: only http:// and https:// are supported")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"address {value!r}: {exc}") from None
    if not parts.hostname or port is None:
        raise ConfigError(f"address {value!r}: expected host:port, e.g. 127.0.0.1:8080")
    return parts.hostname, port


def address_scheme(value: str) -> str | None:
    """``http`` or ``https`` when ``value`` names its scheme, else None (it follows the server)."""
    scheme, sep, _ = value.strip().partition("://")
    return scheme.lower() if sep else None


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
    max_batch_delay: int = 100
    response_timeout: int = 120
    startup_timeout: int = 120
    job_queue_size: int = 100
    max_request_size: int = DEFAULT_MAX_REQUEST_SIZE
    number_of_gpu: int | None = None
    frontend_workers: int = 1
    torch_threads: int | None = None
    # Frontends and model workers poll instead of sleeping this long after activity (see
    # hookserve.tuning.busy_poll); 0 turns it off.
    busy_poll_us: int = 300
    # Frontends and model workers run as SCHED_BATCH (see hookserve.tuning.scheduling).
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
    # Worker bounds (0: derived from the machine, see hookserve.manager.limits).
    max_workers_per_model: int = 0
    max_workers: int = 0
    # TorchServe's default_service_handler: the handler of archives that name none.
    default_service_handler: str | None = None
    # TLS (see check_tls): gunicorn serves every listener over TLS when certfile is set.
    certfile: str | None = None
    keyfile: str | None = None
    # Schemes written in the addresses ({"inference": "https"}), held to certfile by check_tls.
    address_schemes: dict[str, str] = field(default_factory=dict)
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

    def set_address(self, name: str, text: str) -> None:
        """``name``'s listener at ``text`` (``host:port``, ``http://`` or ``https://``)."""
        setattr(self, f"{name}_address", parse_address(text))
        scheme = address_scheme(text)
        if scheme:
            self.address_schemes[name] = scheme
        else:
            self.address_schemes.pop(name, None)

    @property
    def tls(self) -> bool:
        return bool(self.certfile)

    def check_tls(self) -> None:
        """One TLS rule for every listener, or a ConfigError naming the setting.

        Gunicorn applies its ``certfile``/``keyfile`` to all the sockets it binds, so TLS is
        on for every listener when a certificate is set and off otherwise. An address written
        ``https://`` needs a certificate; one written ``http://`` is refused when there is one,
        rather than served over TLS against what it says. The certificate and key are loaded
        here, so a bad pair stops the server before it binds instead of in each frontend.
        """
        if self.keyfile and not self.certfile:
            raise ConfigError(
                "a private key (private_key_file / --keyfile) needs a certificate: set certificate_file / --certfile"
            )
        for name in ADDRESS_NAMES:
            scheme = self.address_schemes.get(name)
            host, port = getattr(self, f"{name}_address")
            if scheme == "https" and not self.certfile:
                raise ConfigError(
                    f"{name}_address is https://{host}:{port} but no certificate is set: set certificate_file and "
                    "private_key_file in config.properties, or --certfile and --keyfile (hookserve does not make "
                    "a self-signed certificate as TorchServe does)"
                )
            if scheme == "http" and self.certfile:
                raise ConfigError(
                    f"{name}_address is http://{host}:{port} but a certificate is set, and hookserve serves TLS on "
                    "every listener or on none (gunicorn applies one TLS setting to all its sockets): write "
                    f"https:// (or host:port) for {name}_address, or drop certificate_file / --certfile"
                )
        if self.certfile:
            # frontends and a reloaded config must not depend on the directory the server started in
            self.certfile = os.path.abspath(self.certfile)
            self.keyfile = self.keyfile and os.path.abspath(self.keyfile)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(self.certfile, self.keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(
                    f"cannot use certificate_file / --certfile {self.certfile} with private_key_file / --keyfile "
                    f"{self.keyfile or '(none: the key must be in the certificate file)'}: {exc}"
                ) from None

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
        for name in ADDRESS_NAMES:
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


# TorchServe's config.properties: what hookserve does with every key TorchServe 0.12 reads.
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


def _netty_threads(key: str, value: str) -> int:
    # TorchServe's 0 means "one thread per core"; frontends are processes here: keep one.
    return _int(key, value) or ServerConfig.frontend_workers


HONOURED, WARNED, REFUSED = "honoured", "warned", "refused"


@dataclass(frozen=True)
class TsKey:
    """What hookserve does with one TorchServe ``config.properties`` key.

    ``note`` completes "config.properties key 'KEY' ..." in the warning or the error, and is
    the "what hookserve does" cell of docs/configuration.md. A ``quiet`` value is the one that means what
    hookserve does anyway (``ipex_enable=false``): it is accepted without a word, and any
    other value gets ``does``.
    """

    does: str
    note: str
    apply: Callable[[ServerConfig, str, str], None] | None = None
    quiet: str | None = None

    def is_quiet(self, value: str) -> bool:
        return self.quiet is not None and value.strip().lower() == self.quiet


def _honour(field_name: str, convert: Callable[[str, str], Any], note: str) -> TsKey:
    return TsKey(HONOURED, note, lambda config, key, value: setattr(config, field_name, convert(key, value)))


def _address(name: str) -> TsKey:
    return TsKey(
        HONOURED,
        f"the {name} listener, `host:port`, `http://host:port` or `https://host:port` (see TLS)",
        lambda config, key, value: config.set_address(name, value),
    )


def _path(key: str, value: str) -> str:
    return value.strip()


def _check_bool(config: ServerConfig, key: str, value: str) -> None:
    _bool(key, value)  # read by apply_ts_properties itself


_NO_GRPC = "has no meaning in hookserve, which has no gRPC API (no gRPC listener is opened); ignored"
_METRICS = "is not yet supported (issue 16: metrics); ignored"
_KEYSTORE = (
    "names a Java keystore setting, which hookserve cannot use: export the key and certificate to PEM "
    "(openssl pkcs12 -in KEYSTORE -nodes; a JKS first through keytool -importkeystore -deststoretype PKCS12) "
    "and set certificate_file and private_key_file"
)

TS_KEYS: dict[str, TsKey] = {
    # listeners and TLS
    "inference_address": _address("inference"),
    "management_address": _address("management"),
    "metrics_address": _address("metrics"),
    "certificate_file": _honour(
        "certfile", _path, "PEM certificate (chain): every listener serves TLS (as `--certfile`)"
    ),
    "private_key_file": _honour("keyfile", _path, "PEM private key of certificate_file (as `--keyfile`)"),
    "keystore": TsKey(REFUSED, _KEYSTORE),
    "keystore_pass": TsKey(REFUSED, _KEYSTORE),
    "keystore_type": TsKey(REFUSED, _KEYSTORE),
    # models and workers
    "model_store": _honour("model_store", _path, "the model store folder (`--model-store` wins)"),
    "load_models": _honour(
        "models", _models, "models loaded at start: `name=archive,...`, `all`, or empty/`standalone` for none"
    ),
    "default_workers_per_model": _honour(
        "default_workers_per_model", _int, "model workers per model (0: one per GPU, else one per CPU core)"
    ),
    "default_response_timeout": _honour(
        "response_timeout", _int, "seconds a request may run before 504 (models that set none)"
    ),
    "default_startup_timeout": _honour(
        "startup_timeout", _int, "seconds a model worker may take to load (models that set none)"
    ),
    "job_queue_size": _honour("job_queue_size", _int, "requests queued per model (per frontend worker) before 503"),
    "max_request_size": _honour("max_request_size", _int, "largest request body in bytes (413 beyond)"),
    "number_of_gpu": _honour("number_of_gpu", _int, "most GPUs used"),
    "number_of_netty_threads": _honour(
        "frontend_workers", _netty_threads, "frontend (gunicorn) worker processes; 0 keeps one"
    ),
    "batch_size": _honour(
        "batch_size", _int, "hookserve's own key, not TorchServe's: batch size of models that set none"
    ),
    "max_batch_delay": _honour(
        "max_batch_delay", _int, "hookserve's own key, not TorchServe's: batch delay (ms) of models that set none"
    ),
    "models": TsKey(
        WARNED,
        "(per-model settings) is not yet supported: set them in the archive's model-config.yaml or through "
        "the management API; ignored",
    ),
    "model_snapshot": TsKey(
        REFUSED,
        "(a TorchServe snapshot) cannot be honoured, its models would not be loaded: list them in load_models "
        "and set their workers and batching in model-config.yaml or through the management API",
    ),
    "minWorkers": TsKey(WARNED, "is a per-model setting (model-config.yaml), not a server key; ignored"),
    "maxWorkers": TsKey(WARNED, "is a per-model setting (model-config.yaml), not a server key; ignored"),
    "unregister_model_timeout": TsKey(
        WARNED, "is not configurable: unregistering waits for the requests its workers accepted; ignored"
    ),
    "default_service_handler": _honour(
        "default_service_handler", _path, "the handler of archives that name none, unless registered with handler="
    ),
    "install_py_dep_per_model": TsKey(
        WARNED, "is not yet supported; the archive's requirements are not installed", quiet="false"
    ),
    "workflow_store": TsKey(WARNED, "has no meaning in hookserve, which does not serve workflows; ignored"),
    "python": TsKey(WARNED, "has no meaning in hookserve: model workers run in hookserve's own Python; ignored"),
    "initial_worker_port": TsKey(
        WARNED, "has no meaning in hookserve: model workers talk over Unix sockets, not ports; ignored"
    ),
    "initial_distribution_port": TsKey(WARNED, "has no meaning in hookserve, which does not start torchrun; ignored"),
    # security
    "allowed_urls": _honour(
        "allowed_urls",
        lambda k, v: [u.strip() for u in v.split(",") if u.strip()],
        "regexes that model URLs beyond the model store must match",
    ),
    "use_env_allowed_urls": TsKey(
        HONOURED, "with enable_envvars_config, lets $TS_ALLOWED_URLS set allowed_urls", _check_bool
    ),
    "enable_model_api": _honour(
        "enable_model_api", _bool, "allow registering models while management listens beyond loopback"
    ),
    "disable_token_authorization": _honour(
        "disable_token_auth", _bool, "run a management API beyond loopback without a token"
    ),
    "token_expiration_min": TsKey(
        WARNED, "has no meaning in hookserve: its management token (--management-token) does not expire; ignored"
    ),
    "blacklist_env_vars": TsKey(
        REFUSED,
        "cannot be honoured: model workers inherit the server's whole environment; remove the variables "
        "from the server's environment instead",
    ),
    "cors_allowed_origin": TsKey(
        WARNED, "is not supported: hookserve sends no CORS headers, so browsers keep other origins out; ignored"
    ),
    "cors_allowed_methods": TsKey(
        WARNED, "is not supported: hookserve sends no CORS headers, so browsers keep other origins out; ignored"
    ),
    "cors_allowed_headers": TsKey(
        WARNED, "is not supported: hookserve sends no CORS headers, so browsers keep other origins out; ignored"
    ),
    # request and response handling
    "decode_input_request": TsKey(
        REFUSED,
        "=false cannot be honoured: handlers always get JSON bodies decoded and text as str "
        "(TorchServe's default, true)",
        quiet="true",
    ),
    "service_envelope": TsKey(
        REFUSED,
        "cannot be honoured: hookserve has no request envelopes, so a KServe or JSON envelope "
        "would reach the handler as the body itself",
    ),
    "ts_open_inference_protocol": TsKey(
        REFUSED,
        "=true cannot be honoured: hookserve does not serve the Open Inference Protocol (KServe v2) endpoints",
        quiet="false",
    ),
    "max_response_size": TsKey(WARNED, "is not supported: hookserve does not cap response sizes; ignored"),
    "limit_max_image_pixels": TsKey(
        WARNED,
        "=false is not yet supported: the image handlers keep Pillow's limit on image size; ignored",
        quiet="true",
    ),
    "ts_header_key_sequence_id": TsKey(WARNED, "has no meaning in hookserve, which has no sequence batching; ignored"),
    "ts_header_key_sequence_start": TsKey(
        WARNED, "has no meaning in hookserve, which has no sequence batching; ignored"
    ),
    "ts_header_key_sequence_end": TsKey(WARNED, "has no meaning in hookserve, which has no sequence batching; ignored"),
    # metrics (issue 16)
    "enable_metrics_api": TsKey(WARNED, _METRICS),
    "metrics_mode": TsKey(WARNED, _METRICS),
    "metrics_config": TsKey(WARNED, _METRICS),
    "metric_time_interval": TsKey(WARNED, _METRICS),
    "disable_system_metrics": TsKey(WARNED, _METRICS),
    "system_metrics_cmd": TsKey(WARNED, _METRICS),
    "model_metrics_auto_detect": TsKey(WARNED, _METRICS),
    # gRPC
    "grpc_inference_address": TsKey(WARNED, _NO_GRPC),
    "grpc_management_address": TsKey(WARNED, _NO_GRPC),
    "grpc_inference_port": TsKey(WARNED, _NO_GRPC),
    "grpc_management_port": TsKey(WARNED, _NO_GRPC),
    "grpc_inference_max_connection_age_ms": TsKey(WARNED, _NO_GRPC),
    "grpc_management_max_connection_age_ms": TsKey(WARNED, _NO_GRPC),
    "grpc_inference_max_connection_age_grace_ms": TsKey(WARNED, _NO_GRPC),
    "grpc_management_max_connection_age_grace_ms": TsKey(WARNED, _NO_GRPC),
    "enable_grpc_ssl": TsKey(WARNED, _NO_GRPC),
    # CPU and accelerator tuning
    "ipex_enable": TsKey(
        WARNED, "is not supported: Intel Extension for PyTorch is not applied; ignored", quiet="false"
    ),
    "ipex_gpu_enable": TsKey(
        WARNED, "is not supported: Intel Extension for PyTorch is not applied; ignored", quiet="false"
    ),
    "cpu_launcher_enable": TsKey(
        WARNED, "is not supported: model workers are not started through torch's CPU launcher; ignored", quiet="false"
    ),
    "cpu_launcher_args": TsKey(
        WARNED, "is not supported: model workers are not started through torch's CPU launcher; ignored"
    ),
    # TorchServe's own process: Java, Netty, log4j, its install and its environment
    "vmargs": TsKey(WARNED, "has no meaning in hookserve (Java VM options); ignored"),
    "plugins_path": TsKey(
        WARNED, "has no meaning in hookserve (Java plugin jars): hookserve plugins are Python entry points; ignored"
    ),
    "netty_client_threads": TsKey(WARNED, "has no meaning in hookserve (Netty threads); ignored"),
    "prefer_direct_buffer": TsKey(WARNED, "has no meaning in hookserve (Netty buffers); ignored"),
    "use_native_io": TsKey(WARNED, "has no meaning in hookserve (Netty native I/O); ignored"),
    "io_ratio": TsKey(WARNED, "has no meaning in hookserve (Netty I/O ratio); ignored"),
    "async_logging": TsKey(WARNED, "has no meaning in hookserve (log4j asynchronous logging); ignored"),
    "cpp_log_config": TsKey(WARNED, "has no meaning in hookserve, which has no C++ backend; ignored"),
    "debug": TsKey(WARNED, "is not supported (TorchServe's debug mode); ignored", quiet="false"),
    "model_server_home": TsKey(WARNED, "has no meaning in hookserve (TorchServe's install folder); ignored"),
    "snapshot_store": TsKey(
        WARNED,
        "(an older TorchServe's) has no meaning in hookserve: its snapshot is a folder (--snapshot-dir); ignored",
        quiet="fs",
    ),
    "enable_envvars_config": TsKey(
        HONOURED,
        "`true`: $TS_<KEY> environment variables (TorchServe's names) override the file's keys; flags still win",
        _check_bool,
    ),
    "version": TsKey(WARNED, "(TorchServe's version, written in its snapshots) has no meaning in hookserve; ignored"),
    "tsConfigFile": TsKey(WARNED, "(written by TorchServe in its snapshots) has no meaning in hookserve; ignored"),
}

# $$NAME$$ in a value is replaced by the environment variable NAME, as TorchServe does.
ENV_REFERENCE = re.compile(r"\$\$([^$]+[^$])\$\$")


def _resolve_env(key: str, value: str) -> str:
    def lookup(match: re.Match) -> str:
        name = match[1]
        if name not in os.environ:
            raise ConfigError(f"config.properties: {key} refers to ${name}, which is not set")
        return os.environ[name]

    return ENV_REFERENCE.sub(lookup, value)


def ts_keys_markdown() -> str:
    """docs/configuration.md's table of TorchServe keys, generated from ``TS_KEYS``."""
    lines = ["| key | hookserve | what hookserve does |", "|---|---|---|"]
    for key, entry in TS_KEYS.items():
        does = entry.does + (f" unless `{entry.quiet}`" if entry.quiet else "")
        lines.append(f"| `{key}` | {does} | {entry.note} |")
    return "\n".join(lines) + "\n"


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


# Keys TorchServe does not take from TS_* variables (not TS_ constants of its ConfigManager)
NOT_FROM_ENV = {
    "use_native_io", "io_ratio", "metric_time_interval", "enable_envvars_config", "model_snapshot", "models",
    "version", "system_metrics_cmd", "use_env_allowed_urls", "python", "vmargs", "plugins_path", "tsConfigFile",
    "snapshot_store", "batch_size", "max_batch_delay", "minWorkers", "maxWorkers",
}  # fmt: skip
# TS_ constants whose name is not TS_ + the key in capitals
ENV_NAMES = {
    "token_expiration_min": "TS_TOKEN_EXPIRATION_TIME_MIN",
    "ts_open_inference_protocol": "TS_OPEN_INFERENCE_PROTOCOL",
    "ts_header_key_sequence_id": "TS_HEADER_KEY_SEQUENCE_ID",
    "ts_header_key_sequence_start": "TS_HEADER_KEY_SEQUENCE_START",
    "ts_header_key_sequence_end": "TS_HEADER_KEY_SEQUENCE_END",
}


def env_name(key: str) -> str | None:
    """The environment variable TorchServe reads ``key`` from with enable_envvars_config=true."""
    return None if key in NOT_FROM_ENV else ENV_NAMES.get(key, "TS_" + key.upper())


def _from_env(props: dict[str, str]) -> dict[str, tuple[str, str]]:
    """TorchServe's enable_envvars_config: ``key -> (value, $NAME)`` for each TS_* variable set."""
    if props.get("enable_envvars_config", "").strip().lower() != "true":
        return {}
    found = {}
    for key in TS_KEYS:
        name = env_name(key)
        if name is None or name not in os.environ:
            continue
        # as TorchServe: allowed_urls comes from the environment only when the file allows it
        if key == "allowed_urls" and props.get("use_env_allowed_urls", "").strip().lower() != "true":
            continue
        found[key] = (os.environ[name], f"${name}")
    return found


def apply_ts_properties(config: ServerConfig, props: dict[str, str], origin: str) -> None:
    """Apply TorchServe keys: honour, warn (once, naming the key) or refuse each, per ``TS_KEYS``.

    With ``enable_envvars_config=true``, TS_* environment variables override the file's keys.
    """
    settings = {key: (value, origin) for key, value in props.items()}
    settings.update(_from_env(props))
    unknown, refused = [], []
    for key, (value, source) in settings.items():
        entry = TS_KEYS.get(key)
        if entry is None:
            unknown.append(key)
        elif entry.does == HONOURED:
            entry.apply(config, key, _resolve_env(key, value))
        elif entry.is_quiet(value):
            continue
        elif entry.does == WARNED:
            log.warning("%s: config.properties key %r %s", source, key, entry.note)
        else:
            refused.append(f"{source}: config.properties key {key!r} {entry.note}")
    if refused:
        raise ConfigError("; ".join(refused))
    if unknown:
        raise ConfigError(f"{origin}: unknown key(s) {', '.join(sorted(unknown))}")


if __name__ == "__main__":
    print(ts_keys_markdown(), end="")
