"""Plugin packages built and installed by the tests: a source tree with a ``pyproject.toml``
that declares ``hookserve`` entry points, installed by pip into a folder that a server's
``PYTHONPATH`` then names, exactly as a user's ``pip install my-plugin`` would leave it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path


def install_distribution(
    site: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> Path:
    """Build ``dist`` from ``modules`` (dotted name -> source) and pip-install it into ``site``.

    Returns ``site``; its ``<dist>-<version>.dist-info`` holds the entry points pip wrote.
    """
    source = site.parent / f"{dist}-src"
    for module, text in modules.items():
        path = source / (module.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    packages = sorted({m.rsplit(".", 1)[0] for m in modules if "." in m})
    for package in packages:
        init = source / package.replace(".", "/") / "__init__.py"
        if not init.exists():
            init.write_text("")
    top_modules = sorted(m for m in modules if "." not in m)
    lines = "\n".join(f'{name} = "{target}"' for name, target in entry_points.items())
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "{version}"

            [project.entry-points.hookserve]
            """
        )
        + lines
        + "\n\n[tool.setuptools]\n"
        + f"py-modules = {top_modules!r}\npackages = {packages!r}\n".replace("'", '"')
    )
    result = pip_install(site, [str(source)])
    assert result.returncode == 0, f"pip install {source} failed:\n{result.stdout}\n{result.stderr}"
    return site


def pip_install(
    site: Path, args: list[str], cwd: Path | None = None, offline: bool = False
) -> subprocess.CompletedProcess:
    """``pip install --no-deps --target site ARGS``: into a folder a server's ``PYTHONPATH`` names,
    never into the test environment; ``offline`` forbids the package index."""
    # Without setuptools in this environment pip builds in isolation (and fetches it).
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            *isolation,
            *(["--no-index"] if offline else []),
            "--target",
            str(site),
            *args,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
