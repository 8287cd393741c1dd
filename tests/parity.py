"""Parity with TorchServe 0.12: one recursive comparison of two replies, the archive built by
the real ``torch-model-archiver`` CLI, and the figures the run reports.

A reply matches when it has the same structure (dict keys, list lengths, strings, ints, bools,
None) and its floats are within ``TOLERANCE`` of TorchServe's; the largest difference seen is
what ``tests/conftest.py`` prints at the end of the run (``parity <case>: max |Δ| = ...``).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The bar for "the same numbers": float32 arithmetic done in the same order agrees far
# closer than this; a different resize, crop or normalization is off by 1e-3 or more.
TOLERANCE = 1e-5


@dataclass
class Difference:
    """The largest absolute difference between the numbers of two replies, and how many were compared."""

    largest: float = 0.0
    numbers: int = 0

    def add(self, other: Difference) -> None:
        self.largest = max(self.largest, other.largest)
        self.numbers += other.numbers


def compare(ours: object, theirs: object, tolerance: float = TOLERANCE, where: str = "reply") -> Difference:
    """``ours`` against TorchServe's ``theirs``: an AssertionError naming the first place they
    differ (``where`` is its path, e.g. ``reply[0]['cat']``); else the largest difference."""
    found = Difference()
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{where}: TorchServe has a dict, hookserve {type(ours).__name__}"
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != TorchServe's {list(theirs)}"
        for key, value in theirs.items():
            found.add(compare(ours[key], value, tolerance, f"{where}[{key!r}]"))
    elif isinstance(theirs, list):
        assert isinstance(ours, list), f"{where}: TorchServe has a list, hookserve {type(ours).__name__}"
        assert len(ours) == len(theirs), f"{where}: {len(ours)} items, TorchServe {len(theirs)}"
        for index, (mine, value) in enumerate(zip(ours, theirs, strict=True)):
            found.add(compare(mine, value, tolerance, f"{where}[{index}]"))
    elif isinstance(theirs, float):
        assert isinstance(ours, float), f"{where}: TorchServe has the float {theirs}, hookserve {ours!r}"
        difference = abs(ours - theirs)
        assert difference <= tolerance, f"{where}: {ours} != TorchServe's {theirs} (|Δ| = {difference:.3g})"
        found = Difference(difference, 1)
    else:
        # str, int, bool, None: exactly TorchServe's, type included (a label 1 is not "1").
        assert type(ours) is type(theirs) and ours == theirs, f"{where}: {ours!r} != TorchServe's {theirs!r}"
        if isinstance(theirs, int) and not isinstance(theirs, bool):
            found = Difference(0.0, 1)
    return found


def torch_model_archiver(export: Path, name: str, *flags: str) -> Path:
    """``torch-model-archiver --model-name name --version 1.0 ... --export-path export``, the
    real 0.12 CLI; the path of the ``.mar`` it wrote."""
    export.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            "--model-name",
            name,
            "--version",
            "1.0",
            "--export-path",
            str(export),
            "--force",
            *flags,
        ],
        check=True,
    )
    return export / f"{name}.mar"
