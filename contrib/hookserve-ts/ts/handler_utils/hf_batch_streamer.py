"""``ts.handler_utils.hf_batch_streamer.TextIteratorStreamerBatch``: TorchServe 0.12's streamer
of a batch of Hugging Face generations, one ``TextIteratorStreamer`` per row (needs
``transformers``). Each ``next`` gives one ``{"text": ...}`` per row, until a row ends."""

from __future__ import annotations

from typing import Any

from transformers.generation.streamers import BaseStreamer, TextIteratorStreamer


class TextIteratorStreamerBatch(BaseStreamer):
    def __init__(
        self, tokenizer: Any, batch_size: int, skip_prompt: bool = False, timeout: float | None = None, **decode_kwargs
    ):
        self.batch_size = batch_size
        self.streamers = [
            TextIteratorStreamer(tokenizer, skip_prompt, timeout, **decode_kwargs) for _ in range(batch_size)
        ]
        self.streamer_iterators = [iter(streamer) for streamer in self.streamers]

    def put(self, value: Any) -> None:
        if value.shape[0] != self.batch_size:
            raise ValueError(
                f"TextIteratorStreamerBatch batch size is set to {self.batch_size} "
                f"but got input tensor of shape {value.shape}"
            )
        for index in range(self.batch_size):
            self.streamers[index].put(value[index : index + 1])

    def end(self) -> None:
        for streamer in self.streamers:
            streamer.end()

    def __iter__(self) -> TextIteratorStreamerBatch:
        return self

    def __next__(self) -> list[dict[str, str]]:
        values = []
        for iterator in self.streamer_iterators:
            try:
                values.append({"text": next(iterator)})
            except StopIteration:
                values.append(None)
        if None in values:
            raise StopIteration()
        return values
