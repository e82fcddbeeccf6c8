"""Run statistics: what ``stats.json`` holds and what the progress bar shows.

Latencies are kept in a bounded reservoir (uniform sample) so a run of millions of requests
reports p50/p95 in constant memory.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openie4pp.atomic import write_text_atomic
from openie4pp.schema import RejectionReason

from .llm import ChatResponse

_RESERVOIR = 50_000

TRANSIENT_REASONS = frozenset(
    {RejectionReason.request_failed.value, RejectionReason.llm_invalid_output.value})
"""What a bare ``--retry-failed`` retries: outcomes that another try against a working endpoint (or a
fixed server) may change. Any other reason can be named explicitly."""


@dataclass
class Prices:
    """US$ per million prompt / completion tokens (``--price-in``, ``--price-out``)."""

    prompt_per_million: float = 0.0
    completion_per_million: float = 0.0


@dataclass
class RunStats:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    """Requests that reached a server (cache misses)."""
    cache_hits: int = 0
    retries: int = 0
    reasks: int = 0
    failed_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    items: int = 0
    skipped_done: int = 0
    skipped_records: int = 0
    """Items skipped because an earlier run stored their record."""
    waiting_retry: Counter[str] = field(default_factory=Counter)
    """Items skipped because an earlier run rejected them for a reason ``--retry-failed`` retries."""
    retried_failed: int = 0
    unfinished: int = 0
    """Tasks whose endpoint failed when the run stopped early: not written, annotated by the rerun."""
    complete: bool = False
    """The run went through its whole input (it was not stopped by an error or an interrupt)."""
    accepted_records: int = 0
    accepted_extractions: int = 0
    rejected_records: int = 0
    input_rejections: int = 0
    """Input lines that were not annotated (malformed, no language, a repeated id...)."""
    candidates: int = 0
    rejected_candidates: int = 0
    fixed_candidates: int = 0
    requests_by_purpose: Counter[str] = field(default_factory=Counter)
    structured_modes: Counter[str] = field(default_factory=Counter)
    constraint_kinds: Counter[str] = field(default_factory=Counter)
    """Responses per span-constraint kind ("none": sent without one); in stats.json as
    ``span_constraint`` only when the run used ``--constrain spans`` (``constrained``)."""
    constrained: bool = False
    accepted_per_lang: Counter[str] = field(default_factory=Counter)
    rejected_per_lang: Counter[str] = field(default_factory=Counter)
    rejections_per_reason: Counter[str] = field(default_factory=Counter)
    canaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Canary scores per language (:meth:`CanaryScore.as_dict`), once the canaries are done."""
    canary_f1: str = ""
    """``en .52 de .31``: the progress line's canary F1 per language."""
    _latencies: list[float] = field(default_factory=list)
    _seen_latencies: int = 0
    _rng: random.Random = field(default_factory=lambda: random.Random(0))

    def record_response(self, response: ChatResponse, purpose: str) -> None:
        if response.cached:
            self.cache_hits += 1
            return
        self.requests += 1
        self.retries += response.retries
        self.requests_by_purpose[purpose] += 1
        self.structured_modes[response.structured] += 1
        self.constraint_kinds[response.constraint] += 1
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens
        self._seen_latencies += 1
        if len(self._latencies) < _RESERVOIR:
            self._latencies.append(response.latency_s)
        else:
            slot = self._rng.randrange(self._seen_latencies)
            if slot < _RESERVOIR:
                self._latencies[slot] = response.latency_s

    def absorb(self, other: RunStats) -> None:
        """Add what ``other`` spent (requests, tokens, retries, candidates, latencies) to these
        numbers: a Ray run's batches each keep their own, the driver reports their sum. Items, records
        and rejections are not added: whoever writes the folder counts those once."""
        for name in ("requests", "cache_hits", "retries", "reasks", "failed_requests", "prompt_tokens",
                     "completion_tokens", "candidates", "fixed_candidates"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("requests_by_purpose", "structured_modes", "constraint_kinds"):
            getattr(self, name).update(getattr(other, name))
        # the other's reservoir is a uniform sample of its latencies; up to the bound, keep it whole
        self._latencies.extend(other._latencies[:max(0, _RESERVOIR - len(self._latencies))])
        self._seen_latencies += other._seen_latencies

    def rejection(self, lang: str, reason: str, *, record_level: bool) -> None:
        self.rejections_per_reason[reason] += 1
        if record_level:
            self.rejected_records += 1
            self.rejected_per_lang[lang] += 1
        else:
            self.rejected_candidates += 1

    def skipped(self, final_reason: str | None) -> None:
        """An item finished by an earlier run: by a record (``final_reason`` None) or a rejection."""
        self.skipped_done += 1
        if final_reason is None:
            self.skipped_records += 1
        elif final_reason in TRANSIENT_REASONS:
            self.waiting_retry[final_reason] += 1

    @property
    def records_in_folder(self) -> int:
        """Records for this run's input: accepted now or by an earlier run."""
        return self.accepted_records + self.skipped_records

    def input_rejection(self, reason: str) -> None:
        self.input_rejections += 1
        self.rejections_per_reason[reason] += 1

    def latency(self, q: float) -> float | None:
        if not self._latencies:
            return None
        ordered = sorted(self._latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def cost(self, prices: Prices) -> float:
        return (
            self.prompt_tokens * prices.prompt_per_million
            + self.completion_tokens * prices.completion_per_million
        ) / 1e6

    def postfix(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "req/s": f"{self.requests / elapsed:.1f}",
            "ok": self.accepted_records,
            "rej": self.rejected_records,
            "cache": self.cache_hits,
            "tok": self.prompt_tokens + self.completion_tokens,
            **({"canary F1": self.canary_f1} if self.canary_f1 else {}),
        }

    def as_dict(self, prices: Prices | None = None) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        languages = sorted(set(self.accepted_per_lang) | set(self.rejected_per_lang))
        data: dict[str, Any] = {
            "elapsed_s": round(elapsed, 3),
            "requests": self.requests,
            "requests_per_s": round(self.requests / elapsed, 3) if elapsed > 0 else None,
            "requests_by_purpose": dict(self.requests_by_purpose),
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "reasks": self.reasks,
            "failed_requests": self.failed_requests,
            "structured_output": dict(self.structured_modes),
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "latency_s": {"p50": self.latency(0.5), "p95": self.latency(0.95)},
            "items": self.items,
            "skipped_already_done": self.skipped_done,
            "waiting_for_retry_failed": dict(self.waiting_retry),
            "retried_failed": self.retried_failed,
            "unfinished": self.unfinished,
            "complete": self.complete,
            "records": {"accepted": self.accepted_records, "rejected": self.rejected_records},
            "input_rejections": self.input_rejections,
            "extractions": self.accepted_extractions,
            "candidates": {
                "proposed": self.candidates,
                "rejected": self.rejected_candidates,
                "fixed_by_judge": self.fixed_candidates,
            },
            "acceptance_per_lang": {
                lang: {
                    "accepted": self.accepted_per_lang[lang],
                    "rejected": self.rejected_per_lang[lang],
                    "rate": round(
                        self.accepted_per_lang[lang]
                        / max(1, self.accepted_per_lang[lang] + self.rejected_per_lang[lang]),
                        4,
                    ),
                }
                for lang in languages
            },
            "rejections_per_reason": dict(self.rejections_per_reason.most_common()),
        }
        if self.canaries:
            data["canaries"] = self.canaries
        if self.constrained:
            data["span_constraint"] = dict(self.constraint_kinds)
        if prices is not None and (prices.prompt_per_million or prices.completion_per_million):
            data["cost_usd"] = round(self.cost(prices), 6)
        return data

    def write(self, path: Path, prices: Prices | None = None) -> None:
        write_text_atomic(path, json.dumps(self.as_dict(prices), indent=2, ensure_ascii=False) + "\n")
