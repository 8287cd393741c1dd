"""``TextClassifier``: text in, ``{label: probability}`` for every class out, as TorchServe
0.12's ``text_classifier`` answers, on a batch.

With TorchServe's ``source_vocab.pt`` in the archive (a ``{token: id}`` dict; see
:mod:`hookserve.handlers.text_handler`) the handler is TorchServe's: each text is cleaned up
(HTML tags, lower case, contractions, accents, punctuation), tokenized (``basic_english``),
its words and word pairs (``ngrams = 2``) looked up, and the model is called as TorchServe's
text classification example's ``EmbeddingBag`` model is: ``model(token_ids, offsets)``, one
bag per text. TorchServe answers only the first text of a batch; this answers each. A token
the vocabulary lacks takes the id of its ``"<unk>"`` entry when it has one (a torchtext
``Vocab`` uses its default index); otherwise the request is a 400 naming the tokens.

Without ``source_vocab.pt``, hookserve's own contract holds: texts are lower-cased and split
on whitespace, ids come from ``vocab.json`` (``{"token": id}``; unknown tokens and padding
are 0) and the model takes a ``LongTensor`` of shape ``(batch, longest text)``.

``/explanations`` answers each request, for its own ``target``, with TorchServe's
``get_insights`` reply: ``{"importances": ..., "words": ...}`` from Captum's
``LayerIntegratedGradients`` over ``model.embedding``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch

from hookserve.errors import BadRequest
from hookserve.handlers.base_handler import BaseHandler
from hookserve.handlers.explanations import captum_attr, check_target, request_input, request_target
from hookserve.handlers.label_mapping import map_class_to_label
from hookserve.handlers.text_handler import SOURCE_VOCAB_FILE, TextHandler, softmax_implicit_dim
from hookserve.handlers.text_utils import ngrams_iterator

VOCAB_FILE = "vocab.json"
UNKNOWN_TOKEN = "<unk>"


@dataclass
class TextBatch:
    """The preprocessed batch: the model's arguments for all texts, and each text as
    TorchServe's ``get_insights`` takes it, ``(token ids, words)``."""

    inputs: tuple[torch.Tensor, ...]
    texts: list[tuple[torch.Tensor, list[str]]]


