"""What a run tells whoever started it: :class:`AnnotationResult`, its one summary line, and whether
the run is a success. Shared by every engine (online, batch rounds, Ray)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .canaries import CanaryScore
from .config import AnnotationConfig
from .inputs import InputCounts
from .stats import TRANSIENT_REASONS, Prices, RunStats


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
    waiting: bool = False
    """``--execution batch-files``: the round's batch files are written and wait for their outputs
    (``line`` says which and how); the command line's exit status 3, and the rerun goes on."""


def annotation_result(config: AnnotationConfig, stats: RunStats, counts: InputCounts,
                      canaries: dict[str, CanaryScore], prices: Prices, **extra: Any) -> AnnotationResult:
    """The result of a run that went through its input (``prices``: what its requests cost);
    ``extra``: more numbers for the summary (a batch run's rounds)."""
    summary = stats.as_dict(prices)
    summary["input_other_shards"] = counts.other_shards
    summary.update(extra)
    return AnnotationResult(config.out, summary_line(str(config.out), stats, counts), stats, summary,
                            problem(config, stats, counts), dict(sorted(canaries.items())))


def problem(config: AnnotationConfig, stats: RunStats, counts: InputCounts) -> str | None:
    if not stats.items and not stats.input_rejections:
        if counts.other_shards:
            return None  # this machine's share of a non-empty input is empty: nothing was asked of it
        return f"--input {config.input.path}: no input sentence"
    if not stats.records_in_folder:
        return (f"no record accepted for this input: {stats.rejected_records} items and "
                f"{stats.input_rejections} input lines rejected; see {config.out / 'rejected.jsonl'}")
    return None


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
