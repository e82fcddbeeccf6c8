"""The two-stage annotation pipeline: inputs -> LLM stage 1 -> stage 2 (ground, language, judge) -> shards.

``extract`` mode asks the LLM for triples copied from a sentence in any language. ``project``
mode is MT4CrossOIE's data-based transfer: translate an English sentence with known triples
into each target language (the translation must be in that language), then ask for the
corresponding triples as spans of the translation. Both then go through stage 2
(:mod:`openie4pp.annotate.stage2`).

Every item ends as exactly one of: a record in ``DIR/<lang>/shard-*.jsonl`` or a sentence-level
rejection in ``DIR/rejected.jsonl`` (candidate-level rejections are written there too, with
``field="candidates[i]"``, for debugging prompts). A rerun skips finished items before
making any request; unfinished ones find their finished requests in the response cache, so a
resume after ``kill -9`` repeats at most the requests that were in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from openie4pp.annotate.canaries import Canary, CanaryBook
from openie4pp.annotate.constraints import MAX_TRIPLES, build_constraint
from openie4pp.annotate.contract import (
    AnswerInvalid,
    ExtractionAnswer,
    ProjectionAnswer,
    TranslationAnswer,
    Triple,
    VerificationAnswer,
    parse_answer,
    reask_message,
)
from openie4pp.annotate.inputs import InputProblem, WorkItem
from openie4pp.annotate.langid import is_language
from openie4pp.annotate.llm import Backend, ChatRequest, Message, RequestFailed
from openie4pp.annotate.prompts import load_prompt
from openie4pp.annotate.stage2 import Candidate, VerifyPolicy, apply_verdicts, ground_candidates
from openie4pp.annotate.stats import Prices, RunStats
from pydantic import BaseModel

from openie4pp.errors import OpenIE4ppError, UsageError
from openie4pp.schema import (
    Provenance,
    Record,
    Rejection,
    RejectionReason,
    Sentence,
    Source,
    SpanConstraintKind,
    TokenUsage,
    candidate_field,
    clip_input,
    is_candidate_field,
)
from openie4pp.shards import NOT_FINAL_REASONS, ShardWriter

A = TypeVar("A", bound=BaseModel)
log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Task:
    """One unit of output: an item in ``extract`` mode, an (item, target language) pair in ``project``."""

    id: str
    item: WorkItem
    target_lang: str | None = None
    canary: Canary | None = None
    """A gold canary: scored, never written; in project mode its translation is known."""

    @property
    def lang(self) -> str:
        return self.target_lang or self.item.lang


STAGE_OF_PURPOSE = {"stage1": "stage1", "translate": "stage1", "verify": "stage2"}
"""The rejection stage of a request's purpose: translating is part of stage 1 (project mode), the
judge is stage 2. ``Rejection.stage`` is a closed set; the purpose stays visible in the detail."""


class ItemRejected(Exception):
    """How a task ends without a record. ``deferred``: the endpoint failed (not the item); the
    rejection is written only if the run ends normally, so a run stopped by the circuit breaker or
    an interrupt leaves such items unfinished for the rerun instead of marking them failed."""

    def __init__(self, stage: str, reason: RejectionReason, detail: str, field: str | None = None,
                 *, deferred: bool = False) -> None:
        super().__init__(detail)
        self.stage, self.reason, self.detail, self.field = stage, reason, detail, field
        self.deferred = deferred


@dataclass
class _Trace:
    """What one task spent: token usage and the prompts it used (for provenance)."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    prompt_hashes: dict[str, str] = field(default_factory=dict)
    constraint: SpanConstraintKind | None = None
    """How the stage-1 answer's span constraint was sent (None: the run asked for none)."""


REFUSING_STATUSES = frozenset({401, 403, 404})
"""A request refused for these is refused for every item (a wrong key, model or URL): the run stops
at once with the server's answer instead of rejecting every item of the input."""


