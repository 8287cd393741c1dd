"""Plugin discovery through real entry points: installed, broken, blocked, misspelled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from helpers import Server, archive, fake_distribution, mlp_archive, pythonpath, serving

EXAMPLE_SOURCE = "hookserve-example 0.1.0"


@pytest.fixture
def plugin_site(tmp_path):
    site = tmp_path / "site"
    fake_distribution(
        site,
        "broken-plugin",
        "1.2.3",
        {"broken": "broken_plugin_mod"},
        {"broken_plugin_mod": "raise RuntimeError('this plugin cannot import')\n"},
    )
    fake_distribution(
        site,
        "blocked-plugin",
        "0.0.1",
        {"blocked": "blocked_plugin_mod"},
        {"blocked_plugin_mod": f"open({str(tmp_path / 'imported')!r}, 'w').write('yes')\n"},
    )
    fake_distribution(
        site,
        "typo-plugin",
        "2.0",
        {"typo": "typo_plugin_mod"},
        {
            "typo_plugin_mod": """
        from hookserve.hookspecs import hookimpl

        @hookimpl
        def hookserve_preproces(handler, data, context):
            return data
    """
        },
    )
    return site


def run_cli(args: list[str], site: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = pythonpath(site)
    return subprocess.run(
        [sys.executable, "-m", "hookserve.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_plugins_lists_builtins_and_the_installed_example():
    result = run_cli(["plugins"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    example = next(i for i, line in enumerate(lines) if line.startswith("example "))
    assert EXAMPLE_SOURCE in lines[example] and "hookserve_example.plugin" in lines[example]
    assert "hookserve_handler_classes" in lines[example + 1] and "hookserve_infer" in lines[example + 1]
    assert any(line.startswith("gpu  [builtin: hookserve 0.1.0]  hookserve.plugins.gpu") for line in lines)


def test_broken_plugins_are_named_with_their_distribution_and_skipped(plugin_site, tmp_path):
    result = run_cli(["plugins", "--disable-plugin", "blocked"], plugin_site)
    assert result.returncode == 0, result.stderr
    assert "broken-plugin 1.2.3" in result.stderr and "this plugin cannot import" in result.stderr
    assert "typo-plugin 2.0" in result.stderr and "hookserve_preproces" in result.stderr
    assert "broken " not in result.stdout and "typo " not in result.stdout
    assert "example " in result.stdout  # the healthy plugin still loads
    assert not (tmp_path / "imported").exists(), "a blocked plugin must never be imported"


def test_blocking_by_environment_variable(plugin_site, tmp_path):
    env_site = {"HOOKSERVE_DISABLE_PLUGINS": "blocked,broken-plugin,typo"}
    result = subprocess.run(
        [sys.executable, "-m", "hookserve.cli", "plugins"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(plugin_site), **env_site),
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stderr.strip() == ""
    assert not (tmp_path / "imported").exists()


def test_strict_mode_makes_a_broken_plugin_fatal(plugin_site):
    result = run_cli(["plugins", "--strict-plugins", "--disable-plugin", "typo"], plugin_site)
    assert result.returncode == 2
    assert "broken-plugin 1.2.3" in result.stderr and "RuntimeError" in result.stderr


def test_a_builtin_can_be_disabled_but_not_an_essential_one():
    result = run_cli(["plugins", "--disable-plugin", "gpu"])
    assert result.returncode == 0 and "gpu " not in result.stdout
    result = run_cli(["plugins", "--disable-plugin", "stages"])
    assert result.returncode == 2 and "essential" in result.stderr
    result = run_cli(["plugins", "--disable-plugin", "hookserve"])  # the builtins' distribution
    assert result.returncode == 2 and "essential" in result.stderr


def test_builtins_are_the_entry_points_of_the_hookserve_distribution():
    """Every builtin comes from an entry point hookserve declares, loaded as third-party ones are."""
    import importlib.metadata

    from hookserve.pluginmanager import create_plugin_manager

    declared = {
        ep.name: ep.value
        for ep in importlib.metadata.entry_points(group="hookserve")
        if ep.dist is not None and ep.dist.metadata["Name"] == "hookserve"
    }
    assert set(declared) == {
        "loader",
        "stages",
        "codecs",
        "gpu",
        "batching",
        "handlers",
        "dependencies",
        "http",
        "demo",
    }
    pm = create_plugin_manager(third_party=False)
    version = importlib.metadata.version("hookserve")
    assert pm.sources == {name: f"builtin: hookserve {version}" for name in declared}
    assert {name: pm.get_plugin(name).__name__ for name in declared} == declared


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("plugins")
    mlp_archive(work)
    archive(work, "echo", "example_echo")
    server = Server(["--model-store", str(work / "store"), "--workers", "1", "--models", "mlp.mar", "echo.mar"], work)
    with serving(server):
        yield server


def test_installed_plugin_wraps_the_infer_stage_of_a_served_model(served):
    reply = requests.post(served.url("/predictions/mlp"), json=[0.0] * 64, timeout=30)
    assert reply.status_code == 200
    assert float(reply.headers["x-example-infer-ms"]) > 0


def test_installed_plugin_handler_name_resolves(served):
    reply = requests.post(served.url("/predictions/echo"), json={"hello": "world"}, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"model": "echo", "echo": {"body": {"hello": "world"}}}
