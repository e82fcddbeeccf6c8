"""Records <-> word-level BIO tags in the Multi2OIE scheme.

Multi2OIE tags words twice (see ``shared/reference/method.md``):

* the **predicate head** labels every word ``P-B`` / ``P-I`` / ``O``; it learns *all*
  predicates of the sentence at once (the *all-predicate* tags);
* the **argument head** labels every word ``A0-B`` ... ``A3-I`` / ``O`` for *one* predicate,
  given that predicate's span (the *single-predicate* tags). Training has one example per
  (sentence, predicate).

Label ids are those of the Multi2OIE code (see :mod:`openie4pp.label_scheme`).

What fits the scheme
--------------------
:func:`record_to_examples` labels every extraction it can and reports the others as
:class:`Misfit` values, one per problem, each with a :class:`LabelMisfit` reason:

``ungrounded``
    the predicate or an argument has no token span (a free-text gold phrase, Re-OIE2016's
    implicit ``<be>``);
``span_out_of_range``
    a span ends past the last token (only reachable with unvalidated records);
``extra_role``
    a role other than ``arg0`` .. ``arg3`` (``loc``, ``temp``, ``context``, ``arg4`` ...);
    with ``extra_roles="drop"`` only that argument is dropped and the extraction is kept;
``duplicate_role``
    two arguments of one extraction share a role (tags hold one chunk per role);
``overlap``
    inside one extraction an argument overlaps the predicate or another argument;
``shared_predicate``
    an earlier extraction has the same predicate span: the argument head sees one labelling
    per predicate, so the *first* extraction with that span is kept and later ones dropped;
``predicate_overlap``
    the predicate overlaps (without being equal to) the predicate of an earlier kept
    extraction, which all-predicate tags cannot represent; the earlier one is kept.

**A misfit drops the extraction, never the record** (except ``extra_role`` under
``extra_roles="drop"``, which drops only the argument). The remaining extractions of a
record are correct training examples on their own, and dropping whole records would throw
away most multi-extraction sentences for one bad tuple. The all-predicate tags still mark
the (grounded) predicate of an extraction dropped for argument-level reasons, so the
predicate head is not taught that a real predicate is ``O``; only the argument head loses
that example. :attr:`LabelResult.fits_exactly` is ``False`` as soon as anything was dropped:
exactly then ``record -> tags -> record`` (:func:`examples_to_record`) may differ from the
input. Extractions are checked individually first; the cross-extraction rules
(``shared_predicate``, ``predicate_overlap``) then run, in record order, over the survivors.

Round trip
----------
For a record with ``fits_exactly``, ``examples_to_record(result.sentence, result.extractions,
record.provenance)`` returns the same extractions: same predicate span and text, same
arguments (role, span, text) and confidence. Arguments come back in role order ``arg0`` ..
``arg3`` (a record listing them in another order round-trips up to that order).

Decoding model output
---------------------
:mod:`openie4pp.label_decoding` turns tags back into extractions; the vocabularies are in
:mod:`openie4pp.label_scheme`. Both are re-exported here.

Everything works on plain lists of ints (no per-token objects), so labelling tens of
thousands of records takes well under a second per 10k.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from openie4pp.label_decoding import examples_to_record, predicate_spans, tags_to_extraction
from openie4pp.label_scheme import (
    ARG_LABEL2ID,
    ARG_LABELS,
    ARG_O,
    ARG_ROLES,
    PRED_B,
    PRED_I,
    PRED_LABEL2ID,
    PRED_LABELS,
    PRED_O,
    ROLE_INDEX,
    TaggedExtraction,
    Tags,
    arg_b,
    mark_span,
    span_tags,
)
from openie4pp.schema import Provenance, Record, Rejection, RejectionReason, Sentence

__all__ = [
    "ARG_LABEL2ID",
    "ARG_LABELS",
    "ARG_O",
    "ARG_ROLES",
    "PRED_B",
    "PRED_I",
    "PRED_LABEL2ID",
    "PRED_LABELS",
    "PRED_O",
    "LabelMisfit",
    "LabelResult",
    "Misfit",
    "TaggedExtraction",
    "Tags",
    "arg_b",
    "examples_to_record",
    "predicate_spans",
    "record_to_examples",
    "span_tags",
    "tags_to_extraction",
]

class LabelMisfit(str, Enum):
    """Why (part of) a record cannot be represented in the Multi2OIE tagging scheme."""

    ungrounded = "ungrounded"
    span_out_of_range = "span_out_of_range"
    extra_role = "extra_role"
    duplicate_role = "duplicate_role"
    overlap = "overlap"
    shared_predicate = "shared_predicate"
    predicate_overlap = "predicate_overlap"


@dataclass(frozen=True, slots=True)
class Misfit:
    """One thing that did not fit: ``extraction`` indexes ``record.extractions``; ``dropped``
    says what was left out of the tags because of it."""

    reason: LabelMisfit
    extraction: int
    detail: str
    dropped: Literal["extraction", "argument"] = "extraction"

    def to_rejection(self, record: Record) -> Rejection:
        """As a schema :class:`~openie4pp.schema.Rejection` (stage ``labels``) for reject logs."""
        return Rejection(
            stage="labels",
            reason=RejectionReason.label_scheme,
            detail=f"{self.reason.value}: {self.detail}",
            input=record.extractions[self.extraction].model_dump_json(),
            sentence_id=record.sentence.id,
            field=f"extractions[{self.extraction}]",
        )


@dataclass(slots=True)
class LabelResult:
    """A record in the tagging scheme: its words, all-predicate tags and one example per kept
    extraction, plus what did not fit."""

    sentence: Sentence
    tokens: list[str]
    pred_tags: list[int]
    """All-predicate tags: every kept predicate, plus grounded predicates of extractions
    dropped for argument-level reasons where they do not collide with a kept one."""
    extractions: list[TaggedExtraction]
    misfits: list[Misfit] = field(default_factory=list)

    @property
    def fits_exactly(self) -> bool:
        """True when nothing was dropped: the tags reproduce the record exactly."""
        return not self.misfits

    def to_record(self, provenance: Provenance) -> Record:
        """Rebuild a record from the tags (see :func:`examples_to_record`)."""
        return examples_to_record(self.sentence, self.extractions, provenance)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _fmt(span: tuple[int, int]) -> str:
    return f"[{span[0]}, {span[1]})"


def record_to_examples(record: Record, *, extra_roles: Literal["reject", "drop"] = "reject") -> LabelResult:
    """Tag ``record`` for Multi2OIE: all-predicate tags and one example per extraction that fits.

    ``extra_roles="reject"`` drops an extraction with a ``loc``/``temp``/``context``/``arg4+``
    argument; ``"drop"`` keeps the extraction without those arguments. Either way the misfit is
    reported, so ``fits_exactly`` means the tags reproduce the record.
    """
    if extra_roles not in ("reject", "drop"):
        raise ValueError(f"extra_roles must be 'reject' or 'drop', not {extra_roles!r}")
    drop_extra = extra_roles == "drop"
    sentence = record.sentence
    n = len(sentence.tokens)
    misfits: list[Misfit] = []
    # (record index, predicate span, [(role index, span)], confidence) of per-extraction survivors
    survivors: list[tuple[int, tuple[int, int], list[tuple[int, tuple[int, int]]], float]] = []
    # grounded, in-range predicate spans of extractions dropped by per-extraction checks
    dropped_predicates: list[tuple[int, int]] = []

    for i, extraction in enumerate(record.extractions):
        problems: list[tuple[LabelMisfit, str]] = []
        problem = problems.append
        pred_span = extraction.predicate.span
        if pred_span is None:
            problem((LabelMisfit.ungrounded, f"predicate {extraction.predicate.text!r} has no span"))
        elif pred_span[1] > n:
            problem((LabelMisfit.span_out_of_range, f"predicate span {_fmt(pred_span)} exceeds {n} tokens"))
            pred_span = None
        args: list[tuple[int, tuple[int, int]]] = []
        for argument in extraction.arguments:
            role = ROLE_INDEX.get(argument.role)
            if role is None:
                if drop_extra:
                    detail = f"{argument.role} argument dropped"
                    misfits.append(Misfit(LabelMisfit.extra_role, i, detail, dropped="argument"))
                else:
                    problem((LabelMisfit.extra_role, f"{argument.role} is not one of arg0..arg3"))
                continue
            span = argument.span
            if span is None:
                problem((LabelMisfit.ungrounded, f"{argument.role} {argument.text!r} has no span"))
            elif span[1] > n:
                problem(
                    (LabelMisfit.span_out_of_range, f"{argument.role} span {_fmt(span)} exceeds {n} tokens")
                )
            else:
                args.append((role, span))
        seen_roles: set[int] = set()
        for role, _ in args:
            if role in seen_roles:
                problem((LabelMisfit.duplicate_role, f"two {ARG_ROLES[role]} arguments"))
            seen_roles.add(role)
        for j, (role, span) in enumerate(args):
            if pred_span is not None and _overlaps(span, pred_span):
                detail = f"{ARG_ROLES[role]} {_fmt(span)} overlaps the predicate {_fmt(pred_span)}"
                problem((LabelMisfit.overlap, detail))
            for other_role, other in args[j + 1 :]:
                if _overlaps(span, other):
                    detail = f"{ARG_ROLES[role]} {_fmt(span)} overlaps {ARG_ROLES[other_role]} {_fmt(other)}"
                    problem((LabelMisfit.overlap, detail))
        if problems or pred_span is None:
            misfits.extend(Misfit(reason, i, detail) for reason, detail in problems)
            if pred_span is not None:
                dropped_predicates.append(pred_span)
            continue
        survivors.append((i, pred_span, args, extraction.confidence))

    kept: list[TaggedExtraction] = []
    kept_spans: list[tuple[int, int]] = []
    first_with_span: dict[tuple[int, int], int] = {}
    for i, pred_span, args, confidence in survivors:
        if pred_span in first_with_span:
            misfits.append(
                Misfit(
                    LabelMisfit.shared_predicate,
                    i,
                    f"predicate {_fmt(pred_span)} is also that of extraction {first_with_span[pred_span]}",
                )
            )
            continue
        clash = next((s for s in kept_spans if _overlaps(s, pred_span)), None)
        if clash is not None:
            misfits.append(
                Misfit(
                    LabelMisfit.predicate_overlap,
                    i,
                    f"predicate {_fmt(pred_span)} overlaps the predicate {_fmt(clash)} "
                    f"of extraction {first_with_span[clash]}",
                )
            )
            continue
        first_with_span[pred_span] = i
        kept_spans.append(pred_span)
        arg_tags = [ARG_O] * n
        for role, span in args:
            mark_span(arg_tags, span, 2 * role)
        kept.append(TaggedExtraction(pred_span, span_tags(pred_span, n), arg_tags, confidence, i))

    all_spans = list(kept_spans)
    for span in dropped_predicates:
        if not any(_overlaps(span, s) for s in all_spans):
            all_spans.append(span)
    pred_tags = [PRED_O] * n
    for span in all_spans:
        mark_span(pred_tags, span, PRED_B)

    misfits.sort(key=lambda m: m.extraction)
    return LabelResult(sentence, list(sentence.tokens), pred_tags, kept, misfits)


