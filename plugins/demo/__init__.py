"""``hookserve demo``: pack a small MLP into an archive and serve it on 127.0.0.1.

A builtin plugin's command (``hookserve_cli_commands``): the core knows no demo.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from hookserve.hookspecs import hookimpl
from hookserve.plugin_types import CliCommand


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port", type=int, default=8080, help="inference port (management and metrics use the next two)"
    )
    parser.add_argument("--dir", default=None, help="where to write the demo archive (default: a temporary folder)")


def run_demo(args: argparse.Namespace) -> int:
    from hookserve.config import ModelSpec, ServerConfig
    from hookserve.server import HookserveApplication

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hookserve-demo-"))
    # built in a child process: the server's processes fork from this one and must not carry torch
    subprocess.run([sys.executable, "-m", "hookserve.plugins.demo", str(folder)], check=True)
    archive, sample = folder / "demo.mar", folder / "sample.json"
    config = ServerConfig(
        inference_address=("127.0.0.1", args.port),
        management_address=("127.0.0.1", args.port + 1),
        metrics_address=("127.0.0.1", args.port + 2),
        models=[ModelSpec(source=str(archive), name="demo")],
        default_workers_per_model=1,
    )
    print(f"demo archive: {archive}")
    print("once the model is loaded (about a second), ask it for a prediction with:")
    print(
        f"  curl -H 'Content-Type: application/json' --data @{sample} http://127.0.0.1:{args.port}/predictions/demo",
        flush=True,
    )
    HookserveApplication(config).run()
    return 0


@hookimpl
def hookserve_cli_commands() -> list[CliCommand]:
    return [
        CliCommand(
            name="demo",
            help="build a small demo model and serve it on 127.0.0.1",
            add_arguments=add_arguments,
            run=run_demo,
        )
    ]
