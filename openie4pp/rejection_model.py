"""The :class:`Rejection` model: one line of ``rejected.jsonl``, an input or candidate that did not
become a record, with enough context (file, line, field, reason, the input itself) to find and fix it.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Literal

from pydantic import Field

from openie4pp.schema_version import SCHEMA_VERSION, StrictModel

CLIP_CHARS = 2000
"""How much of an offending input a rejection keeps verbatim."""


def clip_input(text: str, limit: int = CLIP_CHARS) -> str:
    """``text``, or for a long one its first ``limit`` characters plus its length and SHA-256.

    Why: a 60 MB answer or input line copied whole into ``rejected.jsonl`` makes the file useless and
    can fill a disk; a prefix shows what it was and the hash identifies it exactly."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{text[:limit]}... [clipped: {len(text)} characters in all, sha256 {digest}]"


class RejectionReason(str, Enum):
    """Why an input or a candidate was not accepted. The README's troubleshooting section explains each."""

    malformed_json = "malformed_json"
    schema_invalid = "schema_invalid"
    schema_version = "schema_version"
    empty_sentence = "empty_sentence"
    unknown_language = "unknown_language"
    span_out_of_range = "span_out_of_range"
    span_text_mismatch = "span_text_mismatch"
    ungrounded = "ungrounded"
    overlapping_spans = "overlapping_spans"
    wrong_language = "wrong_language"
    llm_invalid_output = "llm_invalid_output"
    llm_rejected = "llm_rejected"
    request_failed = "request_failed"
    no_extractions = "no_extractions"
    duplicate = "duplicate"
    label_scheme = "label_scheme"
    malformed_text = "malformed_text"
    too_long = "too_long"
    internal_error = "internal_error"


def candidate_field(index: int) -> str:
    """The ``field`` of a rejection that concerns one candidate triple of a sentence, not the whole
    sentence: an annotation run writes one such line per failed candidate and then one
    sentence-level line (no such field) saying how the sentence ended."""
    return f"candidates[{index}]"


def is_candidate_field(field: object) -> bool:
    """Whether a rejection's ``field`` (from a :class:`Rejection` or a raw JSON line) names one
    candidate triple, see :func:`candidate_field`."""
    return isinstance(field, str) and field.startswith("candidates[")


class Rejection(StrictModel):
    """An input or candidate that did not become a record, with enough context to find and fix it."""

    schema_version: str = SCHEMA_VERSION
    stage: Literal["input", "stage1", "stage2", "validate", "convert", "labels"]
    reason: RejectionReason
    detail: str
    input: str = Field(description="the offending input, verbatim (a raw line, phrase or response)")
    sentence_id: str | None = None
    lang: str | None = Field(default=None, exclude_if=lambda value: value is None)
    """The sentence's language (schema 1.2), where one is known: acceptance per language is counted
    from the records and these lines, and a sentence id alone need not say its language."""
    file: str | None = None
    line: int | None = None
    field: str | None = None

    def location(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
        where = ":".join(parts)
        return f"{where}:{self.field}" if self.field else where
