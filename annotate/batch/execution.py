"""``--execution batch`` and ``batch-files``: the two-stage pipeline in rounds of batch files.

A round is one pass of the ordinary :class:`~openie4pp.annotate.pipeline.Pipeline` over the input
whose backend answers from the response cache only: a request the cache cannot answer is collected
(the item stays unfinished, :class:`~openie4pp.annotate.llm.AnswerPending`), and once the pass is
through, the collected requests go out as batch files (:class:`~.rounds.BatchRounds`: written,
uploaded, created, polled, downloaded, stored in the cache). The next pass replays every unfinished
item from the cache as far as it goes (stage 1 answered: its judge is collected; an invalid answer:
its re-ask) and the rounds go on until a pass collects nothing: every item then ended in a shard or
in ``rejected.jsonl``, exactly as an online run would have written it.

Why replay instead of keeping the items' coroutines waiting: every round starts from what is on disk
(the cache, the shards, ``OUT/batches/``), so a crash anywhere costs at most the pass's CPU, never
a request, and a run of millions of items needs no memory per waiting item. An answer the pipeline
forgets (it failed validation) stays replayable until the run ends (``keep_forgotten``): otherwise
the next pass would ask for it again and pay twice.

``batch-files`` writes the same files and stops (exit status 3) until their outputs, produced
elsewhere (``vllm run-batch -i IN -o OUT``), lie next to them; the rerun ingests them and goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from pathlib import Path

from openie4pp.errors import RunProblems, UsageError
from openie4pp.schema import RejectionReason
from openie4pp.shards import ShardWriter

from ..backends.cache import CachedBackend
from ..config import AnnotationConfig
from ..inputs import InputCounts
from ..llm import AnswerPending, ChatRequest, ChatResponse, RequestFailed
from ..pipeline import Pipeline
from ..run_result import AnnotationResult, annotation_result
from ..run_setup import (
    interrupt_on_sigterm,
    open_items,
    pipeline_config,
    prepare_run,
    sigterm_as_interrupt,
    stop_on_sigterm,
)
from ..stats import Prices, RunStats
from .rounds import BatchRounds
from .transport import BatchTransport, FileExchange, OpenAIBatchTransport, OutputsAwaited

log = logging.getLogger(__name__)

MAX_PASSES = 1000
"""A run whose passes keep collecting requests after this many rounds is stopped (a bug, never a
bill without bound): an item takes at most about ten rounds (translate, its retries, project,
judge, their re-asks), and every line gives up after ``max_line_attempts``."""


class _Unsent:
    """The cache's inner backend in a batch run: a pass never sends a request itself."""

    def __init__(self, model: str) -> None:
        self.model = model

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise AssertionError("a batch pass sends no request")  # RoundBackend never calls it

    async def aclose(self) -> None:
        return None


class RoundBackend:
    """A pass's backend: the cache's answer, or the request collected for the next round.

    An answer that came in by this process's batches is served as not ``cached`` the first time (the
    run's statistics and the record's provenance count it as this run's request, at batch prices);
    an answer served again to a later pass of the same run is ``replayed``, which nothing counts
    twice."""

    def __init__(self, cache: CachedBackend, rounds: BatchRounds, endpoint: str) -> None:
        self.cache, self.rounds, self.endpoint = cache, rounds, endpoint
        self.model = cache.model
        self.collected: dict[str, ChatRequest] = {}
        self._served: set[str] = set()
        self._fresh: set[str] = set()
        self._failed: set[str] = set()

    def next_pass(self) -> None:
        self.collected = {}

    async def complete(self, request: ChatRequest) -> ChatResponse:
        key = request.cache_key(self.model)
        found = self.cache.lookup(key)
        if found is not None:
            if key in self.rounds.fresh:
                self.rounds.fresh.discard(key)
                self._fresh.add(key)
            fresh, replayed = key in self._fresh, key in self._served
            self._served.add(key)
            if not fresh and not replayed:
                return found
            # fresh: this run paid for it, so the item's provenance counts its tokens on every pass
            return dataclasses.replace(found, cached=not fresh, replayed=replayed,
                                       endpoint=self.endpoint if fresh else found.endpoint)
        detail = self.rounds.given_up(key)
        if detail is not None:
            counted = key in self._failed
            self._failed.add(key)
            raise RequestFailed(f"batch: {detail}", transient=True, counted=counted)
        self.collected.setdefault(key, request)
        raise AnswerPending(key)

    async def forget(self, request: ChatRequest) -> bool:
        return await self.cache.forget(request)

    async def aclose(self) -> None:
        return None


def open_transport(config: AnnotationConfig) -> tuple[BatchTransport, str]:
    """The batch transport the config asks for, and the endpoint's display name for provenance."""
    if config.execution.kind == "batch-files":
        assert config.backend.model  # the config refuses a batch run without a model
        return FileExchange(config.backend.model), "batch-files"
    from ..backends.transport import check_endpoint_url, endpoint_name, is_loopback

    settings = config.backend
    url = settings.endpoints[0]
    check_endpoint_url(url, settings.api_key_env)
    key = os.environ.get(settings.api_key_env) or None
    if key is None and not is_loopback(url):
        raise UsageError(f"no API key for {endpoint_name(url)}: set the environment variable "
                         f"{settings.api_key_env}")
    return OpenAIBatchTransport(url, key, timeout_s=settings.timeout_s), f"batch:{endpoint_name(url)}"


