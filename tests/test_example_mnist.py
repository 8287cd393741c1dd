"""examples/mnist/README.md, run: in a copy of the example folder its commands make the
weights and the digit, build the archive and start the server, and the prediction curl is
replayed against it and must give the digit the page prints (``doc_pages`` reads the page's
marked examples). The explain command is plain text on the page: Captum is an optional extra.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

import doc_pages
from doc_pages import DocPage, run_command, serve_args
from helpers import Server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mnist"
PAGE = DocPage(EXAMPLE / "README.md")
RUN_BLOCKS = {"make", "archive", "serve", "predict"}
# Made by the page's commands, never copied from a reader's run in the example folder.
MADE = ("mnist_cnn.pt", "model_store", "0.png")


def test_every_example_is_run():
    PAGE.check_every_example_is_run(RUN_BLOCKS, set())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the example folder where the page's make and archive commands have run."""
    work = tmp_path_factory.mktemp("example-mnist") / "mnist"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("__pycache__", *MADE))
    for block in ("make", "archive"):
        for command in PAGE.commands(block):
            run_command(command, work, {})
    return work


@pytest.fixture(scope="module")
def server(workdir):
    (command,) = PAGE.commands("serve")
    srv = Server(serve_args(command), workdir, cwd=workdir).start()
    try:
        srv.wait_healthy(120)
        yield srv
    finally:
        srv.stop()


def test_the_committed_digit_is_the_one_the_page_draws(workdir):
    drawn, committed = (Image.open(folder / "0.png") for folder in (workdir, EXAMPLE))
    assert (drawn.mode, drawn.size, drawn.tobytes()) == (committed.mode, committed.size, committed.tobytes())


def test_predict(server, workdir):
    (reply,) = doc_pages.replay(server, PAGE, "predict", workdir)
    assert reply.json() == 0
