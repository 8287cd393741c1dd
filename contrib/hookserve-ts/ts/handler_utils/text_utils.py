"""``ts.handler_utils.text_utils``: torchtext's ``ngrams_iterator`` and ``get_tokenizer``
(``basic_english``) without torchtext, as in TorchServe 0.12 (hookserve's)."""

from hookserve.handlers.text_utils import get_tokenizer, ngrams_iterator

__all__ = ["get_tokenizer", "ngrams_iterator"]
