"""``text_classifier`` against TorchServe 0.12's own: the same archive (an ``EmbeddingBag``
model as in TorchServe's text classification example, ``source_vocab.pt``,
``index_to_name.json``, packed by torch-model-archiver), the same texts (contractions,
accents, HTML, punctuation), hookserve serving them as one batch over HTTP and TorchServe's
backend (:mod:`torchserve_reference`) answering each; predictions and Captum explanations
agree within 1e-5. Bad input gets a 4xx and the worker keeps serving; a server that cannot
import Captum answers explanations with 501."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from helpers import Server, post, pythonpath, serving
from hookserve.handlers.text_classifier import TextClassifier
from hookserve.handlers.text_utils import ngrams_iterator
from parity import compare
from torchserve_reference import Field, extract_archive, torchserve_replies

MODEL_SOURCE = """
import torch
from torch import nn


class TextClassificationModel(nn.Module):
    def __init__(self, vocab_size=64, embed_dim=8, num_class=4):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, sparse=True)
        self.fc = nn.Linear(embed_dim, num_class)

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))
"""
LABELS = {"0": "World", "1": "Sports", "2": "Business", "3": "Sci/Tec"}
TEXTS = [
    "Don't panic: the <b>Café</b> won't close &amp; it's   fine!",
    "I'd've WON the match, naïve coach... (really)",
    "Stocks can't fall; markets aren't crashing?",
    "Y'all're reading about sci-fi <br /> rockets",
]
# A TorchServe handler that overrides preprocess with TorchServe 0.12's own, verbatim (one text).
TS_STYLE_HANDLER = """
import torch

from ts.handler_utils.text_utils import ngrams_iterator
from ts.torch_handler.text_classifier import TextClassifier


class FirstTextOnly(TextClassifier):
    def preprocess(self, data):
        line = data[0]
        text = line.get("data") or line.get("body")
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        text = self._remove_html_tags(text)
        text = text.lower()
        text = self._expand_contractions(text)
        text = self._remove_accented_characters(text)
        text = self._remove_punctuation(text)
        text = self._tokenize(text)
        text_tensor = torch.as_tensor(
            [self.source_vocab[token] for token in ngrams_iterator(text, self.ngrams)],
            device=self.device,
        )
        return text_tensor, text
"""
CONFIG = "batchSize: 4\nmaxBatchDelay: 3000\nminWorkers: 1\nmaxWorkers: 1\n"


def vocabulary(texts: list[str]) -> dict[str, int]:
    """Every word and word pair of ``texts`` after TorchServe's clean-up, with ids from 1:
    TorchServe looks each one up and fails on a token the vocabulary lacks."""
    cleaner = TextClassifier()
    vocab: dict[str, int] = {}
    for text in texts:
        for token in ngrams_iterator(cleaner._tokenize(cleaner._clean(text)), 2):
            vocab.setdefault(token, len(vocab) + 1)
    return vocab


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive, packed by torch-model-archiver as a TorchServe user packs it."""
    src = tmp_path_factory.mktemp("text-src")
    (src / "model.py").write_text(MODEL_SOURCE)
    namespace: dict = {}
    exec(MODEL_SOURCE, namespace)
    torch.manual_seed(0)
    model = namespace["TextClassificationModel"]()
    torch.save(model.state_dict(), src / "model.pt")
    vocab = vocabulary(TEXTS)
    assert len(vocab) < 64
    torch.save(vocab, src / "source_vocab.pt")
    (src / "index_to_name.json").write_text(__import__("json").dumps(LABELS))
    (src / "model-config.yaml").write_text(CONFIG)
    store = src / "store"
    store.mkdir()
    (src / "ts_style.py").write_text(TS_STYLE_HANDLER)
    for name, handler in [("textcls", "text_classifier"), ("textcls_ts", str(src / "ts_style.py"))]:
        subprocess.run(
            [
                sys.executable, "-m", "model_archiver.model_packaging",
                "--model-name", name, "--version", "1.0",
                "--model-file", str(src / "model.py"), "--serialized-file", str(src / "model.pt"),
                "--handler", handler,
                "--extra-files", f"{src / 'source_vocab.pt'},{src / 'index_to_name.json'}",
                "--config-file", str(src / "model-config.yaml"),
                "--export-path", str(store),
            ],
            check=True, capture_output=True, env={**__import__("os").environ, "TMPDIR": str(src)},
        )  # fmt: skip
    return store


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("text-serve")
    models = ["textcls=textcls.mar", "textcls_ts=textcls_ts.mar"]
    with serving(Server(["--model-store", str(store), "--models", *models], work)) as srv:
        yield srv


