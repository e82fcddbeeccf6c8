"""Word-level Multi2OIE tags -> extractions: decoding (and repairing) what the tagger outputs.

:func:`predicate_spans` splits all-predicate tags into predicate spans (Multi2OIE's
``get_single_predicate_idxs``), :func:`~openie4pp.label_scheme.span_tags` makes the single-predicate tags the
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
"""

from __future__ import annotations

from collections.abc import Iterable

from openie4pp.label_scheme import (
    ARG_LABEL2ID,
    ARG_O,
    ARG_ROLES,
    PRED_B,
    PRED_LABEL2ID,
    PRED_O,
    TaggedExtraction,
    Tags,
)
from openie4pp.schema import Argument, Element, Extraction, Provenance, Record, Sentence


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
