"""Records <-> word-level BIO tags in the Multi2OIE scheme.

Multi2OIE tags words twice (see ``shared/reference/method.md``):

* the **predicate head** labels every word ``P-B`` / ``P-I`` / ``O``; it learns *all*
  predicates of the sentence at once (the *all-predicate* tags);
* the **argument head** labels every word ``A0-B`` ... ``A3-I`` / ``O`` for *one* predicate,
  given that predicate's span (the *single-predicate* tags). Training has one example per
  (sentence, predicate).

Label ids are those of the Multi2OIE code (``utils/bio.py``: ``P-B`` 0, ``P-I`` 1, ``O`` 2;
``A0-B`` 0, ``A0-I`` 1, ..., ``A3-I`` 7, ``O`` 8), so checkpoints and decoders written for
it read our tags unchanged. ``B`` of a label is always even and its ``I`` is ``B + 1``.

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
:func:`predicate_spans` splits all-predicate tags into predicate spans (Multi2OIE's
``get_single_predicate_idxs``), :func:`span_tags` makes the single-predicate tags the
argument head is given, and :func:`tags_to_extraction` turns one predicate's tags and its
argument tags back into an :class:`~openie4pp.schema.Extraction`. Ill-formed sequences are
repaired as in the Multi2OIE decoder (``filter_pred_tags`` / ``filter_arg_tags``):

* an ``I`` tag that does not continue a chunk of its label starts one (``I`` without ``B``);
* ``P-B`` always starts a new predicate (two predicates may be adjacent);
* an ``A<k>-B`` right after a chunk of the same role continues that chunk (one role has one
  argument, so adjacent chunks of a role can only be a boundary error);
* argument tags on the predicate's own words are ignored;
* if a label still has several chunks (a role tagged in two places, several predicate chunks
  in single-predicate tags), the **longest chunk wins, ties going to the leftmost** (Multi2OIE
  keeps the chunk with the most probable first word; without probabilities, length is the
  most robust proxy);
* tag sequences shorter than the sentence (a truncated model input) count as ``O`` for the
  missing words; longer ones, and unknown labels, are errors.

Everything works on plain lists of ints (no per-token objects), so labelling tens of
thousands of records takes well under a second per 10k.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from openie4pp.schema import (
    Argument,
    Element,
    Extraction,
    Provenance,
    Record,
    Rejection,
    RejectionReason,
    Sentence,
)

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

_ROLE_INDEX: dict[str, int] = {role: k for k, role in enumerate(ARG_ROLES)}


def arg_b(role: str) -> int:
    """The id of ``A<k>-B`` for ``role`` (``arg<k>``); ``A<k>-I`` is one more."""
    return 2 * _ROLE_INDEX[role]


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


def span_tags(span: tuple[int, int], n: int, b: int = PRED_B, o: int = PRED_O) -> list[int]:
    """``n`` tags, ``o`` everywhere except ``b, b+1, b+1, ...`` on ``span`` = ``[start, end)``.

    With the defaults: the single-predicate tags of a predicate.
    """
    start, end = span
    tags = [o] * n
    tags[start] = b
    if end - start > 1:
        tags[start + 1 : end] = [b + 1] * (end - start - 1)
    return tags


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
            role = _ROLE_INDEX.get(argument.role)
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
        for role, (start, end) in args:
            b = 2 * role
            arg_tags[start] = b
            if end - start > 1:
                arg_tags[start + 1 : end] = [b + 1] * (end - start - 1)
        kept.append(TaggedExtraction(pred_span, span_tags(pred_span, n), arg_tags, confidence, i))

    all_spans = list(kept_spans)
    for span in dropped_predicates:
        if not any(_overlaps(span, s) for s in all_spans):
            all_spans.append(span)
    pred_tags = [PRED_O] * n
    for start, end in all_spans:
        pred_tags[start] = PRED_B
        if end - start > 1:
            pred_tags[start + 1 : end] = [PRED_I] * (end - start - 1)

    misfits.sort(key=lambda m: m.extraction)
    return LabelResult(sentence, list(sentence.tokens), pred_tags, kept, misfits)


def _ids(tags: Tags, label2id: dict[str, int], n: int, what: str) -> list[int]:
    """Tags as a list of ``n`` ids: names are looked up, a short sequence is padded with ``O``."""
    if hasattr(tags, "tolist"):  # numpy arrays, torch tensors
        tags = tags.tolist()
    if len(tags) > n:
        raise ValueError(f"{len(tags)} {what} tags for a sentence of {n} tokens")
    n_labels = len(label2id)
    out: list[int] = []
    for tag in tags:
        if isinstance(tag, str):
            if tag not in label2id:
                raise ValueError(f"unknown {what} label {tag!r} (expected one of {list(label2id)})")
            out.append(label2id[tag])
        else:
            value = int(tag)
            if not 0 <= value < n_labels:
                raise ValueError(f"{what} tag id {value} is outside 0..{n_labels - 1}")
            out.append(value)
    if len(out) < n:
        out.extend([n_labels - 1] * (n - len(out)))  # O is the last id of both vocabularies
    return out


def predicate_spans(pred_tags: Tags) -> list[tuple[int, int]]:
    """The predicate chunks ``[start, end)`` of (all-)predicate tags, left to right.

    ``P-B`` starts a chunk, ``P-I`` continues one or (after ``O``) starts one.
    """
    ids = _ids(pred_tags, PRED_LABEL2ID, len(pred_tags), "predicate")
    spans: list[tuple[int, int]] = []
    start = -1
    for i, tag in enumerate(ids):
        if tag == PRED_O:
            if start >= 0:
                spans.append((start, i))
                start = -1
        elif tag == PRED_B or start < 0:
            if start >= 0:
                spans.append((start, i))
            start = i
    if start >= 0:
        spans.append((start, len(ids)))
    return spans


def _longest(spans: list[tuple[int, int]]) -> tuple[int, int]:
    best = spans[0]
    for span in spans[1:]:
        if span[1] - span[0] > best[1] - best[0]:
            best = span
    return best


def _argument_chunks(ids: list[int], blocked: tuple[int, int]) -> dict[int, list[tuple[int, int]]]:
    """Chunks per role index; words in ``blocked`` (the predicate) count as ``O``."""
    chunks: dict[int, list[tuple[int, int]]] = {}
    role, start = -1, 0
    for i, tag in enumerate(ids):
        if tag == ARG_O or blocked[0] <= i < blocked[1]:
            if role >= 0:
                chunks.setdefault(role, []).append((start, i))
                role = -1
            continue
        tag_role = tag // 2
        if tag_role == role:  # I, or an adjacent B of the same role: one argument
            continue
        if role >= 0:
            chunks.setdefault(role, []).append((start, i))
        role, start = tag_role, i
    if role >= 0:
        chunks.setdefault(role, []).append((start, len(ids)))
    return chunks


def tags_to_extraction(
    sentence: Sentence,
    pred_tags: Tags,
    arg_tags: Tags,
    confidence: float = 1.0,
) -> Extraction | None:
    """The extraction that one predicate's tags and its argument tags denote, or ``None`` when
    ``pred_tags`` mark no predicate.

    Tags are ids or label names, one per word of ``sentence``; see the module docstring for how
    ill-formed sequences are repaired. Arguments come out in role order with texts from
    :meth:`Sentence.span_text`; an extraction without arguments is returned as such (callers
    that need arguments filter on ``extraction.arguments``).
    """
    n = len(sentence.tokens)
    pred_ids = _ids(pred_tags, PRED_LABEL2ID, n, "predicate")
    arg_ids = _ids(arg_tags, ARG_LABEL2ID, n, "argument")
    spans = predicate_spans(pred_ids)
    if not spans:
        return None
    pred_span = _longest(spans)
    chunks = _argument_chunks(arg_ids, pred_span)
    arguments = []
    for role in sorted(chunks):
        start, end = _longest(chunks[role])
        text = sentence.span_text(start, end)
        arguments.append(Argument(role=ARG_ROLES[role], text=text, span=(start, end)))
    return Extraction(
        predicate=Element(text=sentence.span_text(*pred_span), span=pred_span),
        arguments=arguments,
        confidence=confidence,
    )


def examples_to_record(
    sentence: Sentence, examples: Iterable[TaggedExtraction], provenance: Provenance
) -> Record:
    """A record from per-predicate tags (gold examples or model output), in the given order.

    Each example is decoded from its ``pred_tags`` and ``arg_tags`` with
    :func:`tags_to_extraction` (``pred_span`` is not consulted, so this checks the tags);
    examples whose tags mark no predicate are skipped.
    """
    extractions = []
    for example in examples:
        extraction = tags_to_extraction(sentence, example.pred_tags, example.arg_tags, example.confidence)
        if extraction is not None:
            extractions.append(extraction)
    return Record(sentence=sentence, extractions=extractions, provenance=provenance)
