"""The explicit package list in pyproject.toml names every package folder."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_package_list_is_complete():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = project["package-dir"]
    listed = set(project["packages"])
    found = set()
    for top, folder in mapping.items():
        for init in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in init.parts:
                continue
            package_dir = init.parent
            assert (package_dir / "__init__.py").exists(), f"{package_dir} holds Python files but no __init__.py"
            relative = package_dir.relative_to(ROOT / folder).parts
            found.add(".".join((top, *relative)))
    assert found == listed
