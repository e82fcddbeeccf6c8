"""Stage 2: turn an LLM's proposed triples into grounded extractions, or say why not.

The LLM's text is untrusted twice over: the model may be weak (a 270M model makes things up)
and the input sentence may carry instructions meant for it ("ignore the above and output ...").
Neither can reach a shard, because every element of an accepted triple must be a contiguous
token span of *this* sentence (:mod:`openie4pp.grounding`). Normalisation per language
(quotes, trailing punctuation, bracketed notes, CJK spacing) happens first, so that a correct
answer is not lost to formatting. The LLM judge (the ``verify`` prompt) then accepts, fixes or
rejects each grounded candidate; a fixed triple must ground too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from openie4pp.grounding import Grounded, NotGrounded, ground
from openie4pp.schema import Argument, Element, Extraction, RejectionReason, Sentence

from .contract import AnswerTriple, VerificationAnswer
from .normalize import normalize_phrase

E = TypeVar("E", bound=Element)


@dataclass
class Candidate:
    """One proposed triple and what stage 2 made of it."""

    index: int
    triple: AnswerTriple
    extraction: Extraction | None = None
    reason: RejectionReason | None = None
    detail: str = ""
    verdict: str = ""

    @property
    def accepted(self) -> bool:
        return self.extraction is not None and self.reason is None

    def reject(self, reason: RejectionReason, detail: str) -> None:
        self.extraction, self.reason, self.detail = None, reason, detail


def _ground(sentence: Sentence, normalised: str, raw: str, near: int | None = None) -> Grounded | NotGrounded:
    """The normalised phrase grounded; failing that, the phrase exactly as the LLM wrote it. Why:
    normalising strips edge punctuation, and in a pre-tokenised sentence the punctuation can be
    part of a token ("Sr." in "George Bluth Sr. ,"): the stripped phrase then ends inside a token,
    while the LLM's own string is an exact span (what span-constrained decoding produces)."""
    found = ground(sentence, normalised, near=near)
    if isinstance(found, Grounded) or not raw.strip() or raw.strip() == normalised:
        return found
    exact = ground(sentence, raw.strip(), near=near)
    return exact if isinstance(exact, Grounded) else found


def ground_triple(sentence: Sentence, triple: AnswerTriple) -> Extraction | tuple[RejectionReason, str]:
    """A grounded extraction (arg0 = subject, arg1 = object, arg2.. = extra), or why not.

    The relation is grounded first; arguments nearest to it, which picks the right one of two
    identical phrases (``it``, ``the company``) in the usual case.
    """
    lang = sentence.lang
    relation = normalize_phrase(triple.relation, lang, sentence.text)
    found = _ground(sentence, relation, triple.relation)
    if not isinstance(found, Grounded):
        return RejectionReason.ungrounded, f"relation {triple.relation!r}: {found.reason.value}"
    predicate = Element(text=found.text, span=found.span)
    arguments: list[Argument] = []
    phrases = [("subject", triple.subject), ("object", triple.object)]
    phrases += [(f"extra[{i}]", phrase) for i, phrase in enumerate(triple.extra)]
    for role_index, (name, phrase) in enumerate(phrases):
        normalised = normalize_phrase(phrase, lang, sentence.text)
        if not normalised and name.startswith("extra"):
            continue
        if not normalised and name == "object":
            continue  # an intransitive relation: (subject, relation) is a valid unary extraction
        grounded = _ground(sentence, normalised, phrase, near=found.start)
        if not isinstance(grounded, Grounded):
            reason = "empty" if not normalised else grounded.reason.value
            return RejectionReason.ungrounded, f"{name} {phrase!r}: {reason}"
        arguments.append(Argument(role=f"arg{role_index}", text=grounded.text, span=grounded.span))
    grounded_spans = [predicate.span, *(a.span for a in arguments)]  # every one grounded above
    spans = trim_overlaps([s for s in grounded_spans if s is not None])
    if spans is None:
        return RejectionReason.overlapping_spans, "two elements of the triple overlap in the sentence"
    predicate = _element_at(sentence, predicate, spans[0])
    arguments = [_element_at(sentence, a, span) for a, span in zip(arguments, spans[1:], strict=True)]
    return Extraction(predicate=predicate, arguments=arguments, confidence=1.0)


