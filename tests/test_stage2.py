"""Stage 2's grounding of proposed triples: overlap trimming, and what still gets rejected."""

from __future__ import annotations

import itertools

import pytest

from openie4pp.annotate.contract import AnswerTriple
from openie4pp.annotate.stage2 import ground_candidates, ground_triple, trim_overlaps
from openie4pp.schema import Extraction, RejectionReason, Sentence


def disjoint(spans: list[tuple[int, int]]) -> bool:
    return all(a[1] <= b[0] or b[1] <= a[0] for a, b in itertools.combinations(spans, 2))


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([(1, 6), (5, 6), (0, 1)], [(1, 5), (5, 6), (0, 1)]),  # relation swallowed the object
        ([(1, 2), (0, 3), (2, 3)], [(1, 2), (0, 1), (2, 3)]),  # subject swallowed the rest: cut twice
        ([(1, 2), (0, 3)], None),  # relation strictly inside the subject: no cut without a split
        ([(1, 2), (0, 2), (2, 3)], [(1, 2), (0, 1), (2, 3)]),  # subject ends with the relation
        ([(2, 4), (0, 3), (4, 5)], [(2, 4), (0, 2), (4, 5)]),  # partial overlap: the longer loses it
        ([(0, 2), (0, 2)], None),  # identical
        ([(0, 1), (1, 2), (2, 3)], [(0, 1), (1, 2), (2, 3)]),  # touching is not overlapping
    ],
)
def test_trim_overlaps(spans: list[tuple[int, int]], expected: list[tuple[int, int]] | None) -> None:
    assert trim_overlaps(spans) == expected


def test_trim_overlaps_only_ever_shrinks_and_ends_disjoint_or_refuses() -> None:
    """Every triple of spans over a 6-token sentence: a result is disjoint, each span non-empty
    and inside the span it came from; a refusal only where no edge cut could do it."""
    all_spans = [(a, b) for a in range(6) for b in range(a + 1, 7)]
    refused = 0
    for triple in itertools.product(all_spans, repeat=3):
        result = trim_overlaps(list(triple))
        if result is None:
            refused += 1
            continue
        assert disjoint(result)
        for before, after in zip(triple, result, strict=True):
            assert before[0] <= after[0] < after[1] <= before[1]
    assert 0 < refused < len(all_spans) ** 3


def sentence(text: str, lang: str = "en") -> Sentence:
    return Sentence.from_text(text, lang, id="s")


def test_a_weak_models_copying_is_repaired_to_the_right_triple() -> None:
    paris = sentence("Paris is the capital of France.")
    copied = AnswerTriple(subject="Paris", relation="is the capital of France", object="France")
    result = ground_triple(paris, copied)
    assert isinstance(result, Extraction)
    assert result.binary() == ("Paris", "is the capital of", "France")
    assert result.predicate.span == (1, 5)

    anna = sentence("Anna drinks coffee.")
    triple = AnswerTriple(subject="Anna drinks coffee", relation="drinks", object="coffee")
    result = ground_triple(anna, triple)
    assert isinstance(result, Extraction)
    assert result.binary() == ("Anna", "drinks", "coffee")
    for element in (result.predicate, *result.arguments):  # texts match their spans exactly
        assert element.span is not None and anna.span_text(*element.span) == element.text


def test_untrimmable_overlaps_and_duplicates_after_trimming_are_rejected() -> None:
    rome = sentence("Rome is old.")
    result = ground_triple(rome, AnswerTriple(subject="Rome is old", relation="is", object=""))
    assert not isinstance(result, Extraction)
    reason, detail = result
    assert reason is RejectionReason.overlapping_spans and "overlap" in detail
    # two proposals that trim to the same triple are one fact: the second is a duplicate
    candidates = ground_candidates(sentence("Anna drinks coffee."), [
        AnswerTriple(subject="Anna", relation="drinks", object="coffee"),
        AnswerTriple(subject="Anna drinks", relation="drinks", object="coffee"),
    ])
    assert candidates[0].accepted and candidates[1].reason is RejectionReason.duplicate
