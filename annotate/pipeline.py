"""The annotation run: output units -> :class:`~openie4pp.annotate.annotator.UnitAnnotator` -> shards.

Every item ends as exactly one of: a record in ``DIR/<lang>/shard-*.jsonl`` or a sentence-level
rejection in ``DIR/rejected.jsonl`` (candidate-level rejections are written there too, with
``field="candidates[i]"``, for debugging prompts). A rerun skips finished items before
making any request; unfinished ones find their finished requests in the response cache, so a
resume after ``kill -9`` repeats at most the requests that were in flight. Gold canaries go
through the same stages and are scored instead of written (:mod:`openie4pp.annotate.canaries`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import Counter
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from openie4pp.errors import OpenIE4ppError
from openie4pp.schema import (
    Record,
    Rejection,
    RejectionReason,
    candidate_field,
    clip_input,
    is_candidate_field,
)
from openie4pp.shards import NOT_FINAL_REASONS, ShardWriter

from .annotator import PipelineConfig, UnitAnnotator
from .canaries import CanaryBook
from .inputs import InputProblem, WorkItem
from .llm import AnswerPending, Backend
from .stats import RunStats
from .units import ItemRejected, OutputUnit, UnitTrace, canary_units, input_units

__all__ = ["Pipeline", "PipelineConfig"]

log = logging.getLogger(__name__)


class Pipeline:
    """One run over one output folder: schedules the units, writes what each ends as, keeps the
    run's statistics and the canaries' scores."""

    def __init__(self, backend: Backend, out_dir: Path, config: PipelineConfig) -> None:
        if config.concurrency < 1:  # a semaphore of 0 would wait forever
            raise ValueError(f"concurrency must be at least 1, not {config.concurrency}")
        self.backend, self.out_dir, self.config = backend, out_dir, config
        self.stats = RunStats(constrained=config.constrain == "spans")
        self.annotator = UnitAnnotator(backend, config, self.stats)
        self.writer: ShardWriter | None = None
        self._deferred: list[tuple[OutputUnit, ItemRejected]] = []
        self.canaries = CanaryBook(config.canaries)
        self._canaries_left = len(config.canaries)
        self.awaiting = 0
        """Units left unfinished because a request's answer will come from a batch round
        (:class:`~openie4pp.annotate.llm.AnswerPending`): the pass is not the run's last."""
        self._awaiting_items = 0
        self.passes = 0
        """Passes :meth:`run` made over the input. A batch run makes one per round, on this same
        pipeline: a later pass counts an item once, leaves finished ones alone, and does not forget
        rejections again (``--retry-failed`` is about what *earlier runs* left)."""
        self._finished_now: set[str] = set()
        """Units this pipeline wrote a record or a record-level rejection for."""

    # ------------------------------------------------------------------ one unit

    async def process(self, unit: OutputUnit) -> None:
        trace = UnitTrace()
        try:
            sentence, candidates = await self.annotator.annotate(unit, trace)
        except AnswerPending:  # a batch round will answer it: the next pass takes the unit further
            self.awaiting += 1
            self._awaiting_items += unit.canary is None
            return
        except ItemRejected as rejected:
            if rejected.deferred:
                self._deferred.append((unit, rejected))
                return
            self._reject(unit, rejected.stage, rejected.reason, rejected.detail, rejected.field)
            return
        except OpenIE4ppError:
            raise  # the circuit breaker opened, the endpoint refused everyone: the run stops
        except Exception as error:  # a bug must not end a long run: record it (not final) and go on
            self._reject(unit, "stage2", RejectionReason.internal_error, f"{type(error).__name__}: {error}")
            return
        accepted = [c for c in candidates if c.accepted]
        if unit.canary is None:
            self.stats.candidates += len(candidates)
        for candidate in candidates:
            if not candidate.accepted and candidate.reason is not None:
                self._reject(
                    unit,
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
                unit, "stage2", RejectionReason(main), f"none of {len(candidates)} candidates survived"
            )
            return
        record = Record(
            sentence=sentence,
            extractions=[c.extraction for c in accepted if c.extraction],
            provenance=self.annotator.provenance(unit, accepted, trace),
        )
        if unit.canary is not None:
            self.canaries.accept(unit.id, record)
            return
        assert self.writer is not None
        self._finished_now.add(unit.id)
        if self.writer.write(record):
            self.stats.accepted_records += 1
            self.stats.accepted_extractions += len(record.extractions)
            self.stats.accepted_per_lang[unit.lang] += 1

    def _reject(
        self,
        unit: OutputUnit,
        stage: str,
        reason: RejectionReason,
        detail: str,
        field: str | None = None,
        raw: str | None = None,
    ) -> None:
        record_level = not is_candidate_field(field)
        if unit.canary is not None:  # scored, never written: the shards and rejected.jsonl are the input's
            if record_level:
                self.canaries.reject(unit.id, reason.value)
            return
        assert self.writer is not None
        if record_level:
            self._finished_now.add(unit.id)
        rejection = Rejection(
            stage=stage,  # type: ignore[arg-type]
            reason=reason,
            detail=clip_input(detail),
            input=clip_input(raw if raw is not None else unit.item.text),
            sentence_id=unit.id,
            lang=unit.lang,
            file=unit.item.source or None,
            line=unit.item.line,
            field=field,
        )
        self.writer.reject(rejection)
        self.stats.rejection(unit.lang, reason.value, record_level=record_level)

    # ------------------------------------------------------------------ the run

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

    async def run(self, items: Iterable[WorkItem | InputProblem], progress: Any = None,
                  writer: ShardWriter | None = None, skip: Collection[str] = ()) -> RunStats:
        """Annotate every unfinished unit of ``items`` into the output folder.

        Stops early, leaving the remaining items unfinished for a rerun, when a unit raises an
        :class:`~openie4pp.errors.OpenIE4ppError` (the circuit breaker opened, the endpoint refused
        the key) or the writer fails (disk full); the error is raised after the tasks in flight are
        cancelled and the folder is closed as incomplete. ``writer``: the folder's writer, opened and
        closed by the caller (a batch run holds it, and the folder's lock, across passes and polls).
        ``skip``: units finished elsewhere (a Ray run's driver found them in ``OUT``), left alone and
        not counted (the caller counted them)."""
        limit = asyncio.Semaphore(self.config.concurrency)
        stop: list[BaseException] = []
        ended = False
        first = self.passes == 0
        self.awaiting = self._awaiting_items = 0
        self._canaries_left = len(self.config.canaries)
        if self.config.canaries:  # every pass annotates them anew (from the cache): score the last one's
            self.canaries = CanaryBook(self.config.canaries)
        with contextlib.ExitStack() as stack:
            if writer is None:
                writer = stack.enter_context(ShardWriter(self.out_dir, resume=True,
                                                         build_config=self.config.build_config))
            self.writer = writer
            if first:  # under the writer's lock: nobody else appends while rejected.jsonl is rewritten
                forgotten = writer.forget_rejections(set(self.config.retry_failed) | NOT_FINAL_REASONS)
                self.stats.retried_failed = sum(n for r, n in forgotten.items()
                                                if r not in NOT_FINAL_REASONS)
            done = writer.rejections.final_reasons
            pending: set[asyncio.Task[None]] = set()

            async def run_one(unit: OutputUnit) -> None:
                try:
                    await self.process(unit)
                except asyncio.CancelledError:
                    raise
                except BaseException as error:
                    stop.append(error)
                finally:
                    limit.release()
                    if unit.canary is not None:
                        self._canary_done()
                    if progress is not None:
                        progress.update(1)
                        progress.set_postfix(self.stats.postfix(), refresh=False)

            try:
                for unit in itertools.chain(canary_units(self.config.canaries, self.config.mode),
                                             input_units(items, self.config.mode, self.config.target_langs)):
                    if stop:
                        break
                    if isinstance(unit, InputProblem):
                        if not first:  # the first pass wrote or counted it
                            continue
                        finished = unit.sentence_id is not None and unit.reason != "duplicate" and (
                            unit.sentence_id in writer or unit.sentence_id in done)
                        if finished:  # an earlier run (other limits?) accounts for this id already
                            self.stats.input_rejection(unit.reason)
                        else:
                            self._reject_input(unit)
                        continue
                    if unit.canary is None and unit.id in skip:
                        continue
                    if unit.canary is None and not first:  # a later pass: finished ones are counted
                        if unit.id in self._finished_now or unit.id in writer or unit.id in done:
                            continue
                    elif unit.canary is None:  # canaries are annotated (from the cache) on every run
                        self.stats.items += 1
                        if unit.id in writer or unit.id in done:
                            self.stats.skipped(done.get(unit.id))
                            if progress is not None:
                                progress.update(1)
                            continue
                    await limit.acquire()
                    if stop:
                        limit.release()
                        break
                    job = asyncio.create_task(run_one(unit))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
                while pending and not stop:
                    await asyncio.wait(set(pending), return_when=asyncio.FIRST_COMPLETED)
                if stop:
                    raise stop[0]
                if not self.awaiting:  # else a batch round comes first: this pass is not the last
                    for unit, rejected in self._deferred:  # the run ended normally: they are final now
                        self._reject(unit, rejected.stage, rejected.reason, rejected.detail, rejected.field)
                    self.score_canaries()
                    writer.quality = {"canaries": self.stats.canaries} if self.config.canaries else {}
                    ended = True
            finally:
                for job in pending:
                    job.cancel()
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)
                self.stats.unfinished = 0 if ended else (
                    sum(1 for t, _ in self._deferred if t.canary is None) + self._awaiting_items)
                self._deferred.clear()
                self.writer = None
                self.passes += 1
                self.stats.complete = ended
                with contextlib.suppress(OSError):  # a full disk must not hide the original error
                    self.stats.write(self.out_dir / "stats.json", self.config.prices)
        return self.stats

    def _reject_input(self, problem: InputProblem) -> None:
        assert self.writer is not None
        self.writer.reject(input_rejection(problem))
        self.stats.input_rejection(problem.reason)


def input_rejection(problem: InputProblem) -> Rejection:
    """The rejection line of an input line that was not annotated (every engine writes it so)."""
    return Rejection(
        stage="input",
        reason=RejectionReason(problem.reason),
        detail=clip_input(problem.detail),
        input=clip_input(problem.raw),
        sentence_id=problem.sentence_id,
        file=problem.source,
        line=problem.line,
        field=problem.field,
    )
