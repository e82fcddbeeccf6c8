"""What the quickstart found, as types and as tables: its steps, the silver data's acceptance per
language, the tagger's showcase, the benchmark scores (with how much of each benchmark was seen in
training) and the annotator's canary scores.

The acceptance table and the showcase are read from the files the steps wrote (shards,
``rejected.jsonl``, the extracted records), not from counters, so they show what is on disk.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from openie4pp.app.quickstart_inputs import LANGUAGES, PROJECT_TARGETS


@dataclass
class StepResult:
    """One step of the chain: how it ended, where its artefact is, and its result as JSON (the same
    object whether it ran now or was reused from the record)."""

    name: str
    status: Literal["ran", "reused", "failed"]
    seconds: float
    artefact: str
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkScore:
    """The tagger on one benchmark, and how many of the sentences scored it saw in training."""

    benchmark: str
    precision: float
    recall: float
    f1: float
    auc: float | None
    seen: str
    """``hits/sentences``: sentences scored whose text was also a training sentence."""
    plot: str


@dataclass
class AcceptanceRow:
    """One language of the silver data: sentences asked, records and triples accepted, sentences
    rejected per reason. ``records + sum(rejected)`` is what was asked."""

    asked: int = 0
    records: int = 0
    triples: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


@dataclass
class QuickstartResult:
    """Everything the summary shows; ``failure`` names the step that stopped the chain, if one did."""

    workdir: Path
    eval_limit: int | None = None
    steps: list[StepResult] = field(default_factory=list)
    acceptance: dict[str, AcceptanceRow] = field(default_factory=dict)
    canaries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Per annotation mode, the canary scores per language."""
    scores: dict[str, BenchmarkScore] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    """The HTML reports written (``openie4pp report``): name -> path."""
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def step(self, name: str) -> StepResult:
        """The step called ``name`` (a ``KeyError`` when the chain did not get there)."""
        found = next((s for s in self.steps if s.name == name), None)
        if found is None:
            raise KeyError(f"no step {name!r} (steps: {', '.join(s.name for s in self.steps)})")
        return found


# -- read from disk ------------------------------------------------------------------------------


def acceptance_table(silver: Sequence[Path], inputs: dict[str, Path]) -> dict[str, AcceptanceRow]:
    """Per language, read from the shards and ``rejected.jsonl`` themselves. Every sentence asked
    ends as one record or one sentence-level rejection, so a row's records and rejections add up to
    what was asked; the reasons of single candidate triples are in ``rejected.jsonl``."""
    from openie4pp.schema import Record, Rejection, is_candidate_field
    from openie4pp.shards import iter_records

    lang_of = {
        json.loads(line)["id"]: json.loads(line)["lang"]
        for line in inputs["extract"].read_text(encoding="utf-8").splitlines()
    }
    project = [json.loads(line)["id"] for line in inputs["project"].read_text(encoding="utf-8").splitlines()]
    asked = Counter(lang_of.values())
    for target in PROJECT_TARGETS:
        asked[target] += len(project)
    table = {lang: AcceptanceRow(asked=asked[lang]) for lang in LANGUAGES}
    for folder in silver:
        for item in iter_records(folder) if folder.is_dir() else ():
            if isinstance(item, Record):
                row = table.setdefault(item.lang, AcceptanceRow())
                row.records += 1
                row.triples += len(item.extractions)
        rejected = folder / "rejected.jsonl"
        for line in rejected.read_text(encoding="utf-8").splitlines() if rejected.is_file() else ():
            rejection = Rejection.model_validate_json(line)
            if is_candidate_field(rejection.field):
                continue  # one candidate triple; the sentence's own line says how it ended
            sid = rejection.sentence_id or ""
            lang = lang_of.get(sid) or sid.rsplit(".", 1)[-1]
            if lang in table:
                table[lang].rejected[rejection.reason.value] += 1
    return table


def training_texts(folders: Sequence[Path]) -> set[str]:
    """The (normalised) text of every training sentence, to count benchmark sentences seen."""
    from openie4pp.schema import Record
    from openie4pp.shards import iter_records

    return {
        _text_key(item.sentence.text)
        for folder in folders
        if folder.is_dir()
        for item in iter_records(folder)
        if isinstance(item, Record)
    }


