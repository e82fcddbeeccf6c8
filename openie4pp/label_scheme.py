"""The Multi2OIE tag vocabularies: label names, their ids, and one training example's tags.

Label ids are those of the Multi2OIE code (``utils/bio.py``: ``P-B`` 0, ``P-I`` 1, ``O`` 2;
``A0-B`` 0, ``A0-I`` 1, ..., ``A3-I`` 7, ``O`` 8), so checkpoints and decoders written for
it read our tags unchanged. ``B`` of a label is always even and its ``I`` is ``B + 1``.
Shared by the encoder (:mod:`openie4pp.labels`) and the decoder (:mod:`openie4pp.label_decoding`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

Tags = Collection[int] | Collection[str]
"""A tag sequence: label ids or names, one per word (a list, tuple, numpy array or tensor)."""

PRED_LABELS: tuple[str, ...] = ("P-B", "P-I", "O")
"""Predicate-head labels; a label's id is its index (as in Multi2OIE)."""
PRED_LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(PRED_LABELS)}
PRED_B, PRED_I, PRED_O = 0, 1, 2

ARG_ROLES: tuple[str, ...] = ("arg0", "arg1", "arg2", "arg3")
"""The roles the argument head can tag, in output order; ``arg<k>`` is labelled ``A<k>``."""
ARG_LABELS: tuple[str, ...] = (
    *(f"A{k}-{bio}" for k in range(len(ARG_ROLES)) for bio in ("B", "I")),
    "O",
)
"""Argument-head labels ``A0-B, A0-I, ..., A3-B, A3-I, O``; a label's id is its index."""
ARG_LABEL2ID: dict[str, int] = {label: i for i, label in enumerate(ARG_LABELS)}
ARG_O = len(ARG_LABELS) - 1

ROLE_INDEX: dict[str, int] = {role: k for k, role in enumerate(ARG_ROLES)}
"""``arg<k>`` -> ``k``: the role part of its label ids."""


def arg_b(role: str) -> int:
    """The id of ``A<k>-B`` for ``role`` (``arg<k>``); ``A<k>-I`` is one more."""
    return 2 * ROLE_INDEX[role]



@dataclass(slots=True)
class TaggedExtraction:
    """One (sentence, predicate) training example.

    ``pred_tags`` are the single-predicate tags (only this predicate), ``arg_tags`` its
    argument tags; both have one id per word. ``index`` is the extraction's position in the
    source record (``-1`` when not from a record, e.g. model output).
    """

    pred_span: tuple[int, int]
    pred_tags: list[int]
    arg_tags: list[int]
    confidence: float = 1.0
    index: int = -1


def mark_span(tags: list[int], span: tuple[int, int], b: int) -> None:
    """Tag ``span`` = ``[start, end)`` of ``tags`` in place as one chunk: ``b``, then its ``I`` ``b + 1``."""
    start, end = span
    tags[start] = b
    if end - start > 1:
        tags[start + 1 : end] = [b + 1] * (end - start - 1)


def span_tags(span: tuple[int, int], n: int, b: int = PRED_B, o: int = PRED_O) -> list[int]:
    """``n`` tags, ``o`` everywhere except ``b, b+1, b+1, ...`` on ``span`` = ``[start, end)``.

    With the defaults: the single-predicate tags of a predicate.
    """
    tags = [o] * n
    mark_span(tags, span, b)
    return tags
