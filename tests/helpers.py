"""Test helpers: real servers on loopback and real model archives built on the spot."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import requests
import torch
from PIL import Image, ImageDraw

from hookserve.cli import main as hookserve_main
from hookserve.plugins.demo.model import MLP

DEMO_DIR = Path(__file__).resolve().parents[1] / "plugins" / "demo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_port_run(count: int) -> int:
    """A port P with P .. P+count-1 all free on loopback (``hookserve demo`` takes three in a row)."""
    while True:
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()


def process_group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) == pgid:
                pids.append(int(entry))
        except ProcessLookupError:
            continue
    return pids


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, ...); None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def cmdline(pid: int) -> list[str]:
    """The arguments ``pid`` was started with (none once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [os.fsdecode(arg) for arg in raw.split(b"\0")]


def wait_for(condition, timeout: float = 15.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``condition`` until it gives a true value, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


def wait_ping(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60.0) -> None:
    """Wait until every start-up model that can load runs its workers (``/ping`` 200 with no
    shortfall beyond models that failed to load); fail with the log if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text(errors='replace')}")
        try:
            reply = requests.get(f"{url}/ping", timeout=2)
            if reply.status_code == 200 and all(
                "failed to load at start-up" in problem for problem in reply.json().get("problems", [])
            ):
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server not healthy after {timeout}s:\n{log_path.read_text(errors='replace')}")


# ``gunicorn -c python:hookserve.gunicorn_conf 'hookserve.app:create_app()'``, the README's plain-gunicorn line
PLAIN_GUNICORN = [
    sys.executable,
    "-m",
    "gunicorn",
    "-c",
    "python:hookserve.gunicorn_conf",
    "hookserve.app:create_app()",
]
TS_CONFIG_SERVE = [sys.executable, "-m", "hookserve.cli", "serve", "--ncs", "--ts-config"]


def spawn_logged(argv: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """Start ``argv`` in its own session (so its whole process group can be signalled), its
    output in ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def pythonpath(site: Path) -> str:
    """``PYTHONPATH`` with ``site`` in front of the inherited one."""
    return os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


class Server:
    """``hookserve serve`` in its own process group, on free loopback ports."""

    def __init__(self, args: list[str], workdir: Path, env: dict | None = None, cwd: Path | None = None):
        self.ports = {name: free_port() for name in ("inference", "management", "metrics")}
        self.args = list(args)
        if not {"--snapshot-dir", "--no-snapshot", "--ncs"} & set(self.args):
            self.args += ["--snapshot-dir", str(workdir / f"snapshot-{self.ports['inference']}")]
        for name, port in self.ports.items():
            self.args += [f"--{name}-address", f"127.0.0.1:{port}"]
        self.log_path = workdir / f"server-{self.ports['inference']}.log"
        self.env = dict(os.environ, **(env or {}))
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hookserve.cli", "serve", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                cwd=self.cwd,
            )
        return self

    def url(self, path: str, listener: str = "inference") -> str:
        return f"http://127.0.0.1:{self.ports[listener]}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        wait_ping(self.url(""), self.process, self.log_path, timeout)

    def pids(self) -> list[int]:
        return process_group_pids(self.process.pid)

    def children(self) -> list[int]:
        """The processes the master started: its gunicorn frontends and the model manager."""
        master = self.process.pid
        return [p for p in self.pids() if p != master and parent_pid(p) == master]

    def frontend_pids(self) -> list[int]:
        return [p for p in self.children() if "hookserve.manager" not in cmdline(p)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise AssertionError(f"server did not stop within {timeout}s:\n{self.log()}") from None
        return self.process.returncode

    def kill_group(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """``server`` started and healthy for the block, stopped after it."""
    server.start()
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def post(server: Server, path: str, **kwargs) -> requests.Response:
    return requests.post(server.url(path), timeout=30, **kwargs)


def mgmt(server: Server, method: str, path: str, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 60)
    return requests.request(method, server.url(path, "management"), **kwargs)


def archive(
    workdir: Path,
    name: str,
    handler: str,
    *,
    files: dict[str, str] | None = None,
    flags: list[str] = (),
    archive_format: str = "default",
) -> Path:
    """Write ``files`` (name -> source text) and pack them with ``hookserve archive``.

    ``handler`` and ``flags`` may name files of ``files`` by their bare name.
    """
    src = workdir / f"src-{name}"
    src.mkdir(parents=True, exist_ok=True)
    for filename, text in (files or {}).items():
        (src / filename).write_text(textwrap.dedent(text))
    export = workdir / "store"
    export.mkdir(parents=True, exist_ok=True)
    local = {f: str(src / f) for f in files or {}}
    module, sep, function = handler.partition(":")
    code = hookserve_main(
        [
            "archive",
            "--model-name",
            name,
            "--handler",
            local.get(module, module) + sep + function,
            "--export-path",
            str(export),
            "--archive-format",
            archive_format,
            "--force",
            *[local.get(flag, flag) for flag in flags],
        ]
    )
    assert code == 0
    suffix = {"default": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}[archive_format]
    return export / f"{name}{suffix}"


def mlp_weights(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    torch.save(MLP().state_dict(), path)
    return path


def mlp_archive(workdir: Path, name: str = "mlp") -> Path:
    """The demo MLP (eager model file + state dict) with the demo's batched handler."""
    src = workdir / f"src-{name}"
    src.mkdir(parents=True, exist_ok=True)
    weights = mlp_weights(src / "mlp.pt")
    flags = ["--version", "1.0", "--model-file", str(DEMO_DIR / "model.py"), "--serialized-file", str(weights)]
    return archive(workdir, name, str(DEMO_DIR / "handler.py"), flags=flags)


def mlp_expected(rows: list[list[float]]) -> list[dict]:
    torch.manual_seed(0)
    model = MLP().eval()
    with torch.inference_mode():
        scores = model(torch.tensor(rows, dtype=torch.float32))
    return [{"class": int(s.argmax()), "scores": s.tolist()} for s in scores]


# A real torch model: y = w * x, with w stored in each version's weights.
SCALE_MODEL = """
import torch


class Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1, bias=False)

    def forward(self, x):
        return self.linear(x)
"""

# A BaseHandler subclass: the model comes from the archive, the answer names the version
# the worker loaded (from the manifest) and the worker's pid.
VERSION_HANDLER = """
import json
import os

import torch

from hookserve.handlers.base_handler import BaseHandler


class VersionHandler(BaseHandler):
    def preprocess(self, data):
        return torch.tensor([[float(row.get("body"))] for row in data])

    def postprocess(self, data):
        version = self.context.manifest["model"]["modelVersion"]
        return [{"version": version, "y": round(float(v), 4), "pid": os.getpid()} for v in data[:, 0]]

    def describe_handle(self):
        props = self.context.system_properties
        return json.dumps(
            {
                "handler": type(self).__name__,
                "version": self.context.manifest["model"]["modelVersion"],
                "batch_size": props["batch_size"],
                "gpu_id": props["gpu_id"],
            }
        )
"""


def scale_archive(work: Path, version: str, factor: float, file_name: str, name: str = "ver") -> Path:
    """An archive of the Scale model (weight ``factor``) as ``store/<file_name>.mar``."""
    weights = work / f"weights-{file_name}" / "scale.pt"
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"linear.weight": torch.tensor([[factor]])}, weights)
    packed = archive(
        work,
        name,
        "handler.py",
        files={"model.py": SCALE_MODEL, "handler.py": VERSION_HANDLER},
        flags=["--version", version, "--model-file", "model.py", "--serialized-file", str(weights)],
    )
    return packed.rename(packed.with_name(f"{file_name}.mar"))


def folder_archive(model_dir: Path, files: dict[str, str] | None = None, name: str = "m", **model: str):
    """A folder archive written in place: ``files`` plus a manifest with ``model`` keys."""
    from hookserve.archive.reading import open_archive

    for filename, text in (files or {}).items():
        (model_dir / filename).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / filename).write_text(text)
    (model_dir / "MAR-INF").mkdir(parents=True, exist_ok=True)
    (model_dir / "MAR-INF" / "MANIFEST.json").write_bytes(manifest_json(name, **model))
    return open_archive(model_dir, model_dir / "work")


def manifest_json(name: str = "m", **model: str) -> bytes:
    """A ``MAR-INF/MANIFEST.json``: version 1.0 of ``name`` with ``model`` keys."""
    return json.dumps({"runtime": "python", "model": {"modelName": name, "modelVersion": "1.0", **model}}).encode()


def fake_distribution(
    site: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """A distribution as pip leaves it: a ``.dist-info`` with METADATA and entry points."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[hookserve]\n{lines}\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


def photo_like(width: int, height: int, mode: str = "RGB", image_format: str = "JPEG") -> bytes:
    """An encoded image of shapes on a gradient under grain, seeded by its size: detail enough
    that a JPEG decoded at a reduced scale (``fast_decode``) visibly differs from a full decode."""
    rng = random.Random(width + height)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y, radius = rng.randrange(width), rng.randrange(height), rng.randrange(10, height // 3)
        color = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    image = Image.blend(image, grain, 0.3)
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, format=image_format, quality=90)
    return buffer.getvalue()