def seen_in_training(benchmark: str, seen: set[str], limit: int | None) -> str:
    """``hits/sentences`` over the first ``limit`` sentences of ``benchmark`` (those scored)."""
    from openie4pp.train.extract_io import read_sentences

    sentences = read_sentences(benchmark, limit=limit)
    hits = sum(_text_key(s.text) in seen for s in sentences)
    return f"{hits}/{len(sentences)}"


def _text_key(text: str) -> str:
    return re.sub(r"\W", "", text.lower())


# -- tables --------------------------------------------------------------------------------------


def format_acceptance(table: dict[str, AcceptanceRow]) -> str:
    lines = [
        "",
        "silver data (OpenIE4++): accepted per language, rejected sentences per reason",
        f"{'lang':<5} {'asked':>5} {'records':>7} {'triples':>7}  rejected (reason: count)",
    ]
    for lang, row in table.items():
        reasons = ", ".join(f"{r}: {n}" for r, n in row.rejected.most_common()) or "-"
        lines.append(f"{lang:<5} {row.asked:>5} {row.records:>7} {row.triples:>7}  {reasons}")
    return "\n".join(lines)


def format_showcase(path: Path) -> str:
    """The tagger's best three extractions for each showcase sentence (never annotated)."""
    from openie4pp.schema import Record

    lines = ["", "extractions of the tagger on sample sentences it never saw"]
    for raw in path.read_text(encoding="utf-8").splitlines():
        record = Record.model_validate_json(raw)
        lines.append(f"[{record.lang}] {record.sentence.text}")
        best = sorted(record.extractions, key=lambda e: -(e.confidence or 0.0))[:3]
        for extraction in best:
            subject = extraction.argument("arg0")  # by role: a missing subject shows as empty
            rest = [a.text for a in extraction.arguments if a.role != "arg0"]
            lines.append(
                f"      ({subject.text if subject else ''}; {extraction.predicate.text}; {'; '.join(rest)})"
                f"  {extraction.confidence or 0:.2f}"
            )
        if not best:
            lines.append("      (no extraction)")
    return "\n".join(lines)


def format_canaries(by_mode: dict[str, dict[str, dict[str, Any]]], eval_limit: int | None,
                    evaluated: Sequence[str]) -> list[str]:
    """Per mode and language, the gold sentences asked and accepted and the annotator's precision,
    recall and F1 on them, and how many of them the tagger's evaluation also reads (canaries are a
    benchmark's last sentences, an evaluation reads its first)."""
    from openie4pp.annotate.canaries import overlap

    if not any(by_mode.values()):
        return []

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["", "silver-data quality: gold canaries, never written to the shards",
             f"{'mode':<8} {'lang':<5} {'benchmark':<15} {'asked':>5} {'ok':>3} {'P':>6} {'R':>6} {'F1':>6}"
             "  also in tagger eval"]
    for mode, scores in by_mode.items():
        for lang, s in scores.items():
            evaluated_too = s["benchmark"] in evaluated
            shared = overlap(s["benchmark"], eval_limit, int(s["sentences"])) if evaluated_too else 0
            lines.append(f"{mode:<8} {lang:<5} {s['benchmark']:<15} {s['sentences']:>5} {s['accepted']:>3} "
                         f"{cell(s['precision']):>6} {cell(s['recall']):>6} {cell(s['f1']):>6}  {shared}")
    return lines


def format_summary(result: QuickstartResult) -> str:
    """The last table: every step with its status and artefact, every score, the canaries."""
    lines = ["", "quickstart summary", f"{'step':<28} {'status':<7} {'seconds':>8}  artefact"]
    for step in result.steps:
        lines.append(f"{step.name:<28} {step.status:<7} {step.seconds:>8.1f}  {step.artefact}")
    lines += ["", f"{'benchmark':<15} {'F1':>6} {'AUC':>6} {'P':>6} {'R':>6}  "
              f"{'seen in training':<16} PR curve"]
    for bench, s in result.scores.items():
        auc = f"{s.auc:.3f}" if s.auc is not None else "-"
        lines.append(f"{bench:<15} {s.f1:>6.3f} {auc:>6} {s.precision:>6.3f} {s.recall:>6.3f}  "
                     f"{s.seen:<16} {s.plot}")
    lines += format_canaries(result.canaries, result.eval_limit, list(result.scores))
    if result.reports:
        lines += ["", "reports (open in a browser)"]
        lines += [f"{name:<28} {path}" for name, path in result.reports.items()]
    return "\n".join(lines)