@pytest.fixture(scope="module")
def model_dir(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_archive(store / "textcls.mar", tmp_path_factory.mktemp("text-extracted"))


def batched(server: Server, path: str, bodies: list[dict]) -> list:
    """All requests at once, so the worker's batch (batchSize 4, maxBatchDelay 3 s) holds them."""
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda kwargs: post(server, path, **kwargs), bodies))
    for reply in replies:
        assert reply.status_code == 200, reply.text
    return [reply.json() for reply in replies]


def test_predictions_match_torchserve(server, model_dir, torchserve, parity_figures) -> None:
    ours = batched(
        server,
        "/predictions/textcls",
        [{"data": text.encode(), "headers": {"Content-Type": "text/plain; charset=utf-8"}} for text in TEXTS],
    )
    theirs = [
        torchserve_replies(torchserve, model_dir, [{"body": Field(text.encode(), "text/plain")}])[0] for text in TEXTS
    ]
    assert [reply.status for reply in theirs] == [200] * len(TEXTS)
    parity_figures["text_classifier"] = compare(ours, [reply.json() for reply in theirs])


def test_explanations_match_torchserve(server, model_dir, torchserve, parity_figures) -> None:
    targets = [1, 3, 0, 2]
    ours = batched(
        server,
        "/explanations/textcls",
        [{"json": {"data": text, "target": target}} for text, target in zip(TEXTS, targets, strict=True)],
    )
    theirs = [
        torchserve_replies(
            torchserve,
            model_dir,
            [{"body": Field(text.encode(), "text/plain"), "target": Field(str(target).encode(), "application/json")}],
            headers=[{"explain": "True"}],
        )[0]
        for text, target in zip(TEXTS, targets, strict=True)
    ]
    assert [reply.status for reply in theirs] == [200] * len(TEXTS)
    theirs_json = [reply.json() for reply in theirs]
    assert [sorted(reply) for reply in ours] == [["importances", "words"]] * len(TEXTS)
    assert [reply["words"] for reply in ours] == [reply["words"] for reply in theirs_json]
    parity_figures["text_classifier explanations"] = compare(ours, theirs_json)
    # The target of a query parameter is honoured as well as one in a JSON body.
    by_query = post(server, "/explanations/textcls", data=TEXTS[0], params={"target": "1"})
    compare(by_query.json(), ours[0], tolerance=1e-6)


def test_a_subclass_with_torchserves_own_preprocess_replies_as_torchserve(server, model_dir, torchserve) -> None:
    """One request at a time (its preprocess takes the first text of a batch, as TorchServe's)."""
    for text in TEXTS[:2]:
        body = {"body": Field(text.encode(), "text/plain")}
        theirs = torchserve_replies(torchserve, model_dir, [body])[0].json()
        ours = post(server, "/predictions/textcls_ts", data=text.encode(), headers={"Content-Type": "text/plain"})
        assert ours.status_code == 200, ours.text
        compare(ours.json(), theirs)
        target = {"target": Field(b"2", "application/json")}
        theirs = torchserve_replies(torchserve, model_dir, [body | target], headers=[{"explain": "True"}])[0].json()
        ours = post(server, "/explanations/textcls_ts", data=text.encode(), params={"target": "2"})
        assert ours.status_code == 200, ours.text
        compare(ours.json(), theirs)


def test_bad_text_input_is_a_400_and_the_worker_keeps_serving(server) -> None:
    cases = [
        ("/explanations/textcls", {"json": {"data": TEXTS[0], "target": 4}}, "target 4 is out of range"),
        ("/explanations/textcls", {"json": {"data": TEXTS[0], "target": "four"}}, "target must be a class index"),
        ("/predictions/textcls", {"data": "a zebra", "headers": {"Content-Type": "text/plain"}}, "'zebra'"),
        ("/predictions/textcls", {"data": b"\xff\xfe", "headers": {"Content-Type": "text/plain"}}, "not UTF-8"),
        ("/predictions/textcls", {"data": "?!", "headers": {"Content-Type": "text/plain"}}, "no words"),
    ]
    for path, kwargs, message in cases:
        reply = post(server, path, **kwargs)
        assert reply.status_code == 400, reply.text
        assert message in reply.json()["message"]
    assert post(server, "/predictions/textcls", data=TEXTS[1].encode()).status_code == 200


def test_explanations_without_captum_are_a_501(store: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "site"
    (blocked / "captum").mkdir(parents=True)
    (blocked / "captum" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'captum' (blocked by the test)\")\n"
    )
    env = {"PYTHONPATH": pythonpath(blocked)}
    args = ["--model-store", str(store), "--models", "textcls=textcls.mar"]
    with serving(Server(args, tmp_path, env=env)) as srv:
        reply = post(srv, "/explanations/textcls", data=TEXTS[0].encode())
        assert reply.status_code == 501, reply.text
        assert "pip install hookserve[explain]" in reply.json()["message"]
        assert post(srv, "/predictions/textcls", data=TEXTS[0].encode()).status_code == 200
