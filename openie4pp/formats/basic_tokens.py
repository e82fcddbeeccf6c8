"""``transformers.BasicTokenizer(do_lower_case=False)`` tokens as character offsets, without ``transformers``.

Why not call BasicTokenizer: the base package must read the CrossOIE release without the ``[train]``
extra, and BasicTokenizer returns token strings, not the offsets a :class:`~openie4pp.schema.Sentence`
needs. ``tests/test_spanoie.py`` checks this against the real BasicTokenizer on hundreds of strings
(CJK, punctuation, control and zero-width characters, NFC cases).

NFC: BasicTokenizer drops control characters and spaces out CJK characters on the text as given,
then normalises it (NFC) and splits off punctuation. NFC changes a character's class in exactly two
cases (every code point and canonical composition checked with :mod:`unicodedata`, Unicode 14.0),
both handled here: U+1FEF GREEK VARIA (``Sk``) becomes U+0060, the backtick (ASCII punctuation), so
characters are classified by their NFC form; and ``=``, ``<``, ``>`` followed by U+0338 (past any
dropped characters and combining marks of a higher class) compose into ``≠``, ``≮``, ``≯``, parts of
a word.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_OVERLAY = "\u0338"
"""COMBINING LONG SOLIDUS OVERLAY (combining class 1): ``=`` ``<`` ``>`` compose with it under NFC."""


@lru_cache(maxsize=65536)
def _char_class(ch: str) -> int:
    """BasicTokenizer's view of a character: 0 dropped (NUL, U+FFFD, control and format characters
    but tab and line ends), 1 whitespace, 2 a token of its own (punctuation, CJK), 3 part of a word."""
    cp, category = ord(ch), unicodedata.category(ch)
    if cp in (0, 0xFFFD) or (category.startswith("C") and ch not in "\t\n\r"):
        return 0
    if ch in " \t\n\r" or category == "Zs" or ch.isspace():
        return 1
    if (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F):
        return 2  # CJK: as given (BasicTokenizer spaces them out before NFC)
    return 2 if any(_is_punctuation(c) for c in unicodedata.normalize("NFC", ch)) else 3


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    return (33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126
            or unicodedata.category(ch).startswith("P"))


def _composes(text: str, index: int) -> bool:
    """Whether ``text[index]`` (``=``, ``<`` or ``>``) composes with a later U+0338 under NFC: the first
    mark of combining class 1 in the run of combining marks after it (dropped characters, which
    BasicTokenizer removes before NFC, skipped) is U+0338."""
    for ch in text[index + 1 :]:
        ccc = unicodedata.combining(ch)
        if ccc == 1:
            return ch == _OVERLAY
        if not ccc and _char_class(ch):
            return False
    return False


def basic_tokenize(text: str) -> list[tuple[int, int]]:
    """Character offsets of ``transformers.BasicTokenizer(do_lower_case=False).tokenize(text)``'s tokens.

    A dropped character inside a word stays inside its slice; the token as BasicTokenizer writes it is
    :func:`basic_token_text` (NFC: see the module docstring).
    """
    spans: list[tuple[int, int]] = []
    start = last = -1
    for index, ch in enumerate(text):
        kind = _char_class(ch)
        if kind == 2 and ch in "=<>" and _composes(text, index):
            kind = 3  # ≠ ≮ ≯ after NFC
        if kind == 3:
            start, last = (index if start < 0 else start), index
        elif kind:
            if start >= 0:
                spans.append((start, last + 1))
                start = -1
            if kind == 2:
                spans.append((index, index + 1))
    if start >= 0:
        spans.append((start, last + 1))
    return spans


def basic_token_text(token: str) -> str:
    """A token as BasicTokenizer returns it: dropped characters removed, NFC."""
    return unicodedata.normalize("NFC", "".join(ch for ch in token if _char_class(ch)))


def basic_tokens(text: str) -> list[str]:
    """``BasicTokenizer(do_lower_case=False).tokenize(text)``, without ``transformers``."""
    return [basic_token_text(text[s:e]) for s, e in basic_tokenize(text)]


__all__ = ["basic_token_text", "basic_tokenize", "basic_tokens"]
