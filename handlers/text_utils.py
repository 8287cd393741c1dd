"""The two torchtext functions TorchServe 0.12's text handlers use, without torchtext
(as TorchServe's own ``ts.handler_utils.text_utils``): ``ngrams_iterator`` and the
``basic_english`` tokenizer of ``get_tokenizer``; and TorchServe's ``CLEANUP_REGEX`` (HTML
tags and entities), which ``TextHandler._remove_html_tags`` deletes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

CLEANUP_REGEX = re.compile("<.*?>|&([a-z0-9]+|#[0-9]{1,6}|#x[0-9a-f]{1,6});")

# torchtext's ``basic_english`` normalisation: each pattern, in order, becomes its replacement.
_BASIC_ENGLISH = [
    (r"\'", " '  "),
    (r"\"", ""),
    (r"\.", " . "),
    (r"<br \/>", " "),
    (r",", " , "),
    (r"\(", " ( "),
    (r"\)", " ) "),
    (r"\!", " ! "),
    (r"\?", " ? "),
    (r"\;", " "),
    (r"\:", " "),
    (r"\s+", " "),
]


def ngrams_iterator(token_list: list[str], ngrams: int) -> Iterator[str]:
    """The tokens, then every run of 2 .. ``ngrams`` tokens joined by a space, in order:
    ``["here", "we", "are"], 2`` gives ``here, we, are, here we, we are``."""
    yield from token_list
    for n in range(2, ngrams + 1):
        for gram in zip(*[token_list[i:] for i in range(n)], strict=False):
            yield " ".join(gram)


def basic_english(line: str) -> list[str]:
    """torchtext's ``basic_english`` tokenizer: lower-cased words and punctuation marks."""
    line = line.lower()
    for pattern, replacement in _BASIC_ENGLISH:
        line = re.sub(pattern, replacement, line)
    return line.split()


def split_tokenizer(line: str) -> list[str]:
    return line.split()


def get_tokenizer(tokenizer: str | Callable | None, language: str = "en") -> Callable[[str], list[str]]:
    """torchtext's ``get_tokenizer`` for what TorchServe's copy supports: ``None`` (split on
    whitespace), ``"basic_english"`` (English only) or a callable (returned as it is)."""
    if tokenizer is None:
        return split_tokenizer
    if tokenizer == "basic_english":
        if language != "en":
            raise ValueError("Basic normalization is only available for Enlish(en)")
        return basic_english
    if callable(tokenizer):
        return tokenizer
    raise ValueError(f"tokenizer {tokenizer!r}: only None, 'basic_english' or a callable work without torchtext")
