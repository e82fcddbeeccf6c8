"""Output units: what the pipeline annotates, one record or one rejection each.

An input sentence is one unit in ``extract`` mode and one per target language in ``project`` mode
(``ID.de``, ``ID.zh``...); a gold canary is a unit that is scored and never written. This module
turns input items and canaries into units and says how a unit ends without a record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from openie4pp.schema import RejectionReason, SpanConstraintKind, TokenUsage, clip_input

from .canaries import Canary
from .inputs import InputProblem, WorkItem


@dataclass(frozen=True)
class OutputUnit:
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
    """How a unit ends without a record. ``deferred``: the endpoint failed (not the item); the
    rejection is written only if the run ends normally, so a run stopped by the circuit breaker or
    an interrupt leaves such items unfinished for the rerun instead of marking them failed."""

    def __init__(self, stage: str, reason: RejectionReason, detail: str, field: str | None = None,
                 *, deferred: bool = False) -> None:
        super().__init__(detail)
        self.stage, self.reason, self.detail, self.field = stage, reason, detail, field
        self.deferred = deferred


@dataclass
class UnitTrace:
    """What one unit spent: token usage and the prompts it used (for provenance)."""

    usage: TokenUsage = field(default_factory=TokenUsage)
    prompt_hashes: dict[str, str] = field(default_factory=dict)
    constraint: SpanConstraintKind | None = None
    """How the stage-1 answer's span constraint was sent (None: the run asked for none)."""


def canary_units(canaries: Iterable[Canary], mode: str) -> Iterator[OutputUnit]:
    """The gold canaries as units: in extract mode the gold sentence itself; in project mode its
    English original with the English gold triples, projected onto the benchmark's own
    translation (the translate step is skipped: the gold matches that text)."""
    for canary in canaries:
        if mode == "extract":
            item = WorkItem(canary.id, canary.lang, canary.text, pretokenized=canary.pretokenized,
                            source=canary.benchmark)
            yield OutputUnit(canary.id, item, canary=canary)
        else:
            item = WorkItem(canary.id, "en", canary.english or "", canary.english_triples,
                            source=canary.benchmark)
            yield OutputUnit(canary.id, item, canary.lang, canary=canary)


def input_units(items: Iterable[WorkItem | InputProblem], mode: str,
                target_langs: Iterable[str]) -> Iterator[OutputUnit | InputProblem]:
    """The units of ``items``; a repeated sentence id becomes an input problem (``duplicate``):
    annotating it twice would cost twice and store it once, and leave its line unaccounted for.
    In ``project`` mode a sentence without known triples has nothing to project (``schema_invalid``
    on ``triples``)."""
    targets = tuple(target_langs)
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
        elif mode == "extract":
            seen.add(item.id)
            yield OutputUnit(item.id, item)
        elif not item.triples:
            yield InputProblem(
                item.source, item.line,
                "triples: project mode needs the sentence's known triples "
                "([[subject, relation, object], ...])",
                clip_input(item.text), field="triples", sentence_id=item.id)
        else:
            seen.add(item.id)
            for target in targets:
                yield OutputUnit(f"{item.id}.{target}", item, target)
