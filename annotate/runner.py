"""One annotation run from an :class:`~openie4pp.annotate.config.AnnotationConfig`: check what the
config cannot check alone (the folders on disk, the canaries' gold files, a project-mode input
without triples), open the backend, run the pipeline, and say what happened.

:func:`run_annotation` prints nothing: the command line (:mod:`openie4pp.app.annotate_command`)
prints its :class:`AnnotationResult`, the quickstart reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openie4pp.errors import UsageError
from openie4pp.paths import benchmarks_dir
from openie4pp.shards import check_not_busy

from .annotator import PipelineConfig
from .backends.factory import open_backend
from .canaries import Canary, CanaryScore, load_canaries
from .config import AnnotationConfig
from .inputs import InputCounts, InputProblem, WorkItem, read_inputs
from .pipeline import Pipeline
from .stage2 import VerifyPolicy
from .stats import TRANSIENT_REASONS, RunStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotationResult:
    """What a run did, for whoever started it."""

    out: Path
    line: str
    """The summary a person reads (every input line is in one of its numbers)."""
    stats: RunStats
    summary: dict[str, Any] | None
    """``stats.json``'s numbers plus ``input_other_shards`` (None: nothing ran, ``--limit 0``)."""
    problem: str | None = None
    """Why the run is not a success although it ran (no input sentence, no record accepted): the
    command line's exit status 1. None: a success."""
    canaries: dict[str, CanaryScore] = field(default_factory=dict)
    """The gold canaries' scores per language ({}: the run had none, or they could not be scored)."""


def run_annotation(config: AnnotationConfig, *, progress: bool = True) -> AnnotationResult:
    """Annotate ``config.input`` into ``config.out`` (resuming what an earlier run left there).

    Usage errors (folders, gold files) raise before the first request, as the config's own checks
    do (an endpoint that refuses the model or the key raises at its first request); an interrupt
    (Ctrl-C, SIGTERM) raises ``KeyboardInterrupt`` after the folder is closed as incomplete, so the
    same call continues the run."""
    canaries = resolve_canaries(config)
    check_folders(config)
    if config.input.limit == 0:
        return AnnotationResult(config.out, f"nothing to do: --limit 0; {config.out} is unchanged",
                                RunStats(), None)
    counts = InputCounts()
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        pipeline = asyncio.run(_run(config, canaries, counts, progress))
    except asyncio.CancelledError:  # SIGTERM (see _run)
        raise KeyboardInterrupt from None
    finally:  # the event loop's handler is gone with the loop: a later SIGTERM is the caller's again
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, on_sigterm)
    stats = pipeline.stats
    summary = stats.as_dict(config.pipeline.prices)
    summary["input_other_shards"] = counts.other_shards
    return AnnotationResult(config.out, summary_line(str(config.out), stats, counts), stats, summary,
                            _problem(config, stats, counts), dict(sorted(pipeline.canaries.scores.items())))


def _problem(config: AnnotationConfig, stats: RunStats, counts: InputCounts) -> str | None:
    if not stats.items and not stats.input_rejections:
        if counts.other_shards:
            return None  # this machine's share of a non-empty input is empty: nothing was asked of it
        return f"--input {config.input.path}: no input sentence"
    if not stats.records_in_folder:
        return (f"no record accepted for this input: {stats.rejected_records} items and "
                f"{stats.input_rejections} input lines rejected; see {config.out / 'rejected.jsonl'}")
    return None


def pipeline_config(config: AnnotationConfig, endpoint_name: str,
                    canaries: tuple[Canary, ...] = ()) -> PipelineConfig:
    """The pipeline's part of ``config``, with what only the run knows: the endpoint's display name
    and the loaded canaries. The manifest records the whole config."""
    settings = config.pipeline
    constrain = settings.constrain
    assert constrain != "auto"  # resolved when the config was built
    return PipelineConfig(
        mode=settings.mode,
        target_langs=tuple(settings.target_langs),
        concurrency=settings.concurrency,
        verify=settings.verify,
        endpoint_name=endpoint_name,
        policy=VerifyPolicy("reject" if settings.strict_verdicts else "accept"),
        max_tokens=settings.max_tokens,
        prices=settings.prices,
        build_config=config.manifest_config(),
        retry_failed=frozenset(settings.retry_failed),
        constrain=constrain,
        canaries=canaries,
    )


def resolve_canaries(config: AnnotationConfig) -> tuple[Canary, ...]:
    """The run's canaries, loaded before the first request (a missing gold file is a usage error).

    With ``auto`` and no benchmark folder (or a gold file missing from it) the run goes on without
    canaries and says so in one warning: a user who did not ask for them can annotate."""
    per_lang = config.canaries_per_lang
    if per_lang == 0:
        return ()
    try:
        benchmarks_dir()
        return tuple(load_canaries(per_lang, config.langs_with_canaries, config.pipeline.mode))
    except UsageError as error:
        if config.pipeline.canaries.per_lang != "auto":
            raise
        log.warning("no gold canaries in this run (--canaries auto): %s", error)
        return ()


