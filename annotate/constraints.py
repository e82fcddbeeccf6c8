"""Span-constrained decoding (issue 11, item 1): answers whose elements are spans of the sentence.

With a constraint, every string the model can write in an extraction, projection or judge answer
is a token span of the sentence (or the object's ``""``). Such a string always grounds with an
``exact`` match (:mod:`openie4pp.grounding`), so grounding, which stays the safety net, never
rejects it as ``ungrounded``. Chinese and Japanese are tokenised per character
(:mod:`openie4pp.text`), so a span there is any run of characters between token boundaries.

:mod:`.span_encodings` writes the constraint for the three kinds of servers (GBNF grammar, regex,
enum JSON schema). :func:`build_constraint` bundles them once per request as a
:class:`SpanConstraint` (the pipeline attaches it to its
:class:`~openie4pp.annotate.llm.ChatRequest`, which knows it as a
:class:`~openie4pp.annotate.llm.DecodingConstraint`); the backend picks what its endpoint accepts
and checks with :meth:`SpanConstraint.violations` whether the endpoint obeyed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from openie4pp.schema import Sentence

from .contract import AnswerModel, ExtractionAnswer
from .span_encodings import (
    MAX_SPAN_TOKENS,
    MAX_TRIPLES,
    answer_bound,
    check_constrainable,
    enum_schema,
    gbnf_grammar,
)

__all__ = ["CONSTRAINT_VERSION", "MAX_TRIPLES", "SpanConstraint", "build_constraint"]

CONSTRAINT_VERSION = 2
"""Part of every constraint's digest: bump it when an encoding changes (2: bounded answers, the
judge's fixes), so cached answers decoded under the old encodings are not replayed."""


@dataclass(frozen=True)
class SpanConstraint:
    """A sentence's span constraint for one request (:func:`build_constraint`). Each encoding is
    built on first use only (a backend sends one of them, and each grows with the sentence);
    ``digest``, over what defines them all, is what :meth:`ChatRequest.cache_key` hashes."""

    sentence: Sentence = field(compare=False, repr=False)
    answer_model: type[AnswerModel] = ExtractionAnswer
    items: int | None = None
    """Most triples (or verdicts) an answer may hold; None: the model's default bound."""
    max_span: int = MAX_SPAN_TOKENS
    digest: str = ""

    @cached_property
    def gbnf(self) -> str:
        return gbnf_grammar(self.sentence, self.answer_model, self.items)

    @cached_property
    def enum_schema(self) -> dict[str, Any] | None:
        return enum_schema(self.sentence, self.answer_model, self.max_span, items=self.items)

    @property
    def text(self) -> str:
        return self.sentence.text

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        return tuple((start, end) for start, end in self.sentence.offsets)

    def violations(self, content: str) -> list[str] | None:
        """The element strings of a JSON answer that are not token spans of the sentence (``[]``:
        it obeys the constraint); ``None`` when ``content`` is no JSON answer of the expected shape
        (cut off, prose: nothing can be concluded). A backend that sent a grammar and gets
        violations back learns that its endpoint ignored the field (vLLM and llama.cpp ignore
        unknown request fields instead of rejecting them)."""
        try:
            value = json.loads(content)
        except (ValueError, RecursionError):
            return None
        triples = value.get("triples") if isinstance(value, dict) else None
        if isinstance(value, dict) and isinstance(value.get("verdicts"), list):  # a judge: its fixes
            triples = [v.get("fixed") for v in value["verdicts"] if isinstance(v, dict) and v.get("fixed")]
        if not isinstance(triples, list):
            return None
        starts = {start for start, _ in self.offsets}
        ends = {end for _, end in self.offsets}
        bad: list[str] = []
        for triple in triples:
            if not isinstance(triple, dict):
                return None
            extra = triple.get("extra")
            strings = [triple.get("subject"), triple.get("relation"), triple.get("object"),
                       *(extra if isinstance(extra, list) else [])]
            for position, phrase in enumerate(strings):
                if position == 2 and phrase == "":
                    continue
                if not isinstance(phrase, str) or not self._is_span(phrase, starts, ends):
                    bad.append(str(phrase))
        return bad

    def _is_span(self, phrase: str, starts: set[int], ends: set[int]) -> bool:
        if not phrase:
            return False
        at = self.text.find(phrase)
        while at != -1:
            if at in starts and at + len(phrase) in ends:
                return True
            at = self.text.find(phrase, at + 1)
        return False

    def __post_init__(self) -> None:
        check_constrainable(self.answer_model)
        if not self.digest:
            key = json.dumps([CONSTRAINT_VERSION, self.answer_model.__name__,
                              answer_bound(self.answer_model, self.items), self.max_span, self.sentence.text,
                              self.offsets], ensure_ascii=False)
            object.__setattr__(self, "digest", hashlib.sha256(key.encode("utf-8")).hexdigest())


def build_constraint(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer,
                     max_span: int = MAX_SPAN_TOKENS, *, items: int | None = None) -> SpanConstraint:
    """The span constraint of ``sentence`` for ``answer_model``; ``items`` bounds the triples (or,
    for the judge, the verdicts) of the answer."""
    return SpanConstraint(sentence, answer_model, items, max_span)
