"""docs/plugins.md, run: the page's plugin modules are one package, ``hookserve-tour``, built
and pip-installed into a folder that the server's ``PYTHONPATH`` names, so every hook is
implemented by a real entry point of an installed distribution; the page's models are packed
and served by one server, and each hook's test replays the page's commands against it
(``doc_pages`` reads the page). ``test_every_example_is_run`` fails when the page gains an
example no test runs, ``test_every_hook_has_a_section_and_a_tour_plugin`` when a hook has
no example.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import requests
import torch

import doc_pages
from doc_pages import DocPage, cli, run_command, serve_args
from helpers import Server, pythonpath
from hookserve import hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
PAGE = DocPage(DOC)
TOUR = "hookserve-tour"

# The blocks the tests run; test_every_example_is_run checks this against the page.
RUN_BLOCKS = {
    "install",
    "disable",
    "pack",
    "serve",
    "load",
    "handler-plugin",
    "handle-batch",
    "preprocess",
    "stages",
    "explain",
    "describe",
    "decode",
    "encode",
    "batcher",
    "select-device",
    "handler-classes",
    "http-routes",
    "http-app",
    "configure",
    "install-dependencies",
    "record-metrics",
    "cli-commands",
}
MODULES = [
    "json_weights",
    "item_handlers",
    "batch_size_header",
    "vector_input",
    "flip_average",
    "label_names",
    "saliency",
    "model_card",
    "csv_input",
    "tensor_output",
    "fixed_window",
    "placement",
    "echo_handler",
    "archives_route",
    "allow_browsers",
    "batching_defaults",
    "model_env",
    "request_counts",
    "manifest_command",
]
FILE_BLOCKS = {
    f"{TOUR}/pyproject.toml",
    f"{TOUR}/hookserve_tour/__init__.py",
    *(f"{TOUR}/hookserve_tour/{module}.py" for module in MODULES),
    "tiny_model.py",
    "make_weights.py",
    "linear.json",
    "linear-config.yaml",
    "celsius.py",
    "tiny-config.yaml",
    "model_info.py",
    "points.csv",
    "double.py",
    "count.py",
    "collect-config.yaml",
    "together.py",
    "greet-config.yaml",
    "greet.py",
}


def test_every_example_is_run():
    PAGE.check_every_example_is_run(RUN_BLOCKS, FILE_BLOCKS)


def hook_names() -> set[str]:
    return {name for name in dir(hookspecs) if name.startswith("hookserve_")}


def listed_plugins(stdout: str) -> dict[str, set[str]]:
    """``hookserve plugins`` output: plugin name -> its hooks, for the tour's plugins."""
    found = re.findall(rf"^(\S+)  \[{TOUR} 0\.1\.0\]  \S+\n    hooks: (.*)$", stdout, re.M)
    return {name: set(hooks.split(", ")) for name, hooks in found}


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The reader's folder: the page's files written out, the tour installed, the models packed."""
    work = tmp_path_factory.mktemp("docs-plugins")
    PAGE.write_files(work)
    return work


@pytest.fixture(scope="module")
def tour_env(workdir) -> dict[str, str]:
    """The environment that sees the installed tour: its site folder on ``PYTHONPATH``."""
    site = workdir / "site"
    env = {"SITE": str(site), "PYTHONPATH": pythonpath(site)}
    for block in ("install", "pack"):
        for command in PAGE.commands(block):
            run_command(command, workdir, env)
    return env


@pytest.fixture(scope="module")
def server(workdir, tour_env):
    (command,) = PAGE.commands("serve")
    srv = Server(serve_args(command), workdir, {"PYTHONPATH": tour_env["PYTHONPATH"]}, cwd=workdir).start()
    try:
        srv.wait_healthy(180)
        yield srv
    finally:
        srv.stop()


def replay(server: Server, block: str, workdir: Path, env: dict[str, str] | None = None) -> list:
    return doc_pages.replay(server, PAGE, block, workdir, env)


# ---------------------------------------------------------- the package and the order


def test_every_hook_has_a_section_and_a_tour_plugin(tour_env, workdir):
    text = DOC.read_text(encoding="utf-8")
    headings = "\n".join(re.findall(r"^#+ .*$", text, re.M))
    headed = set(re.findall(r"`(hookserve_\w+)`", headings))
    assert headed == hook_names()
    listed = listed_plugins(cli(["plugins"], workdir, {"PYTHONPATH": tour_env["PYTHONPATH"]}).stdout)
    assert set(listed) == set(MODULES)  # one entry point per module, all loaded
    assert set().union(*listed.values()) == hook_names()


def test_disable_plugin(tour_env, workdir):
    env = {"PYTHONPATH": tour_env["PYTHONPATH"]}
    one, whole = PAGE.commands("disable")
    listed = listed_plugins(run_command(one, workdir, env).stdout)
    assert set(listed) == set(MODULES) - {"placement"}
    result = run_command(whole, workdir, env)
    assert result.stderr == "" and listed_plugins(result.stdout) == {} and TOUR not in result.stdout
    assert "gpu  [builtin: hookserve " in result.stdout


# ------------------------------------------------------------------- one test per hook


def test_load(server, workdir):
    replay(server, "load", workdir)  # nothing but the tour's loader reads a .json model


def test_handler_plugin(server, workdir):
    # Celsius.handle would fail the whole batch with a 500; the adapter makes it this request's 400.
    replay(server, "handler-plugin", workdir)


def test_handle_batch(server, workdir):
    replay(server, "handle-batch", workdir)


def test_preprocess(server, workdir):
    replay(server, "preprocess", workdir)


def test_infer(server, workdir):
    """The tour's flip averaging, not the plain forward pass, made tiny's scores."""
    spec = importlib.util.spec_from_file_location("doc_tiny_model", workdir / "tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.TinyNet()
    net.load_state_dict(torch.load(workdir / "tiny.pt", weights_only=True))
    row = torch.tensor([[0.5, -1.0, 2.0, 0.0]])
    with torch.inference_mode():
        averaged = ((net(row) + net(row.flip(-1))) / 2).softmax(dim=1).max().item()
        plain = net(row).softmax(dim=1).max().item()
    reply = requests.post(server.url("/predictions/tiny"), json=row[0].tolist(), timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["score"] == round(averaged, 4) and abs(averaged - plain) > 1e-3


def test_postprocess(server, workdir):
    replay(server, "stages", workdir)


def test_explain(server, workdir):
    replay(server, "explain", workdir)


def test_describe(server, workdir):
    replay(server, "describe", workdir)


def test_decode_input(server, workdir):
    replay(server, "decode", workdir)


def test_encode_output(server, workdir):
    replay(server, "encode", workdir)


def test_batcher(server, workdir):
    replay(server, "batcher", workdir)


def test_select_device(server, workdir):
    replay(server, "select-device", workdir)


def test_handler_classes(server, workdir):
    replay(server, "handler-classes", workdir)


def test_http_routes(server, workdir):
    replay(server, "http-routes", workdir)


def test_http_app(server, workdir):
    replay(server, "http-app", workdir)
    # the wrapper wraps every listener's app
    reply = requests.get(server.url("/models", "management"), timeout=10)
    assert reply.status_code == 200 and reply.headers["access-control-allow-origin"] == "*"


def test_configure(server, workdir):
    replay(server, "configure", workdir)


def test_install_dependencies(server, workdir):
    replay(server, "install-dependencies", workdir)


def test_record_metrics(server, workdir):
    replay(server, "record-metrics", workdir)


def test_cli_commands(workdir, tour_env):
    for command in PAGE.commands("cli-commands"):
        run_command(command, workdir, {"PYTHONPATH": tour_env["PYTHONPATH"]})