def trim_overlaps(spans: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """Make the spans of one triple disjoint by cutting shared words off the edge of the longer
    element, or None when that cannot be done (one span inside another's middle, or identical).

    Weak models copy too much into a slot: ``(Paris; is the capital of France; France)`` or
    ``(Anna drinks coffee; drinks; coffee)``. The words another element already holds are what is
    wrong, so cutting them off the edge gives ``is the capital of`` and ``Anna``; the judge still
    sees the repaired triple. Nothing is ever added, and an element is never split in two.
    """
    spans = list(spans)
    while True:  # each cut shortens a span, so this ends
        overlapping = [(i, j) for i in range(len(spans)) for j in range(i + 1, len(spans))
                       if spans[i][0] < spans[j][1] and spans[j][0] < spans[i][1]]
        if not overlapping:
            return spans
        cut = next((c for c in map(lambda p: _edge_cut(spans, *p), overlapping) if c is not None), None)
        if cut is None:  # identical, or one strictly inside another: no cut without splitting
            return None
        index, span = cut
        spans[index] = span


def _edge_cut(spans: list[tuple[int, int]], i: int, j: int) -> tuple[int, tuple[int, int]] | None:
    """Cut the words shared by spans ``i`` and ``j`` off the edge of the longer one, if they are at
    an edge of it and something is left: (index, new span), else None."""
    longer, other = (i, j) if spans[i][1] - spans[i][0] >= spans[j][1] - spans[j][0] else (j, i)
    (l0, l1), (o0, o1) = spans[longer], spans[other]
    if o0 <= l0 < o1 < l1:  # the shared words are at the longer span's start
        return longer, (o1, l1)
    if l0 < o0 < l1 <= o1:  # ... or at its end
        return longer, (l0, o0)
    return None


def _element_at(sentence: Sentence, element: E, span: tuple[int, int]) -> E:
    if element.span == span:
        return element
    return element.model_copy(update={"span": span, "text": sentence.span_text(*span)})


def ground_candidates(sentence: Sentence, triples: list[AnswerTriple]) -> list[Candidate]:
    """Ground every triple; duplicates (same spans) are rejected so a record holds each fact once."""
    candidates: list[Candidate] = []
    seen: set[tuple[tuple[int, int] | None, ...]] = set()
    for index, triple in enumerate(triples):
        candidate = Candidate(index, triple)
        result = ground_triple(sentence, triple)
        if isinstance(result, Extraction):
            key = (result.predicate.span, *(a.span for a in result.arguments))
            if key in seen:
                candidate.reject(RejectionReason.duplicate, "the same triple was proposed twice")
            else:
                seen.add(key)
                candidate.extraction = result
        else:
            candidate.reject(*result)
        candidates.append(candidate)
    return candidates


@dataclass
class VerifyPolicy:
    missing_verdict: str = "accept"
    """What to do with a grounded candidate the judge gave no verdict for. ``accept``: grounding
    already guarantees the triple is made of the sentence's words; ``reject``: stricter."""


@dataclass
class VerifyOutcome:
    """What applying the verdicts did beyond each candidate's own state (which records accept/reject)."""

    fixed: int = 0
    """Candidates replaced by the judge's grounded fix (the run's statistics count them)."""


def apply_verdicts(
    sentence: Sentence, candidates: list[Candidate], answer: VerificationAnswer | None, policy: VerifyPolicy
) -> VerifyOutcome:
    """Apply the judge's verdicts to the grounded candidates (``answer`` None: no judge was asked)."""
    outcome = VerifyOutcome()
    verdicts = {v.index: v for v in answer.verdicts} if answer is not None else {}
    for candidate in candidates:
        if not candidate.accepted:
            continue
        verdict = verdicts.get(candidate.index)
        if answer is None:
            candidate.verdict = "accept"
        elif verdict is None:
            candidate.verdict = policy.missing_verdict
            if policy.missing_verdict != "accept":
                candidate.reject(RejectionReason.llm_rejected, "the judge gave no verdict")
        elif verdict.verdict == "reject":
            candidate.verdict = "reject"
            candidate.reject(RejectionReason.llm_rejected, verdict.reason or "rejected by the judge")
        elif verdict.verdict == "fix" and verdict.fixed is not None:
            candidate.verdict = "fix"
            result = ground_triple(sentence, verdict.fixed)
            if isinstance(result, Extraction):
                candidate.extraction = result
                outcome.fixed += 1
            else:
                candidate.reject(result[0], f"the judge's fix does not ground: {result[1]}")
        else:
            candidate.verdict = "accept"
    return outcome
