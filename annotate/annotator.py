"""One output unit through the LLM: stage 1 (extract, or translate and project), then stage 2
(ground, language, judge), ending as candidates and a record's provenance, or :class:`ItemRejected`.

``extract`` mode asks the LLM for triples copied from a sentence in any language. ``project``
mode is MT4CrossOIE's data-based transfer: translate an English sentence with known triples
into each target language (the translation must be in that language), then ask for the
corresponding triples as spans of the translation. Both then go through stage 2
(:mod:`openie4pp.annotate.stage2`). Writing the outcome is the pipeline's
(:mod:`openie4pp.annotate.pipeline`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

from openie4pp.errors import UsageError
from openie4pp.schema import Provenance, RejectionReason, Sentence, Source

from .canaries import Canary
from .constraints import MAX_TRIPLES, build_constraint
from .contract import (
    AnswerInvalid,
    AnswerTriple,
    ExtractionAnswer,
    ProjectionAnswer,
    TranslationAnswer,
    VerificationAnswer,
    parse_answer,
    reask_message,
)
from .langid import is_language
from .llm import Backend, ChatRequest, Message, RequestFailed
from .prompts import load_prompt
from .stage2 import Candidate, VerifyPolicy, apply_verdicts, ground_candidates
from .stats import Prices, RunStats
from .units import STAGE_OF_PURPOSE, ItemRejected, OutputUnit, UnitTrace

A = TypeVar("A", bound=BaseModel)


@dataclass
class PipelineConfig:
    mode: Literal["extract", "project"] = "extract"
    target_langs: tuple[str, ...] = ()
    concurrency: int = 16
    verify: bool = True
    reasks: int = 1
    """How often an invalid answer is sent back with the validation error before giving up."""
    translation_retries: int = 1
    """How often a translation in the wrong language is asked for again (the paper retries)."""
    endpoint_name: str = ""
    policy: VerifyPolicy = field(default_factory=VerifyPolicy)
    max_tokens: int = 512
    prices: Prices = field(default_factory=Prices)
    build_config: dict[str, Any] = field(default_factory=dict)
    retry_failed: frozenset[str] = frozenset()
    """Reasons (``request_failed``, ``llm_invalid_output``...) whose items an earlier run gave up on
    and that this run annotates again; every other finished item stays finished."""
    constrain: Literal["none", "spans"] = "none"
    """``spans``: span-constrained decoding (:mod:`openie4pp.annotate.constraints`) for extract
    mode's stage 1, project mode's projection and the judge's fixes; each endpoint gets the kind
    it accepts."""
    canaries: tuple[Canary, ...] = ()
    """Gold sentences annotated first and scored, never written (:mod:`openie4pp.annotate.canaries`)."""


REFUSING_STATUSES = frozenset({401, 403, 404})
"""A request refused for these is refused for every item (a wrong key, model or URL): the run stops
at once with the server's answer instead of rejecting every item of the input."""


