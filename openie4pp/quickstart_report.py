"""The quickstart's tables: silver-data acceptance per language, the tagger's showcase, and the
final summary (steps, artefacts, scores and how much of each benchmark was seen in training).

Everything is read from the files the steps wrote, not from counters, so the tables show what is
on disk; :mod:`openie4pp.quickstart` prints them.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openie4pp.quickstart import Quickstart

LANGUAGES = ("en", "de", "es", "pt", "zh", "ar")
PROJECT_TARGETS = ("de", "es", "pt", "zh", "ar")


def acceptance_table(silver: Sequence[Path], inputs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Per language: sentences asked, records and triples accepted, rejected sentences per reason,
    read from the shards and ``rejected.jsonl`` themselves (not from counters) so the table shows
    what is on disk. Every sentence asked ends as one record or one sentence-level rejection, so
    a row's records and rejections add up to what was asked; the reasons of single candidate
    triples are in ``rejected.jsonl``."""
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
    table: dict[str, dict[str, Any]] = {
        lang: {"asked": asked[lang], "records": 0, "triples": 0, "rejected": Counter()} for lang in LANGUAGES
    }
    for folder in silver:
        for item in iter_records(folder) if folder.is_dir() else ():
            if isinstance(item, Record):
                row = table.setdefault(
                    item.lang, {"asked": 0, "records": 0, "triples": 0, "rejected": Counter()}
                )
                row["records"] += 1
                row["triples"] += len(item.extractions)
        rejected = folder / "rejected.jsonl"
        for line in rejected.read_text(encoding="utf-8").splitlines() if rejected.is_file() else ():
            rejection = Rejection.model_validate_json(line)
            if is_candidate_field(rejection.field):
                continue  # one candidate triple; the sentence's own line says how it ended
            sid = rejection.sentence_id or ""
            lang = lang_of.get(sid) or sid.rsplit(".", 1)[-1]
            if lang in table:
                table[lang]["rejected"][rejection.reason.value] += 1
    return table


def read_canaries(folder: Path) -> dict[str, dict[str, Any]]:
    """The canary scores per language of an annotation run (its ``stats.json``), {} without any."""
    stats = folder / "stats.json"
    if not stats.is_file():
        return {}
    canaries: dict[str, dict[str, Any]] = json.loads(stats.read_text(encoding="utf-8")).get("canaries") or {}
    return canaries


def format_canaries(by_mode: dict[str, dict[str, dict[str, Any]]], eval_limit: int | None,
                    evaluated: Sequence[str]) -> list[str]:
    """The summary's canary table: per mode and language, the gold sentences asked and accepted and
    the annotator's precision, recall and F1 on them, and how many of them the tagger's evaluation
    below also reads (canaries are a benchmark's last sentences, an evaluation reads its first)."""
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


def format_acceptance(table: dict[str, dict[str, Any]]) -> str:
    lines = [
        "",
        "silver data (OpenIE4++): accepted per language, rejected sentences per reason",
        f"{'lang':<5} {'asked':>5} {'records':>7} {'triples':>7}  rejected (reason: count)",
    ]
    for lang, row in table.items():
        reasons = ", ".join(f"{r}: {n}" for r, n in row["rejected"].most_common()) or "-"
        lines.append(f"{lang:<5} {row['asked']:>5} {row['records']:>7} {row['triples']:>7}  {reasons}")
    return "\n".join(lines)


def format_showcase(path: Path) -> str:
    from openie4pp.schema import Record

    lines = ["", "extractions of the tagger on sample sentences it never saw"]
    for raw in path.read_text(encoding="utf-8").splitlines():
        record = Record.model_validate_json(raw)
        lines.append(f"[{record.lang}] {record.sentence.text}")
        best = sorted(record.extractions, key=lambda e: -(e.confidence or 0.0))[:3]
        for extraction in best or []:
            subject = extraction.argument("arg0")  # by role: a missing subject shows as empty
            rest = [a.text for a in extraction.arguments if a.role != "arg0"]
            lines.append(
                f"      ({subject.text if subject else ''}; {extraction.predicate.text}; {'; '.join(rest)})"
                f"  {extraction.confidence or 0:.2f}"
            )
        if not best:
            lines.append("      (no extraction)")
    return "\n".join(lines)


def training_texts(folders: Sequence[Path]) -> set[str]:
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
    from openie4pp.train.extract import read_sentences

    sentences = read_sentences(benchmark, limit=limit)
    hits = sum(_text_key(s.text) in seen for s in sentences)
    return f"{hits}/{len(sentences)}"


def format_summary(qs: Quickstart) -> str:
    lines = ["", "quickstart summary", f"{'step':<28} {'status':<7} {'seconds':>8}  artefact"]
    for r in qs.results:
        lines.append(f"{r.name:<28} {r.status:<7} {r.seconds:>8.1f}  {r.artefact}")
    lines += [
        "",
        f"{'benchmark':<15} {'F1':>6} {'AUC':>6} {'P':>6} {'R':>6}  {'seen in training':<16} PR curve",
    ]
    for bench, s in qs.scores.items():
        auc = f"{s['auc']:.3f}" if s.get("auc") is not None else "-"
        png = qs.workdir / "eval" / f"{bench}.png"
        lines.append(
            f"{bench:<15} {s['f1']:>6.3f} {auc:>6} {s['precision']:>6.3f} {s['recall']:>6.3f}  "
            f"{s['seen']:<16} {png}"
        )
    lines += format_canaries(qs.canaries, qs.args.eval_limit, list(qs.scores))
    return "\n".join(lines)


def _text_key(text: str) -> str:
    return re.sub(r"\W", "", text.lower())

