"""Span grounding: which contiguous token span of a sentence does a proposed phrase denote?

LLMs (and benchmark annotators) write phrases, the tagger needs token spans. Grounding tries,
in order, and reports which rule matched:

1. ``exact``: the phrase occurs verbatim in the sentence text, starting at a token start and
   ending at a token end;
2. ``normalized``: the phrase's normalised words (see :func:`openie4pp.text.normalize`: NFKC,
   case, quote/dash styles, full-width punctuation, whitespace) equal the normalised tokens of
   a span;
3. ``spacing``: the same, ignoring where spaces fall (``Pittsburgh's`` vs ``Pittsburgh 's``,
   Chinese with or without spaces between characters), still starting and ending on token
   boundaries.

A phrase that appears only inside tokens (``Austral`` in ``Australia``) fails with
``partial_token``; one that does not appear at all fails with ``not_found``.

**Repeats** are resolved deterministically: with ``near`` (a token index, e.g. the
predicate's start) the occurrence whose start is closest to it wins, ties going left;
without it, the leftmost occurrence wins. ``candidates`` tells callers how many there were.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from openie4pp.schema import Sentence
from openie4pp.text import normalize

MatchKind = Literal["exact", "normalized", "spacing"]


class GroundingFailure(str, Enum):
    empty_phrase = "empty_phrase"
    not_found = "not_found"
    partial_token = "partial_token"


@dataclass(frozen=True, slots=True)
class Grounded:
    start: int
    """First token index."""
    end: int
    """One past the last token index."""
    char_start: int
    char_end: int
    text: str
    """The sentence's own text for the span (what a record stores)."""
    match: MatchKind
    candidates: int = 1

    @property
    def span(self) -> tuple[int, int]:
        return (self.start, self.end)


@dataclass(frozen=True, slots=True)
class NotGrounded:
    reason: GroundingFailure
    phrase: str
    detail: str

    def __bool__(self) -> bool:  # lets callers write ``if result:``
        return False


class SentenceIndex:
    """Per-sentence lookup tables, built once and reused for every phrase of that sentence."""

    __slots__ = ("_ends", "_skeleton", "_starts", "_token_starts", "_words", "sentence")

    def __init__(self, sentence: Sentence):
        self.sentence = sentence
        self._token_starts = {start: i for i, (start, _) in enumerate(sentence.offsets)}
        self._words = [normalize(t).replace(" ", "") for t in sentence.tokens]
        starts: dict[int, int] = {}
        ends: dict[int, int] = {}
        position = 0
        for i, word in enumerate(self._words):
            starts.setdefault(position, i)
            position += len(word)
            ends[position] = i + 1  # a later token overrides an empty-normalised one
        self._skeleton = "".join(self._words)
        self._starts = starts
        self._ends = ends

    def ground(self, phrase: str, near: int | None = None) -> Grounded | NotGrounded:
        stripped = phrase.strip()
        if not stripped:
            return NotGrounded(GroundingFailure.empty_phrase, phrase, "the phrase is empty")
        found = self._exact(stripped)
        kind: MatchKind = "exact"
        if not found:
            found, partial = self._loose(stripped)
            if not found:
                if partial:
                    return NotGrounded(
                        GroundingFailure.partial_token,
                        phrase,
                        "the phrase occurs only inside tokens of the sentence",
                    )
                return NotGrounded(
                    GroundingFailure.not_found, phrase, "the phrase does not occur in the sentence"
                )
            kind = "normalized" if self._aligned(stripped, found[0]) else "spacing"
        start, end = _choose(found, near)
        offsets = self.sentence.offsets
        char_start, char_end = offsets[start][0], offsets[end - 1][1]
        return Grounded(
            start, end, char_start, char_end, self.sentence.text[char_start:char_end], kind, len(found)
        )

    def _exact(self, phrase: str) -> list[tuple[int, int]]:
        text, offsets = self.sentence.text, self.sentence.offsets
        found: list[tuple[int, int]] = []
        at = text.find(phrase)
        while at != -1:
            first = self._token_starts.get(at)
            if first is not None:
                end_char = at + len(phrase)
                last = first
                while last < len(offsets) and offsets[last][1] < end_char:
                    last += 1
                if last < len(offsets) and offsets[last][1] == end_char:
                    found.append((first, last + 1))
            at = text.find(phrase, at + 1)
        return found

    def _loose(self, phrase: str) -> tuple[list[tuple[int, int]], bool]:
        key = normalize(phrase).replace(" ", "")
        if not key:
            return [], False
        skeleton = self._skeleton
        found: list[tuple[int, int]] = []
        partial = False
        at = skeleton.find(key)
        while at != -1:
            first = self._starts.get(at)
            after = self._ends.get(at + len(key))
            if first is not None and after is not None and after > first:
                found.append((first, after))
            else:
                partial = True
            at = skeleton.find(key, at + 1)
        return found, partial

    def _aligned(self, phrase: str, span: tuple[int, int]) -> bool:
        return normalize(phrase).split(" ") == [w for w in self._words[span[0] : span[1]] if w]


def _choose(found: list[tuple[int, int]], near: int | None) -> tuple[int, int]:
    if near is None or len(found) == 1:
        return found[0]
    return min(found, key=lambda span: (abs(span[0] - near), span[0]))


_INDEX_CACHE: OrderedDict[tuple[str, str, int], SentenceIndex] = OrderedDict()
_INDEX_CACHE_SIZE = 1024


def index_for(sentence: Sentence) -> SentenceIndex:
    """A cached :class:`SentenceIndex` (LRU over the last 1,024 sentences)."""
    key = (sentence.id, sentence.text, len(sentence.tokens))
    index = _INDEX_CACHE.get(key)
    if index is None or (index.sentence is not sentence and index.sentence.offsets != sentence.offsets):
        index = SentenceIndex(sentence)
        _INDEX_CACHE[key] = index
        if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
            _INDEX_CACHE.popitem(last=False)
    else:
        _INDEX_CACHE.move_to_end(key)
    return index


def ground(sentence: Sentence, phrase: str, near: int | None = None) -> Grounded | NotGrounded:
    """Ground ``phrase`` in ``sentence``; see the module docstring for the rules."""
    return index_for(sentence).ground(phrase, near)
