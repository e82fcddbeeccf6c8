"""The result of ``openie4pp annotate --dry-run``: the per-stage rows and how they are shown.

Why a module of its own: the estimate is computed by :mod:`.dry_run`, which needs the pipeline's
prompts, cache and tokenizers; the result is plain data that the command prints as a table or as
JSON. Kept apart, the value types carry no import of the machinery that fills them, and the walk
that prices requests stays readable on its own. :mod:`.dry_run` re-exports both classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DryRunEstimate", "StageEstimate"]


@dataclass(frozen=True)
class StageEstimate:
    """One row of the table: requests to send (``cached``: answered by the cache, free)."""

    requests: int = 0
    cached: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_online: float = 0.0
    cost_batch: float = 0.0

    def __add__(self, other: StageEstimate) -> StageEstimate:
        return StageEstimate(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.requests, self.cached, self.input_tokens, self.output_tokens, self.cost_online,
                self.cost_batch)

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "cached": self.cached, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cost_online_usd": round(self.cost_online, 6),
                "cost_batch_usd": round(self.cost_batch, 6)}


@dataclass(frozen=True)
class DryRunEstimate:
    """What a run of the config would send, per stage (in pipeline order, canaries last)."""

    stages: tuple[tuple[str, StageEstimate], ...]
    items: int
    """Readable input sentences (finished ones included)."""
    finished: int
    """Units an earlier run finished in ``OUT``: skipped, not counted in the rows."""
    units: int
    """Units that would be annotated (project mode: one per target language)."""
    input_problems: int
    tokens: str
    """How tokens were counted (a tokenizer's name, or the estimate's rule)."""
    exact_tokens: bool
    calibrated: tuple[str, ...]
    """Purposes whose output tokens are the cache's measured mean."""
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> StageEstimate:
        total = StageEstimate()
        for _, stage in self.stages:
            total = total + stage
        return total

    def stage(self, name: str) -> StageEstimate:
        return dict(self.stages).get(name, StageEstimate())

    def table(self) -> str:
        head = ("stage", "requests", "cached", "input tokens", "output tokens", "cost online", "cost batch")
        rows = [(name, *_cells(s)) for name, s in (*self.stages, ("total", self.total))]
        widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
        lines = [f"dry run: {self.items} items, {self.finished} units finished already, {self.units} "
                 f"units to annotate, {self.input_problems} input problems; nothing was sent"]
        for row in (head, *rows):
            lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        lines += [f"tokens: {self.tokens}", *self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "items": self.items, "finished": self.finished, "units": self.units,
                "input_problems": self.input_problems,
                "stages": {name: s.as_dict() for name, s in self.stages}, "total": self.total.as_dict(),
                "tokens": self.tokens, "exact_tokens": self.exact_tokens,
                "calibrated": list(self.calibrated), "notes": list(self.notes)}


def _cells(stage: StageEstimate) -> tuple[str, ...]:
    return (f"{stage.requests:,}", f"{stage.cached:,}", f"{stage.input_tokens:,}", f"{stage.output_tokens:,}",
            f"${stage.cost_online:,.4f}", f"${stage.cost_batch:,.4f}")
