"""``ts.torch_handler.request_envelope.json.JSONEnvelope``: TensorFlow Serving's REST format.

Each request is ``{"instances": [...]}``; the instances of every request of the batch are
joined into one list for ``handle_fn``, and its results are cut back per request into
``{"predictions": [...]}`` JSON strings. ``{"b64": "..."}`` values are decoded to bytes.
"""

from __future__ import annotations

import json
from base64 import b64decode
from itertools import chain
from typing import Any

from ts.torch_handler.request_envelope.base import BaseEnvelope


class JSONEnvelope(BaseEnvelope):
    """Joins the batch's ``instances`` for ``handle_fn`` and splits its results into ``predictions``."""

    def __init__(self, handle_fn):
        super().__init__(handle_fn)
        # How many instances each request of the current batch brought, to split the results.
        self._lengths: list[int] = []

    def parse_input(self, data: list) -> list:
        self._lengths, batch = self._batch_from_json(data)
        return batch

    def format_output(self, data: Any) -> list[str]:
        return self._batch_to_json(data, self._lengths)

    def _batch_from_json(self, data_rows: list) -> tuple[list[int], list]:
        mini_batches = [self._from_json(row) for row in data_rows]
        return [len(mini_batch) for mini_batch in mini_batches], list(chain.from_iterable(mini_batches))

    def _from_json(self, data: dict) -> list:
        rows = (data.get("data") or data.get("body") or data)["instances"]
        if isinstance(rows[0], dict):
            for row_i, row in enumerate(rows):
                if list(row) == ["b64"]:
                    rows[row_i] = b64decode(row["b64"])
                else:
                    for col, value in row.items():
                        if isinstance(value, dict) and list(value) == ["b64"]:
                            row[col] = b64decode(value["b64"])
        return rows

    def _batch_to_json(self, batch: Any, lengths: list[int]) -> list[str]:
        outputs, cursor = [], 0
        for length in lengths:
            outputs.append(self._to_json(batch[cursor : cursor + length]))
            cursor += length
        return outputs

    def _to_json(self, output: Any) -> str:
        return json.dumps({"predictions": output})
