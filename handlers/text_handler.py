"""``TextHandler``: TorchServe 0.12's base of the text handlers, without torchtext.

Its clean-up helpers (HTML tags, contractions with TorchServe's own table, accents,
punctuation), its ``basic_english`` tokenizer and its ``source_vocab.pt`` are TorchServe's,
so a text cleans up to the same token ids. The vocabulary is loaded ``weights_only`` (a
``{token: id}`` dict, as TorchServe 0.12 itself must on torch 2.6 and later); a pickled
torchtext ``Vocab`` is unpickled in full only where torchtext is installed, as TorchServe did.

Captum's ``LayerIntegratedGradients`` over ``model.embedding`` (``self.lig``) is built when
Captum is installed and the model has that layer; the explanations then need it, and say so.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pickle
import re
import string
import unicodedata
from typing import Any

import torch
import torch.nn.functional as F

from hookserve.handlers.base_handler import BaseHandler
from hookserve.handlers.contractions import CONTRACTION_MAP
from hookserve.handlers.text_utils import CLEANUP_REGEX, get_tokenizer

log = logging.getLogger(__name__)

SOURCE_VOCAB_FILE = "source_vocab.pt"


def softmax_implicit_dim(tensor: torch.Tensor) -> torch.Tensor:
    """``F.softmax(tensor)`` without ``dim``, as TorchServe calls it: torch then takes dim 0
    for 0-, 1- and 3-dimensional tensors and dim 1 otherwise (the call without ``dim`` warns)."""
    return F.softmax(tensor, dim=0 if tensor.dim() in (0, 1, 3) else 1)


class TextHandler(BaseHandler):
    """Text clean-up, the tokenizer and the source vocabulary for text handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.source_vocab: Any = None
        self.tokenizer = get_tokenizer("basic_english")
        self.input_text = None
        self.lig: Any = None

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        self.initialized = False
        source_vocab = self.manifest["model"].get("sourceVocab")
        self.source_vocab = load_source_vocab(source_vocab or self.get_source_vocab_path(context))
        self.lig = layer_integrated_gradients(self.model)
        self.initialized = True

    def get_source_vocab_path(self, ctx: Any) -> str:
        path = os.path.join(ctx.system_properties.get("model_dir"), SOURCE_VOCAB_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                "Missing the source_vocab file. Refer default handler documentation for details on using text_handler."
            )
        return path

    def _expand_contractions(self, text: str) -> str:
        """``don't`` -> ``do not`` (keeping the first letter's case), then apostrophes dropped."""

        def expand(match: re.Match) -> str:
            found = match.group(0)
            expanded = CONTRACTION_MAP.get(found) or CONTRACTION_MAP.get(found.lower())
            return found[0] + expanded[1:]

        text = contractions_pattern().sub(expand, text)
        return re.sub("'", "", text)

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

    def get_word_token(self, input_tokens: list[str]) -> list[str]:
        """The tokens without the BPE tokenizers' word-start mark ``Ġ``."""
        return [token.replace("Ġ", "") for token in input_tokens]

    def summarize_attributions(self, attributions: torch.Tensor) -> torch.Tensor:
        """TorchServe's summary: softmax (implicit dim), scaled by the norm of its row sums."""
        attributions = softmax_implicit_dim(attributions)
        return attributions / torch.norm(attributions.sum(dim=-1))


def contractions_pattern() -> re.Pattern:
    """Any contraction of the table, any case (``re`` caches the compiled pattern)."""
    return re.compile("({})".format("|".join(CONTRACTION_MAP.keys())), flags=re.IGNORECASE | re.DOTALL)


def load_source_vocab(path: str) -> Any:
    """The vocabulary: ``weights_only`` first; a torchtext ``Vocab`` in full where torchtext
    is installed to unpickle it, as TorchServe's ``torch.load`` did before torch 2.6."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        if importlib.util.find_spec("torchtext") is None:
            raise RuntimeError(
                f"{os.path.basename(path)} is not a plain {{token: id}} vocabulary that loads weights_only "
                f"(a torchtext Vocab needs torchtext installed): {exc}"
            ) from None
        return torch.load(path, weights_only=False)


def layer_integrated_gradients(model: Any) -> Any:
    """Captum's ``LayerIntegratedGradients`` over ``model.embedding``, as TorchServe builds it;
    ``None`` without Captum or that layer (explanations then answer why)."""
    if not hasattr(model, "embedding"):
        return None
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError:
        return None
    return LayerIntegratedGradients(model, model.embedding)
