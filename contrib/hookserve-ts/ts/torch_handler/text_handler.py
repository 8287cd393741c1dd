"""``ts.torch_handler.text_handler.TextHandler``: hookserve's, TorchServe 0.12's text base
(clean-up helpers, contractions, ``basic_english``, ``source_vocab.pt``), no torchtext needed."""

from hookserve.handlers.text_handler import TextHandler

__all__ = ["TextHandler"]
