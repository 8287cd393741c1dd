"""Class index -> label mapping of classifier handlers (``index_to_name.json``).

Same contracts as TorchServe's ``ts.utils.util.load_label_mapping`` and
``map_class_to_label``, which TorchServe handlers call directly.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)


def load_label_mapping(mapping_file_path: str | os.PathLike) -> dict[str, str] | None:
    """Read ``{"<class index>": "label"}``; ``None`` when the file does not exist.

    Also accepts the older forms TorchServe's examples use: ``{"object_type_names": [...]}``
    and ``{"<index>": ["wordnet id", "label"]}`` (the last element is the label).
    """
    if not os.path.isfile(mapping_file_path):
        log.debug("%s not found: replies carry class indexes, not names", mapping_file_path)
        return None
    with open(mapping_file_path) as f:
        mapping = json.load(f)
    if not isinstance(mapping, dict):
        raise ValueError(f'{mapping_file_path}: expected a JSON object {{"class index": "label"}}')
    names = mapping.get("object_type_names")
    if isinstance(names, list):
        return {str(index): name for index, name in enumerate(names)}
    labels = {}
    for key, value in mapping.items():
        label = value[-1] if isinstance(value, list) and value else value
        if not isinstance(label, str):
            raise ValueError(f"{mapping_file_path}: label of class {key!r} must be a str or a list of str")
        labels[key] = label
    return labels


def map_class_to_label(
    probs: list[list[float]],
    mapping: dict[str, str] | None = None,
    lbl_classes: Iterable[Iterable[int]] | None = None,
) -> list[dict[str, float]]:
    """One ``{label: probability}`` dict per row of ``probs``.

    ``lbl_classes`` gives each row's class indexes (as from ``torch.topk``); by default a
    row's classes are ``0..len(row)-1``. Without ``mapping`` the label is the index as text.
    """
    if not isinstance(probs, list):
        raise TypeError("map_class_to_label: convert the probabilities to a list first (tensor.tolist())")
    if mapping is not None and not isinstance(mapping, dict):
        raise TypeError("map_class_to_label: mapping must be a dict")
    if lbl_classes is None:
        lbl_classes = itertools.repeat(range(len(probs[0])), len(probs)) if probs else ()
    return [
        {
            (mapping[str(cls)] if mapping is not None else str(cls)): prob
            for cls, prob in zip(classes, row, strict=False)
        }
        for classes, row in zip(lbl_classes, probs, strict=False)
    ]
