"""Test helpers: real servers on loopback and real model archives built on the spot."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import requests
import torch

from hookserve.cli import main as hookserve_main
from hookserve.demo.model import MLP

DEMO_DIR = Path(__file__).resolve().parents[1] / "core" / "demo"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


class Server:
    """``hookserve serve`` in its own process group, on free loopback ports."""

    def __init__(self, args: list[str], workdir: Path, env: dict | None = None):
        self.ports = {name: free_port() for name in ("inference", "management", "metrics")}
        self.args = list(args)
        if not {"--snapshot-dir", "--no-snapshot", "--ncs"} & set(self.args):
            self.args += ["--snapshot-dir", str(workdir / f"snapshot-{self.ports['inference']}")]
        for name, port in self.ports.items():
            self.args += [f"--{name}-address", f"127.0.0.1:{port}"]
        self.log_path = workdir / f"server-{self.ports['inference']}.log"
        self.env = dict(os.environ, **(env or {}))
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hookserve.cli", "serve", *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        return self

    def url(self, path: str, listener: str = "inference") -> str:
        return f"http://127.0.0.1:{self.ports[listener]}{path}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url("/ping"), timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy after {timeout}s:\n{self.log()}")

    def pids(self) -> list[int]:
        return process_group_pids(self.process.pid)

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


def mlp_archive(workdir: Path, name: str = "mlp", extra_flags: list[str] = ()) -> Path:
    """The demo MLP (eager model file + state dict) with the demo's batched handler."""
    src = workdir / f"src-{name}"
    src.mkdir(parents=True, exist_ok=True)
    weights = mlp_weights(src / "mlp.pt")
    export = workdir / "store"
    export.mkdir(parents=True, exist_ok=True)
    assert (
        hookserve_main(
            [
                "archive",
                "--model-name",
                name,
                "--version",
                "1.0",
                "--handler",
                str(DEMO_DIR / "handler.py"),
                "--model-file",
                str(DEMO_DIR / "model.py"),
                "--serialized-file",
                str(weights),
                "--export-path",
                str(export),
                "--force",
                *extra_flags,
            ]
        )
        == 0
    )
    return export / f"{name}.mar"


def mlp_expected(rows: list[list[float]]) -> list[dict]:
    torch.manual_seed(0)
    model = MLP().eval()
    with torch.inference_mode():
        scores = model(torch.tensor(rows, dtype=torch.float32))
    return [{"class": int(s.argmax()), "scores": s.tolist()} for s in scores]


def folder_archive(model_dir: Path, files: dict[str, str] | None = None, name: str = "m", **model: str):
    """A folder archive written in place: ``files`` plus a manifest with ``model`` keys."""
    from hookserve.archive import open_archive

    for filename, text in (files or {}).items():
        (model_dir / filename).parent.mkdir(parents=True, exist_ok=True)
        (model_dir / filename).write_text(text)
    (model_dir / "MAR-INF").mkdir(parents=True, exist_ok=True)
    manifest = {"runtime": "python", "model": {"modelName": name, "modelVersion": "1.0", **model}}
    (model_dir / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))
    return open_archive(model_dir, model_dir / "work")