class UnitAnnotator:
    """The requests of one unit: asked, validated, re-asked, counted in ``stats``."""

    def __init__(self, backend: Backend, config: PipelineConfig, stats: RunStats) -> None:
        self.backend, self.config, self.stats = backend, config, stats

    # ------------------------------------------------------------------ requests

    async def ask(self, request: ChatRequest, answer_model: type[A], trace: UnitTrace) -> A:
        """Send ``request``; parse and validate the answer; re-ask with the error; else reject.

        An answer that does not validate is dropped from the response cache before anything else
        happens, so a rerun (after a fix of the server, the prompt or the model) asks again instead
        of replaying it."""
        trace.prompt_hashes[request.prompt_id] = request.prompt_hash
        for attempt in range(self.config.reasks + 1):
            try:
                response = await self.backend.complete(request)
            except RequestFailed as error:
                self.stats.failed_requests += not error.counted
                if error.status in REFUSING_STATUSES:
                    raise UsageError(f"the endpoint refused the {request.purpose} request: {error.detail}; "
                                     "check --endpoint, --model and the API key") from None
                raise ItemRejected(
                    STAGE_OF_PURPOSE[request.purpose],
                    RejectionReason.request_failed,
                    f"{request.purpose} request: {error.detail}",
                    deferred=error.transient,
                ) from error
            if not response.replayed:  # a batch run's later pass: counted when first served
                self.stats.record_response(response, request.purpose)
            if request.constraint is not None and request.purpose == "stage1":
                trace.constraint = response.constraint
            if not response.cached:
                trace.usage.prompt_tokens += response.prompt_tokens
                trace.usage.completion_tokens += response.completion_tokens
            try:
                return parse_answer(response.content, answer_model)
            except AnswerInvalid as error:
                await self.forget(request)
                if attempt == self.config.reasks:
                    raise ItemRejected(
                        STAGE_OF_PURPOSE[request.purpose],
                        RejectionReason.llm_invalid_output,
                        f"{request.purpose} answer: {error.detail} (answer: {response.content[:300]!r})",
                    ) from error
                self.stats.reasks += not response.replayed
                request = request.with_messages(Message("assistant", response.content), reask_message(error))
        raise AssertionError("unreachable")

    async def forget(self, request: ChatRequest) -> None:
        """Drop a cached answer that turned out unusable (backends without a cache have nothing to drop)."""
        forget = getattr(self.backend, "forget", None)
        if forget is not None:
            await forget(request)

    def _request(self, prompt_id: str, lang: str, purpose: str, **variables: Any) -> ChatRequest:
        return load_prompt(prompt_id).request(
            lang, purpose=purpose, max_tokens=self.config.max_tokens, **variables
        )

    def _constrained(self, request: ChatRequest, sentence: Sentence,
                     answer_model: type[ExtractionAnswer | ProjectionAnswer | VerificationAnswer],
                     items: int | None = None) -> ChatRequest:
        """``request`` with the span constraint of ``sentence`` when ``--constrain spans`` is on:
        stage 1's triples, the projection's, and the judge's fixes can only be its spans."""
        if self.config.constrain != "spans":
            return request
        return replace(request, constraint=build_constraint(sentence, answer_model, items=items))

    # ------------------------------------------------------------------ stages

    async def stage1(self, unit: OutputUnit, trace: UnitTrace) -> tuple[Sentence, list[AnswerTriple]]:
        item = unit.item
        if self.config.mode == "extract":
            sentence = Sentence.from_text(item.text, item.lang, id=unit.id, pretokenized=item.pretokenized)
            request = self._request("extract", item.lang, "stage1", sentence=item.text)
            answer = await self.ask(self._constrained(request, sentence, ExtractionAnswer), ExtractionAnswer,
                                    trace)
            return sentence, answer.triples
        target = unit.lang
        if unit.canary is not None:  # the benchmark's own translation: the gold matches its text
            known = Sentence.from_text(unit.canary.text, target, id=unit.id,
                                       pretokenized=unit.canary.pretokenized)
            return known, await self._project(unit, known, trace)
        # the translate prompt is rendered for the *target* language: its notes say how to write it
        request = self._request("translate", target, "translate", sentence=item.text)
        for attempt in range(self.config.translation_retries + 1):
            translation = (await self.ask(request, TranslationAnswer, trace)).translation.strip()
            if translation and is_language(translation, target):
                break
            await self.forget(request)  # a rerun against a better model must not replay it
            if attempt == self.config.translation_retries:
                raise ItemRejected(
                    "stage1",
                    RejectionReason.wrong_language,
                    f"the translation is not in {target}: {translation[:200]!r}",
                )
            request = request.with_messages(
                Message("assistant", json.dumps({"translation": translation}, ensure_ascii=False)),
                Message(
                    "user",
                    f"That is not {target}. Translate the sentence into {target}; answer with JSON only.",
                ),
            )
        sentence = Sentence.from_text(translation, target, id=unit.id)
        return sentence, await self._project(unit, sentence, trace)

    async def _project(self, unit: OutputUnit, sentence: Sentence, trace: UnitTrace) -> list[AnswerTriple]:
        """Project mode's step (b): the English triples as spans of the translation ``sentence``
        (tokenised once, by the caller: the constraint and stage 2 use the same tokens)."""
        projection = self._request(
            "project",
            unit.lang,
            "stage1",
            sentence=sentence.text,
            english_sentence=unit.item.text,
            english_triples=list(unit.item.triples),
        )
        # one triple per English triple: the bound must not cut the projection short
        items = max(MAX_TRIPLES, len(unit.item.triples))
        answer = await self.ask(self._constrained(projection, sentence, ProjectionAnswer, items),
                                ProjectionAnswer, trace)
        return answer.triples

    async def stage2(self, sentence: Sentence, triples: list[AnswerTriple], trace: UnitTrace,
                     count: bool = True) -> list[Candidate]:
        """Ground, then judge; ``count``: whether the run's candidate counters include this item
        (a canary's do not: stats.json describes the input)."""
        candidates = ground_candidates(sentence, triples)
        grounded = [c for c in candidates if c.accepted]
        answer: VerificationAnswer | None = None
        if self.config.verify and grounded:
            listing = [candidate_listing(c) for c in grounded]
            request = self._request("verify", sentence.lang, "verify", sentence=sentence.text,
                                    candidates=json.dumps(listing, ensure_ascii=False))
            answer = await self.ask(self._constrained(request, sentence, VerificationAnswer, len(listing)),
                                    VerificationAnswer, trace)
        outcome = apply_verdicts(sentence, candidates, answer, self.config.policy)
        if count:
            self.stats.fixed_candidates += outcome.fixed
        return candidates

    async def annotate(self, unit: OutputUnit, trace: UnitTrace) -> tuple[Sentence, list[Candidate]]:
        """Both stages: the sentence the record is about and every candidate, accepted or not."""
        sentence, triples = await self.stage1(unit, trace)
        if not triples:
            raise ItemRejected("stage1", RejectionReason.no_extractions, "the LLM proposed no triple")
        return sentence, await self.stage2(sentence, triples, trace, count=unit.canary is None)

    def provenance(self, unit: OutputUnit, accepted: list[Candidate], trace: UnitTrace) -> Provenance:
        """Where a record of ``unit`` with the ``accepted`` candidates came from."""
        verdicts = {c.verdict for c in accepted}
        return Provenance(
            source=Source.llm,
            model=self.backend.model,
            endpoint=self.config.endpoint_name or None,
            prompt_id="+".join(sorted(trace.prompt_hashes)),
            prompt_hash=_combined(trace.prompt_hashes),
            verdict="fix" if "fix" in verdicts else "accept",
            usage=trace.usage,
            mode=self.config.mode,
            source_lang=unit.item.lang if self.config.mode == "project" else None,
            constraint=trace.constraint,
        )


def candidate_listing(candidate: Candidate) -> dict[str, Any]:
    """What the judge sees of a grounded candidate: its elements as grounded in the sentence (after
    normalisation and overlap trimming), not the LLM's raw strings; the index names it in verdicts."""
    extraction = candidate.extraction
    assert extraction is not None
    texts = {a.role: a.text for a in extraction.arguments}
    extra = [a.text for a in extraction.arguments if a.role not in ("arg0", "arg1")]
    return {"index": candidate.index, "subject": texts.get("arg0", ""), "relation": extraction.predicate.text,
            "object": texts.get("arg1", ""), "extra": extra}


def _combined(hashes: dict[str, str]) -> str:
    joined = ",".join(f"{k}={v}" for k, v in sorted(hashes.items()))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