class TextClassifier(TextHandler):
    """Classifies texts; replies with every class's probability."""

    ngrams = 2

    def __init__(self) -> None:
        super().__init__()
        self.vocab: dict[str, int] | None = None  # hookserve's vocab.json, when there is no source_vocab.pt

    def initialize(self, context: Any) -> None:
        model_dir = context.system_properties["model_dir"]
        if context.manifest["model"].get("sourceVocab") or os.path.isfile(os.path.join(model_dir, SOURCE_VOCAB_FILE)):
            super().initialize(context)
            return
        path = os.path.join(model_dir, VOCAB_FILE)
        if not os.path.isfile(path):
            raise RuntimeError(
                f"text_classifier: the vocabulary, {SOURCE_VOCAB_FILE} (TorchServe's) or {VOCAB_FILE} "
                "(token -> id), is missing from the archive"
            )
        BaseHandler.initialize(self, context)
        with open(path, encoding="utf-8") as f:
            self.vocab = json.load(f)

    def preprocess(self, data: list[dict]) -> TextBatch:
        texts = [self._text(row, index) for index, row in enumerate(data)]
        if self.vocab is not None:
            longest = max(len(ids) for ids, _ in texts)
            padded = torch.stack([torch.nn.functional.pad(ids, (0, longest - len(ids))) for ids, _ in texts])
            return TextBatch((padded,), texts)
        offsets = torch.tensor([0] + [len(ids) for ids, _ in texts[:-1]], device=self.device).cumsum(0)
        return TextBatch((torch.cat([ids for ids, _ in texts]), offsets), texts)

    def inference(self, data: TextBatch | tuple, *args: Any, **kwargs: Any) -> torch.Tensor:
        if isinstance(data, tuple):  # a subclass's preprocess shaped as TorchServe's: (token ids, words) of one text
            return super().inference(data[0], torch.as_tensor([0], device=self.device))
        return super().inference(*data.inputs)

    def postprocess(self, data: torch.Tensor) -> list[dict[str, float]]:
        return map_class_to_label(softmax_implicit_dim(data).tolist(), self.mapping)

    def explain_handle(self, data_preprocess: TextBatch, raw_data: list) -> list:
        """Each request explained for its own ``target`` (TorchServe explains the first only)."""
        if not isinstance(data_preprocess, TextBatch):  # a subclass's preprocess, TorchServe's shape: one text
            row = raw_data[0]
            return self.get_insights(data_preprocess, request_input(row), request_target(row, 0))
        explanations = []
        for index, row in enumerate(raw_data):
            target = request_target(row, index)
            try:
                explanations.extend(self.get_insights(data_preprocess.texts[index], request_input(row), target))
            except BadRequest as exc:
                raise BadRequest(f"request {index}: {exc.message}") from None
        return explanations

    def get_insights(self, text_preprocess: tuple[torch.Tensor, list[str]], _: Any, target: int = 0) -> list[dict]:
        """TorchServe's: ``LayerIntegratedGradients`` attributions against an all-zeros token
        reference, summarised per token, with the text's words."""
        text_tensor, words = text_preprocess
        if self.lig is None:
            captum_attr()  # the 501 when Captum is missing
            raise BadRequest("the model has no `embedding` layer to explain (LayerIntegratedGradients needs one)")
        if self.vocab is not None:
            inputs, extra = text_tensor.unsqueeze(0), None
        else:
            inputs, extra = text_tensor, (torch.tensor([0], device=self.device),)
        with torch.no_grad():
            check_target(target, self.model(inputs, *(extra or ())).shape[-1])
        attributions = self.lig.attribute(
            inputs,
            torch.zeros_like(inputs),
            additional_forward_args=extra,
            return_convergence_delta=False,
            target=target,
        )
        return [
            {"importances": self.summarize_attributions(attributions).tolist(), "words": self.get_word_token(words)}
        ]

    def _text(self, row: dict, index: int) -> tuple[torch.Tensor, list[str]]:
        """One request's token ids and words."""
        text = request_input(row)
        if isinstance(text, (bytes, bytearray)):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BadRequest(f"request {index}: the text is not UTF-8: {exc}") from None
        if not isinstance(text, str):
            raise BadRequest(f"request {index}: text_classifier expects text, got {type(text).__name__}")
        if self.vocab is not None:
            words = text.lower().split()
            return torch.tensor([self.vocab.get(w, 0) for w in words] or [0], device=self.device), words
        words = self._tokenize(self._clean(text))
        if not words:
            raise BadRequest(f"request {index}: the text has no words after clean-up")
        return torch.as_tensor(
            self._token_ids(list(ngrams_iterator(words, self.ngrams)), index), device=self.device
        ), words

    def _clean(self, text: str) -> str:
        """TorchServe's clean-up, in its order."""
        text = self._remove_html_tags(text)
        text = text.lower()
        text = self._expand_contractions(text)
        text = self._remove_accented_characters(text)
        return self._remove_punctuation(text)

    def _token_ids(self, tokens: list[str], index: int) -> list[int]:
        vocab = self.source_vocab
        unknown_id = vocab.get(UNKNOWN_TOKEN) if isinstance(vocab, dict) else None
        ids, unknown = [], []
        for token in tokens:
            try:
                ids.append(vocab[token])
            except KeyError:
                if unknown_id is None:
                    unknown.append(token)
                ids.append(unknown_id)
        if unknown:
            raise BadRequest(
                f"request {index}: not in the model's vocabulary (which has no {UNKNOWN_TOKEN!r} entry): "
                + ", ".join(map(repr, unknown))
            )
        return ids