def check_folders(config: AnnotationConfig) -> None:
    """The output folder must be writable and apart from the input: an input inside ``--out`` would
    read the shard being appended to and feed back forever (20 inputs became 17,398 records)."""
    out, source, cache = config.out, config.input.local_path, config.cache.path
    resolved = out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK) and not out.exists():
                raise UsageError(f"--out {out}: cannot create it, {parent} is not writable")
            break
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder is not writable")
    if out.is_dir():
        check_not_busy(out)  # before a model server starts or weights load, not minutes later
    if source is not None:
        inside = source.resolve()
        if inside == resolved or resolved in inside.parents:
            raise UsageError(f"--input {source} lies inside the output folder {out}: it would read what "
                             "it writes; choose another --out")
        if inside in resolved.parents:
            raise UsageError(f"--out {out} lies inside the input folder {source}: choose another --out")
    if cache is not None and cache.exists():
        if not cache.is_file():
            raise UsageError(f"--cache {cache}: not a file")
        with open(cache, "rb") as handle:
            head = handle.read(16)
        if head and head != b"SQLite format 3\x00":
            raise UsageError(f"--cache {cache}: not an SQLite response cache")


PEEK = 100
"""Readable items looked at before the first request in ``project`` mode: if none of them has known
triples, the input is extract-mode data given to project mode, a configuration mistake."""


def check_project_input(items: Iterator[WorkItem | InputProblem],
                        source: str) -> Iterator[WorkItem | InputProblem]:
    """``items`` unchanged, after refusing an input whose first :data:`PEEK` sentences have no triples."""
    head = list(itertools.islice(items, PEEK * 2))
    readable = [item for item in head if isinstance(item, WorkItem)][:PEEK]
    if readable and not any(item.triples for item in readable):
        raise UsageError(f"--input {source}: --mode project needs English sentences with their known "
                         "triples (\"triples\": [[subject, relation, object], ...]); none of the first "
                         f"{len(readable)} has any (use --mode extract, or a converted gold/records folder)")
    return itertools.chain(head, items)


async def _run(config: AnnotationConfig, canaries: tuple[Canary, ...], counts: InputCounts,
               progress: bool) -> Pipeline:
    source = config.input
    items = read_inputs(source.path, fmt=source.format, lang=source.lang, shard=source.shard_range,
                        limit=source.limit, limits=source.limits, counts=counts)
    if config.pipeline.mode == "project":
        items = check_project_input(items, source.path)
    # SIGTERM stops the run like Ctrl-C does: the main task is cancelled, tasks in flight are
    # cancelled, the folder is closed as incomplete, and the rerun continues
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    with open_backend(config) as (backend, name):
        pipeline = Pipeline(backend, config.out, pipeline_config(config, name, canaries))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="annotate", unit="item", file=sys.stderr, dynamic_ncols=True)
        try:
            await pipeline.run(items, bar)
        finally:
            if bar is not None:
                bar.close()
            await backend.aclose()
    return pipeline


def summary_line(out: str, stats: RunStats, counts: InputCounts) -> str:
    """What a person reads at the end of a run: every input line is in one of these numbers."""
    if not stats.items and not stats.input_rejections:
        if counts.other_shards:
            return (f"this shard's share is empty: all {counts.other_shards} input lines belong to "
                    "other shards")
        return f"no input: {out} is unchanged (the input had no sentence for this run)"
    parts = [f"annotated into {out}: {stats.accepted_records} records accepted, "
             f"{stats.rejected_records} rejected, {stats.input_rejections} input lines rejected"]
    if stats.skipped_done:
        parts.append(f"{stats.skipped_done} already done")
    parts.append(f"{stats.requests} requests, {stats.cache_hits} cache hits")
    if stats.canaries:
        parts.append("canary P/R/F1 " + ", ".join(
            f"{lang} {_score(s['precision'])}/{_score(s['recall'])}/{_score(s['f1'])}"
            for lang, s in stats.canaries.items()))
    failed = sum(stats.rejections_per_reason[r] for r in TRANSIENT_REASONS)
    waiting = sum(stats.waiting_retry.values())
    if failed:
        parts.append(f"{failed} rejected as {'/'.join(sorted(TRANSIENT_REASONS))}: rerun with --retry-failed "
                     "to try them again")
    if waiting:
        parts.append(f"{waiting} items wait for --retry-failed ("
                     + ", ".join(f"{r}: {n}" for r, n in sorted(stats.waiting_retry.items())) + ")")
    return "; ".join(parts)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
