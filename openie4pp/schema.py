"""The OpenIE4++ data contract: sentences, extractions, records and rejections.

Every component (annotator, trainer, scorers) speaks these models, so they check what
can be checked without outside knowledge:

* a :class:`Sentence` carries its own tokenisation as character offsets into ``text``;
  offsets must be increasing, non-overlapping and reproduce each token exactly;
* an :class:`Element` (predicate or argument) is a phrase plus, when grounded, a token
  span ``[start, end)``; a grounded element's ``text`` must equal the sentence text
  between the span's first and last characters (checked by :meth:`Record` validation);
* LLM and model records must be fully grounded (gold benchmarks are allowed free-text
  elements because CaRB/BenchIE annotators wrote phrases that are not in the sentence).

Records carry ``schema_version`` (:mod:`openie4pp.schema_version`); language tags are checked by
:mod:`openie4pp.langtags` and rejections modelled in :mod:`openie4pp.rejection_model`, all
re-exported here.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from openie4pp.langtags import canonical_lang, check_lang
from openie4pp.redact import SECRET_VALUE
from openie4pp.rejection_model import (
    CLIP_CHARS,
    Rejection,
    RejectionReason,
    candidate_field,
    clip_input,
    is_candidate_field,
)
from openie4pp.schema_version import (
    SCHEMA_VERSION,
    SchemaVersionError,
    StrictModel,
    check_schema_version,
    known_fields_only,
    minor_is_newer,
)

__all__ = [  # the contract in one place: the models split out into their own modules are re-exported
    "CLIP_CHARS",
    "ROLE_PATTERN",
    "SCHEMA_VERSION",
    "UNGROUNDED",
    "Argument",
    "Element",
    "Extraction",
    "Provenance",
    "Record",
    "Rejection",
    "RejectionReason",
    "SchemaVersionError",
    "Sentence",
    "Source",
    "SpanConstraintKind",
    "TokenUsage",
    "candidate_field",
    "canonical_lang",
    "check_lang",
    "check_schema_version",
    "clip_input",
    "grounding_problems",
    "is_blank",
    "is_candidate_field",
    "sentence_id_for",
]

ROLE_PATTERN = re.compile(r"^(arg(0|[1-9][0-9]*)|loc|temp|context)$")
"""Argument roles: ``arg0`` is the subject, ``arg1..`` objects in order; ``loc``, ``temp``
and ``context`` are the Re-OIE2016 extra slots."""


def is_blank(text: str) -> bool:
    """Whether ``text`` holds nothing to read: only whitespace and invisible format characters
    (zero-width space and joiners, word joiner, BOM, bidi marks: Unicode category ``Cf``)."""
    return not any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def sentence_id_for(lang: str, text: str) -> str:
    """A stable id from content: the same sentence in the same language gets the same id."""
    digest = hashlib.sha1(f"{lang}\x00{text}".encode()).hexdigest()
    return f"{lang}-{digest[:16]}"


class Sentence(StrictModel):
    """A sentence with its tokenisation, as character offsets into ``text``."""

    id: Annotated[str, Field(min_length=1)]
    lang: str
    text: Annotated[str, Field(min_length=1)]
    tokens: list[str]
    offsets: list[tuple[int, int]]

    @field_validator("lang")
    @classmethod
    def _lang(cls, value: str) -> str:
        return check_lang(value)

    @field_validator("text")
    @classmethod
    def _text(cls, value: str) -> str:
        if is_blank(value):
            raise ValueError("empty sentence")
        return value

    @model_validator(mode="after")
    def _offsets_reproduce_tokens(self) -> Sentence:
        if len(self.tokens) != len(self.offsets):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.offsets)} offsets")
        if not self.tokens:
            raise ValueError("sentence has no tokens")
        previous_end = 0
        text = self.text
        for index, (token, (start, end)) in enumerate(zip(self.tokens, self.offsets, strict=True)):
            if start < previous_end or end <= start or end > len(text):
                raise ValueError(f"token {index} offsets ({start}, {end}) are out of order or out of range")
            if text[start:end] != token:
                raise ValueError(
                    f"token {index} {token!r} differs from text[{start}:{end}] {text[start:end]!r}"
                )
            previous_end = end
        return self

    @classmethod
    def from_text(cls, text: str, lang: str, id: str | None = None, pretokenized: bool = False) -> Sentence:
        """Tokenise ``text`` (see :mod:`openie4pp.text`) and build a sentence.

        ``pretokenized`` splits on whitespace only, which keeps the tokenisation of
        benchmark files (CaRB, Re-OIE2016, OIE2016) whose indices count such tokens.
        """
        from openie4pp.text import tokenize

        spans = tokenize(text, lang, pretokenized=pretokenized)
        return cls(
            id=id or sentence_id_for(lang, text),
            lang=lang,
            text=text,
            tokens=[text[s:e] for s, e in spans],
            offsets=spans,
        )

    def span_text(self, start: int, end: int) -> str:
        """The sentence text covered by tokens ``[start, end)``, with its original spacing."""
        return self.text[self.offsets[start][0] : self.offsets[end - 1][1]]


UNGROUNDED = (-1, -1)
"""How an absent span is written on disk (Re-OIE2016's own convention for implicit elements): a
``null`` or ``[]`` would make Arrow infer a ``null``/``list<null>`` column that later files' real
spans cannot be cast to. In Python an absent span is ``None``."""


class Element(StrictModel):
    """A predicate or argument: its phrase and, when grounded, its token span ``[start, end)``."""

    text: str
    span: tuple[int, int] | None = None

    @field_validator("span", mode="before")
    @classmethod
    def _absent_span_is_none(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)) and (len(value) == 0 or list(value) == list(UNGROUNDED)):
            return None
        return value

    @field_serializer("span", when_used="json")
    def _no_null_span(self, value: tuple[int, int] | None) -> list[int]:
        return list(value if value is not None else UNGROUNDED)

    @field_validator("span")
    @classmethod
    def _span_order(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not (0 <= value[0] < value[1]):
            raise ValueError(f"span {list(value)} is not a non-empty [start, end) with 0 <= start < end")
        return value


class Argument(Element):
    role: str

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if not ROLE_PATTERN.match(value):
            raise ValueError(f"unknown argument role {value!r} (arg0, arg1, ..., loc, temp, context)")
        return value


class Extraction(StrictModel):
    """One n-ary tuple: a predicate and its arguments in order (``arg0`` is the subject)."""

    predicate: Element
    arguments: list[Argument]
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0

    @field_validator("confidence", mode="before")
    @classmethod
    def _finite(cls, value: Any) -> Any:
        if isinstance(value, float) and value != value:
            raise ValueError("confidence is NaN")
        return value

    @property
    def grounded(self) -> bool:
        return self.predicate.span is not None and all(a.span is not None for a in self.arguments)

    def argument(self, role: str) -> Argument | None:
        return next((a for a in self.arguments if a.role == role), None)

    def nary(self) -> tuple[str, list[str]]:
        """``(relation, [arg0, arg1, ...])`` with positional arguments first, then loc/temp/context."""
        return self.predicate.text, [a.text for a in self.arguments]

    def binary(self) -> tuple[str, str, str]:
        """``(arg0, relation, arg1)``: the binary view used by Re-OIE2016-Binary (extra args dropped)."""
        subject = self.argument("arg0")
        obj = self.argument("arg1")
        return (subject.text if subject else "", self.predicate.text, obj.text if obj else "")


class Source(str, Enum):
    gold = "gold"
    llm = "llm"
    model = "model"


class TokenUsage(StrictModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


_OPTIONAL_PROVENANCE = (
    "dataset", "model", "endpoint", "prompt_id", "prompt_hash", "verdict", "mode", "source_lang",
)

SpanConstraintKind = Literal["grammar", "structured_outputs", "guided_grammar", "json_schema_enum", "none"]
"""How a span constraint was sent to the endpoint: llama.cpp's ``grammar``; vLLM's
``structured_outputs: {"grammar": ...}`` or older ``guided_grammar``; a strict ``json_schema`` whose
strings are enums of the sentence's spans; or not at all (``none``)."""


class Provenance(StrictModel):
    """Where a record came from. Never holds credentials (see :func:`_no_secrets`).

    On disk, absent values are written as ``""`` (and ungrounded spans as ``[-1, -1]``), never as
    ``null``: Arrow types an all-null column as ``null`` and then cannot combine it with a later
    file's strings, which would break plain ``load_dataset("json", data_files=...)`` on shards
    that mix gold and LLM records. Reading maps ``""`` back to None.
    """

    source: Source
    dataset: str | None = None
    model: str | None = None
    endpoint: str | None = None
    prompt_id: str | None = None
    prompt_hash: str | None = None
    verdict: Literal["accept", "fix", "reject"] | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    mode: Literal["extract", "project"] | None = None
    source_lang: str | None = None
    constraint: SpanConstraintKind | None = Field(default=None, exclude_if=lambda value: value is None)
    """The span constraint stage 1's triples were decoded under (schema 1.1; None: the run did
    not ask for one, or the record predates it); ``none``: asked for, but the endpoint took none.
    Written only when set, so a record without one reads in any 1.x reader."""

    @field_validator("constraint", mode="before")
    @classmethod
    def _no_constraint(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator(*_OPTIONAL_PROVENANCE, mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_serializer(*_OPTIONAL_PROVENANCE, when_used="json")
    def _no_null(self, value: str | None) -> str:
        return "" if value is None else value

    @model_validator(mode="after")
    def _no_secrets(self) -> Provenance:
        for name in ("endpoint", "model"):
            value = getattr(self, name)
            if value and _has_secret(value):
                raise ValueError(f"provenance.{name} looks like it contains a credential")
        return self


@lru_cache(maxsize=256)
def _has_secret(value: str) -> bool:
    """Cached: a run's records share a handful of model and endpoint names, and the credential
    regex costs microseconds per call on the per-record path."""
    return SECRET_VALUE.search(value) is not None


class Record(StrictModel):
    """A sentence with its extractions and provenance: one line of an OpenIE4++ shard."""

    schema_version: str = SCHEMA_VERSION
    sentence: Sentence
    extractions: list[Extraction]
    provenance: Provenance

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: str) -> str:
        return check_schema_version(value)

    @model_validator(mode="before")
    @classmethod
    def _newer_minor(cls, data: Any) -> Any:
        """A record of a newer minor version (same major) is read without the fields this version
        does not know yet, as the versioning rule promises; its own version is kept."""
        if isinstance(data, dict) and minor_is_newer(data.get("schema_version")):
            return known_fields_only(cls, data)
        return data

    @model_validator(mode="after")
    def _elements_lie_in_sentence(self) -> Record:
        problems = grounding_problems(self)
        if problems:  # one error listing every problem, so `validate` can report them all
            raise ValueError("\n".join(problems))
        return self

    @property
    def id(self) -> str:
        return self.sentence.id

    @property
    def lang(self) -> str:
        return self.sentence.lang


def grounding_problems(record: Record) -> list[str]:
    """Every way in which ``record``'s spans disagree with its sentence, as ``field: message``."""
    problems: list[str] = []
    sentence = record.sentence
    n_tokens = len(sentence.tokens)
    must_ground = record.provenance.source is not Source.gold
    for i, extraction in enumerate(record.extractions):
        elements: list[tuple[str, Element]] = [(f"extractions[{i}].predicate", extraction.predicate)]
        elements += [(f"extractions[{i}].arguments[{j}]", a) for j, a in enumerate(extraction.arguments)]
        for field, element in elements:
            if element.span is None:
                if must_ground:
                    problems.append(
                        f"{field}.span: missing; {record.provenance.source.value} records must be grounded"
                    )
                continue
            start, end = element.span
            if end > n_tokens:
                problems.append(f"{field}.span: [{start}, {end}) is out of range for {n_tokens} tokens")
                continue
            expected = sentence.span_text(start, end)
            if element.text != expected:
                problems.append(
                    f"{field}.text: {element.text!r} differs from the sentence's span text {expected!r}"
                )
    return problems