class Pipeline:
    def __init__(self, backend: Backend, out_dir: Path, config: PipelineConfig) -> None:
        if config.concurrency < 1:  # a semaphore of 0 would wait forever
            raise ValueError(f"concurrency must be at least 1, not {config.concurrency}")
        self.backend, self.out_dir, self.config = backend, out_dir, config
        self.stats = RunStats(constrained=config.constrain == "spans")
        self.writer: ShardWriter | None = None
        self._deferred: list[tuple[Task, ItemRejected]] = []
        self.canaries = CanaryBook(config.canaries)
        self._canaries_left = len(config.canaries)

    # ------------------------------------------------------------------ requests

    async def ask(self, request: ChatRequest, answer_model: type[A], trace: _Trace) -> A:
        """Send ``request``; parse and validate the answer; re-ask with the error; else reject.

        An answer that does not validate is dropped from the response cache before anything else
        happens, so a rerun (after a fix of the server, the prompt or the model) asks again instead
        of replaying it."""
        trace.prompt_hashes[request.prompt_id] = request.prompt_hash
        for attempt in range(self.config.reasks + 1):
            try:
                response = await self.backend.complete(request)
            except RequestFailed as error:
                self.stats.failed_requests += 1
                if error.status in REFUSING_STATUSES:
                    raise UsageError(f"the endpoint refused the {request.purpose} request: {error.detail}; "
                                     "check --endpoint, --model and the API key") from None
                raise ItemRejected(
                    STAGE_OF_PURPOSE[request.purpose],
                    RejectionReason.request_failed,
                    f"{request.purpose} request: {error.detail}",
                    deferred=error.transient,
                ) from error
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
                self.stats.reasks += 1
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

    async def stage1(self, task: Task, trace: _Trace) -> tuple[Sentence, list[Triple]]:
        item = task.item
        if self.config.mode == "extract":
            sentence = Sentence.from_text(item.text, item.lang, id=task.id, pretokenized=item.pretokenized)
            request = self._request("extract", item.lang, "stage1", sentence=item.text)
            answer = await self.ask(self._constrained(request, sentence, ExtractionAnswer), ExtractionAnswer,
                                    trace)
            return sentence, answer.triples
        target = task.lang
        if task.canary is not None:  # the benchmark's own translation: the gold matches its text
            known = Sentence.from_text(task.canary.text, target, id=task.id,
                                       pretokenized=task.canary.pretokenized)
            return known, await self._project(task, known, trace)
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
        sentence = Sentence.from_text(translation, target, id=task.id)
        return sentence, await self._project(task, sentence, trace)

    async def _project(self, task: Task, sentence: Sentence, trace: _Trace) -> list[Triple]:
        """Project mode's step (b): the English triples as spans of the translation ``sentence``
        (tokenised once, by the caller: the constraint and stage 2 use the same tokens)."""
        projection = self._request(
            "project",
            task.lang,
            "stage1",
            sentence=sentence.text,
            english_sentence=task.item.text,
            english_triples=list(task.item.triples),
        )
        # one triple per English triple: the bound must not cut the projection short
        items = max(MAX_TRIPLES, len(task.item.triples))
        answer = await self.ask(self._constrained(projection, sentence, ProjectionAnswer, items),
                                ProjectionAnswer, trace)
        return answer.triples

    async def stage2(self, sentence: Sentence, triples: list[Triple], trace: _Trace,
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

    # ------------------------------------------------------------------ one task

    async def process(self, task: Task) -> None:
        trace = _Trace()
        try:
            sentence, triples = await self.stage1(task, trace)
            if not triples:
                raise ItemRejected("stage1", RejectionReason.no_extractions, "the LLM proposed no triple")
            candidates = await self.stage2(sentence, triples, trace, count=task.canary is None)
        except ItemRejected as rejected:
            if rejected.deferred:
                self._deferred.append((task, rejected))
                return
            self._reject(task, rejected.stage, rejected.reason, rejected.detail, rejected.field)
            return
        except OpenIE4ppError:
            raise  # the circuit breaker opened, the endpoint refused everyone: the run stops
        except Exception as error:  # a bug must not end a long run: record it (not final) and go on
            self._reject(task, "stage2", RejectionReason.internal_error, f"{type(error).__name__}: {error}")
            return
        accepted = [c for c in candidates if c.accepted]
        if task.canary is None:
            self.stats.candidates += len(candidates)
        for candidate in candidates:
            if not candidate.accepted and candidate.reason is not None:
                self._reject(
                    task,
                    "stage2",
                    candidate.reason,
                    candidate.detail,
                    candidate_field(candidate.index),
                    raw=candidate.triple.model_dump_json(),
                )
        if not accepted:
            reasons = Counter(c.reason.value for c in candidates if c.reason is not None)
            # the most common reason; a tie goes to the first candidate's (not to set order, which
            # changes with the hash seed: a resumed run must write the same line)
            main = reasons.most_common(1)[0][0] if reasons else "no_extractions"
            self._reject(
                task, "stage2", RejectionReason(main), f"none of {len(candidates)} candidates survived"
            )
            return
        verdicts = {c.verdict for c in accepted}
        provenance = Provenance(
            source=Source.llm,
            model=self.backend.model,
            endpoint=self.config.endpoint_name or None,
            prompt_id="+".join(sorted(trace.prompt_hashes)),
            prompt_hash=_combined(trace.prompt_hashes),
            verdict="fix" if "fix" in verdicts else "accept",
            usage=trace.usage,
            mode=self.config.mode,
            source_lang=task.item.lang if self.config.mode == "project" else None,
            constraint=trace.constraint,
        )
        record = Record(
            sentence=sentence,
            extractions=[c.extraction for c in accepted if c.extraction],
            provenance=provenance,
        )
        if task.canary is not None:
            self.canaries.accept(task.id, record)
            return
        assert self.writer is not None
        if self.writer.write(record):
            self.stats.accepted_records += 1
            self.stats.accepted_extractions += len(record.extractions)
            self.stats.accepted_per_lang[task.lang] += 1

    def _reject(
        self,
        task: Task,
        stage: str,
        reason: RejectionReason,
        detail: str,
        field: str | None = None,
        raw: str | None = None,
    ) -> None:
        record_level = not is_candidate_field(field)
        if task.canary is not None:  # scored, never written: the shards and rejected.jsonl are the input's
            if record_level:
                self.canaries.reject(task.id, reason.value)
            return
        assert self.writer is not None
        rejection = Rejection(
            stage=stage,  # type: ignore[arg-type]
            reason=reason,
            detail=clip_input(detail),
            input=clip_input(raw if raw is not None else task.item.text),
            sentence_id=task.id,
            file=task.item.source or None,
            line=task.item.line,
            field=field,
        )
        self.writer.reject(rejection)
        self.stats.rejection(task.lang, reason.value, record_level=record_level)

    # ------------------------------------------------------------------ the run

    def canary_tasks(self) -> Iterator[Task]:
        """The gold canaries as tasks: in extract mode the gold sentence itself; in project mode its
        English original with the English gold triples, projected onto the benchmark's own
        translation (the translate step is skipped: the gold matches that text)."""
        for canary in self.config.canaries:
            if self.config.mode == "extract":
                item = WorkItem(canary.id, canary.lang, canary.text, pretokenized=canary.pretokenized,
                                source=canary.benchmark)
                yield Task(canary.id, item, canary=canary)
            else:
                item = WorkItem(canary.id, "en", canary.english or "", canary.english_triples,
                                source=canary.benchmark)
                yield Task(canary.id, item, canary.lang, canary=canary)

    def _canary_done(self) -> None:
        self._canaries_left -= 1
        if self._canaries_left == 0:
            self.score_canaries()

    def score_canaries(self) -> None:
        """Score the canaries finished so far into the stats (and the progress line).

        A scoring failure is a measurement lost, never the run: it is logged and the canaries get
        no score, and the run's shards and manifest are written as usual."""
        if not self.config.canaries:
            return
        try:
            scores = self.canaries.score()
        except Exception as error:  # the data is fine; only its measurement failed
            log.warning("gold canaries could not be scored (%s: %s); the run goes on without their scores",
                        type(error).__name__, error)
            return
        self.stats.canaries = {lang: s.as_dict() for lang, s in sorted(scores.items())}
        self.stats.canary_f1 = self.canaries.postfix()

    def tasks(self, items: Iterable[WorkItem | InputProblem]) -> Iterator[Task | InputProblem]:
        """The tasks of ``items``; a repeated sentence id becomes an input problem (``duplicate``):
        annotating it twice would cost twice and store it once, and leave its line unaccounted for.
        In ``project`` mode a sentence without known triples has nothing to project (``schema_invalid``
        on ``triples``)."""
        seen: set[str] = set()
        for item in items:
            if isinstance(item, InputProblem):
                yield item
            elif item.id in seen:
                yield InputProblem(
                    item.source,
                    item.line,
                    f"sentence id {item.id!r} occurs earlier in the input; it is annotated once",
                    clip_input(item.text),
                    reason="duplicate",
                    sentence_id=item.id,
                )
            elif self.config.mode == "extract":
                seen.add(item.id)
                yield Task(item.id, item)
            elif not item.triples:
                yield InputProblem(
                    item.source, item.line,
                    "triples: project mode needs the sentence's known triples "
                    "([[subject, relation, object], ...])",
                    clip_input(item.text), field="triples", sentence_id=item.id)
            else:
                seen.add(item.id)
                for target in self.config.target_langs:
                    yield Task(f"{item.id}.{target}", item, target)

    async def run(self, items: Iterable[WorkItem | InputProblem], progress: Any = None) -> RunStats:
        """Annotate every unfinished task of ``items`` into the output folder.

        Stops early, leaving the remaining items unfinished for a rerun, when a task raises an
        :class:`~openie4pp.errors.OpenIE4ppError` (the circuit breaker opened, the endpoint refused
        the key) or the writer fails (disk full); the error is raised after the tasks in flight are
        cancelled and the folder is closed as incomplete."""
        limit = asyncio.Semaphore(self.config.concurrency)
        stop: list[BaseException] = []
        ended = False
        with ShardWriter(self.out_dir, resume=True, build_config=self.config.build_config) as writer:
            self.writer = writer
            # under the writer's lock: nobody else appends while rejected.jsonl is rewritten
            forgotten = writer.forget_rejections(set(self.config.retry_failed) | NOT_FINAL_REASONS)
            self.stats.retried_failed = sum(n for r, n in forgotten.items() if r not in NOT_FINAL_REASONS)
            done = writer.rejections.final_reasons
            pending: set[asyncio.Task[None]] = set()

            async def run_one(task: Task) -> None:
                try:
                    await self.process(task)
                except asyncio.CancelledError:
                    raise
                except BaseException as error:
                    stop.append(error)
                finally:
                    limit.release()
                    if task.canary is not None:
                        self._canary_done()
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(self.stats.postfix(), refresh=False)

            try:
                for task in itertools.chain(self.canary_tasks(), self.tasks(items)):
                    if stop:
                        break
                    if isinstance(task, InputProblem):
                        finished = task.sentence_id is not None and task.reason != "duplicate" and (
                            task.sentence_id in writer or task.sentence_id in done)
                        if finished:  # an earlier run (other limits?) accounts for this id already
                            self.stats.input_rejection(task.reason)
                        else:
                            self._reject_input(task)
                        continue
                    if task.canary is None:  # canaries are annotated (from the cache) on every run
                        self.stats.items += 1
                        if task.id in writer or task.id in done:
                            self.stats.skipped(done.get(task.id))
                            if progress is not None:
                                progress.update(1)
                            continue
                    await limit.acquire()
                    if stop:
                        limit.release()
                        break
                    job = asyncio.create_task(run_one(task))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
                while pending and not stop:
                    await asyncio.wait(set(pending), return_when=asyncio.FIRST_COMPLETED)
                if stop:
                    raise stop[0]
                for task, rejected in self._deferred:  # the run ended normally: they are final now
                    self._reject(task, rejected.stage, rejected.reason, rejected.detail, rejected.field)
                self.score_canaries()
                writer.quality = {"canaries": self.stats.canaries} if self.config.canaries else {}
                ended = True
            finally:
                for job in pending:
                    job.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                self.stats.unfinished = 0 if ended else sum(1 for t, _ in self._deferred if t.canary is None)
                self._deferred.clear()
                self.writer = None
                self.stats.complete = ended
                with contextlib.suppress(OSError):  # a full disk must not hide the original error
                    self.stats.write(self.out_dir / "stats.json", self.config.prices)
        return self.stats

    def _reject_input(self, problem: InputProblem) -> None:
        assert self.writer is not None
        self.writer.reject(
            Rejection(
                stage="input",
                reason=RejectionReason(problem.reason),
                detail=clip_input(problem.detail),
                input=clip_input(problem.raw),
                sentence_id=problem.sentence_id,
                file=problem.source,
                line=problem.line,
                field=problem.field,
            )
        )
        self.stats.input_rejection(problem.reason)


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