def run_in_rounds(config: AnnotationConfig, *, progress: bool = True) -> AnnotationResult:
    """Annotate ``config.input`` into ``config.out`` by batch rounds (see the module's docstring).

    Raises before any upload for a configuration mistake; returns a result with ``waiting`` set
    when ``batch-files`` outputs are still to be produced (the same call continues)."""
    canaries = prepare_run(config)
    if config.input.limit == 0:
        return AnnotationResult(config.out, f"nothing to do: --limit 0; {config.out} is unchanged",
                                RunStats(), None)
    assert config.backend.model  # the config refuses a batch run without a model
    transport, endpoint = open_transport(config)
    settings = config.execution.batch
    price_factor = settings.price_factor
    forgive = RejectionReason.request_failed.value in config.pipeline.retry_failed
    cache = CachedBackend(_Unsent(config.backend.model), config.cache_path, keep_forgotten=True)
    pconfig = pipeline_config(config, endpoint, canaries, price_factor=price_factor)
    try:
        # one writer for the whole run: the folder stays locked while batches are polled (another
        # run would re-send what is in flight), and it is marked complete only once every item ended
        with interrupt_on_sigterm(), ShardWriter(config.out, resume=True,
                                                 build_config=pconfig.build_config) as writer:
            rounds = BatchRounds(batch_folder(config.out), cache, config.backend.model, transport, settings,
                                 forgive_failures=forgive)
            backend = RoundBackend(cache, rounds, endpoint)
            pipeline = Pipeline(backend, config.out, pconfig)
            try:
                resumed = rounds.resume()
                if resumed is not None:
                    _say(progress, resumed, "resumed")
                while True:
                    counts = InputCounts()
                    backend.next_pass()
                    with sigterm_as_interrupt():
                        asyncio.run(_pass(pipeline, config, counts, writer))
                    if not backend.collected:
                        break
                    if pipeline.passes >= MAX_PASSES:
                        raise RunProblems(f"the batch run made {MAX_PASSES} rounds and still collects "
                                          "requests; stopped (a bug: please report it)")
                    _say(progress, None, f"round {pipeline.passes}: {len(backend.collected)} requests "
                         f"for {pipeline.awaiting} items")
                    report = rounds.run_round(backend.collected)
                    _say(progress, report, "ingested")
                    if report.stats.batches and report.stats.failed == report.stats.batches:
                        # the provider refused every file (a wrong model, a line it cannot read): the
                        # next round would be refused alike; say why instead of rejecting every item
                        raise RunProblems("every batch of the round failed as a whole: "
                                          + "; ".join(rounds.failures[-3:]) + "; fix the cause and rerun "
                                          "(the lines count as failed attempts: --batch-attempts)")
            except OutputsAwaited as waiting:
                result = _waiting(config, pipeline.stats, waiting)
                raise _Waiting(result) from None
        cache.purge_forgotten()
    except _Waiting as waiting:  # the writer closed the folder as incomplete
        return waiting.result
    finally:
        cache.close()
        close = getattr(transport, "close", None)
        if close is not None:
            close()
    prices = Prices(config.pipeline.price_in * price_factor, config.pipeline.price_out * price_factor)
    return annotation_result(config, pipeline.stats, counts, pipeline.canaries.scores, prices,
                             execution=config.execution.kind, batch=rounds.stats.as_dict(),
                             rounds=pipeline.passes - 1)


class _Waiting(Exception):
    """Carries the batch-files result out of the writer's block, so the writer sees an exception
    and marks the folder incomplete."""

    def __init__(self, result: AnnotationResult) -> None:
        super().__init__("waiting for batch outputs")
        self.result = result


def batch_folder(out: Path) -> Path:
    """Where a batch run keeps its rounds' files and state."""
    return out / "batches"


async def _pass(pipeline: Pipeline, config: AnnotationConfig, counts: InputCounts,
                writer: ShardWriter) -> None:
    stop_on_sigterm()
    await pipeline.run(open_items(config, counts), writer=writer)


def _say(progress: bool, report: object | None, what: str) -> None:
    """One line per round on stderr (``--no-progress``: none); the log has it either way."""
    text = what if report is None else f"batch round {what}: {report}"
    log.info("%s", text)
    if progress:
        print(text, file=sys.stderr, flush=True)


def _waiting(config: AnnotationConfig, stats: RunStats, waiting: OutputsAwaited) -> AnnotationResult:
    """``batch-files``: the round's inputs are written; their outputs are to be made elsewhere."""
    lines = [f"batch files written: {len(waiting.inputs)} input file(s) wait for their outputs; produce "
             "each output next to its input, then rerun this command:"]
    lines += [f"  {command}" for command in waiting.command_hint.split("; ")]
    return AnnotationResult(config.out, "\n".join(lines), stats, None, waiting=True)

