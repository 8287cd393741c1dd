"""``hookserve demo``: pack a small MLP into an archive and serve it on 127.0.0.1.

``model.py`` and ``handler.py`` next to this file are the archive's model file and
handler, exactly as a model author would write them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hookserve.archive.writing import ArchiveOptions, write_archive
from hookserve.config import ModelSpec, ServerConfig

HERE = Path(__file__).resolve().parent


def build_demo_archive(folder: Path) -> tuple[Path, Path]:
    """Write weights (seed 0), a sample body and ``demo.mar`` into ``folder``."""
    import torch

    from hookserve.demo.model import MLP

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    weights = folder / "mlp.pt"
    torch.save(MLP().state_dict(), weights)
    sample = folder / "sample.json"
    torch.manual_seed(1234)
    sample.write_text(json.dumps([round(v, 6) for v in torch.randn(64).tolist()]))
    archive = write_archive(
        ArchiveOptions(
            model_name="demo",
            handler=str(HERE / "handler.py"),
            model_file=str(HERE / "model.py"),
            serialized_file=str(weights),
            export_path=str(folder),
            force=True,
        )
    )
    return archive, sample


def run_demo(args: argparse.Namespace) -> int:
    from hookserve.server import HookserveApplication

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="hookserve-demo-"))
    # built in a child process: the server's processes fork from this one and must not carry torch
    subprocess.run([sys.executable, "-m", "hookserve.demo", str(folder)], check=True)
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
