"""``TextClassifier``: text in, ``{label: probability}`` for every class out.

The model (TorchScript, eager or ``torch.export``) takes a ``LongTensor`` of token ids of
shape ``(batch, longest text)``. Texts are lower-cased and split on whitespace; ids come
from ``vocab.json`` (``{"token": id}``) in the model folder, and an unknown token, like the
padding of shorter texts, is 0.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from hookserve.handlers.base_handler import BaseHandler
from hookserve.handlers.label_mapping import map_class_to_label

VOCAB_FILE = "vocab.json"


class TextClassifier(BaseHandler):
    """Classifies texts; replies with every class's probability."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab: dict[str, int] = {}

    def initialize(self, context: Any) -> None:
        super().initialize(context)
        path = os.path.join(context.system_properties["model_dir"], VOCAB_FILE)
        if not os.path.isfile(path):
            raise RuntimeError(f"text_classifier: {VOCAB_FILE} (token -> id) is missing from the archive")
        with open(path, encoding="utf-8") as f:
            self.vocab = json.load(f)

    def preprocess(self, data: list[dict]) -> torch.Tensor:
        rows = [self.token_ids(row.get("data") or row.get("body")) for row in data]
        longest = max(len(ids) for ids in rows)
        return torch.tensor([ids + [0] * (longest - len(ids)) for ids in rows], device=self.device)

    def token_ids(self, text: Any) -> list[int]:
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise ValueError(f"text_classifier expects text, got {type(text).__name__}")
        return [self.vocab.get(token, 0) for token in text.lower().split()] or [0]

    def postprocess(self, data: torch.Tensor) -> list[dict[str, float]]:
        return map_class_to_label(torch.softmax(data, dim=1).tolist(), self.mapping)
