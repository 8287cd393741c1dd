"""The demo archive: a small MLP packed with its handler, as a model author would pack it.

``model.py`` and ``handler.py`` next to this file are the archive's model file and
handler, exactly as a model author would write them.
"""

from __future__ import annotations

import json
from pathlib import Path

from hookserve.archive.writing import ArchiveOptions, write_archive

HERE = Path(__file__).resolve().parent


def build_demo_archive(folder: Path) -> tuple[Path, Path]:
    """Write weights (seed 0), a sample body and ``demo.mar`` into ``folder``."""
    import torch

    from hookserve.plugins.demo.model import MLP

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
