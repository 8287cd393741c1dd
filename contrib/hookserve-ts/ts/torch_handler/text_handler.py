"""``ts.torch_handler.text_handler.TextHandler``: TorchServe's base for text handlers.

Its text clean-up helpers (``_remove_html_tags``, ``_remove_accented_characters``,
``_remove_punctuation``) and its ``basic_english`` tokenizer need no torchtext and work as in
TorchServe. The source vocabulary (``source_vocab.pt``) is a pickled torchtext ``Vocab``, so
``initialize`` needs torchtext installed and says so when it is not.
``_expand_contractions`` raises: TorchServe's contraction table is not part of hookserve-ts.
"""

from __future__ import annotations

import importlib.util
import os
import re
import string
import unicodedata
from abc import ABC
from typing import Any

import torch

from hookserve.handlers.base_handler import BaseHandler
from ts.utils.util import CLEANUP_REGEX

# torchtext's ``basic_english`` normalisation: each pattern, in order, becomes its replacement.
_BASIC_ENGLISH = [
    (re.compile(r"\'"), " '  "),
    (re.compile(r"\""), ""),
    (re.compile(r"\."), " . "),
    (re.compile(r"<br \/>"), " "),
    (re.compile(r","), " , "),
    (re.compile(r"\("), " ( "),
    (re.compile(r"\)"), " ) "),
    (re.compile(r"\!"), " ! "),
    (re.compile(r"\?"), " ? "),
    (re.compile(r"\;"), " "),
    (re.compile(r"\:"), " "),
    (re.compile(r"\s+"), " "),
]


def basic_english(line: str) -> list[str]:
    """torchtext's ``get_tokenizer("basic_english")``: lower-cased words and punctuation marks."""
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH:
        line = pattern.sub(replacement, line)
    return line.split()


class TextHandler(BaseHandler, ABC):
    """Text helpers for handlers, and the ``source_vocab`` TorchServe's text handlers load."""

    def __init__(self) -> None:
        super().__init__()
        self.source_vocab: Any = None
        self.tokenizer = basic_english

    def initialize(self, context: Any) -> None:
        # Checked before the model loads, so a worker without torchtext fails fast and says why.
        if importlib.util.find_spec("torchtext") is None:
            raise ImportError(
                "TextHandler loads source_vocab.pt, a pickled torchtext Vocab, and torchtext is not "
                "installed; install torchtext, or base the handler on BaseHandler (hookserve's "
                "TextClassifier reads a plain vocab.json)"
            )
        super().initialize(context)
        self.initialized = False
        source_vocab = self.manifest["model"].get("sourceVocab")
        # Unpickling a torchtext Vocab needs full unpickling, as in TorchServe.
        self.source_vocab = torch.load(source_vocab or self.get_source_vocab_path(context), weights_only=False)
        self.initialized = True

    def get_source_vocab_path(self, ctx: Any) -> str:
        path = os.path.join(ctx.system_properties.get("model_dir"), "source_vocab.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                "Missing the source_vocab file. Refer default handler documentation for details on using text_handler."
            )
        return path

    def _expand_contractions(self, text: str) -> str:
        raise NotImplementedError(
            "TextHandler._expand_contractions: hookserve-ts does not ship TorchServe's contraction table "
            "(ts.torch_handler.contractions); expand contractions in the handler"
        )

    def _remove_accented_characters(self, text: str) -> str:
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("utf-8", "ignore")

    def _remove_html_tags(self, text: str) -> str:
        return CLEANUP_REGEX.sub("", text)

    def _remove_puncutation(self, *args: Any, **kwargs: Any) -> str:
        """TorchServe's misspelt name, kept for handlers that call it."""
        return self._remove_punctuation(*args, **kwargs)

    def _remove_punctuation(self, text: str) -> str:
        return text.translate(str.maketrans("", "", string.punctuation))

    def _tokenize(self, text: str) -> list[str]:
        return self.tokenizer(text)
