"""``openie4pp validate``: schema and grounding checks over shards or any JSONL file, streamed.

Every bad line becomes a :class:`~openie4pp.schema.Rejection` naming file, 1-based line,
field path and reason code, so a problem can be found and fixed without a traceback, and
nothing is silently dropped. Memory is constant in the file size except for the set of
sentence ids kept to flag duplicates.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from openie4pp.jsonl import is_torn, iter_raw_lines, rejections_for
from openie4pp.schema import Record, Rejection, RejectionReason

# Files in a shard folder that are not records.
_NOT_RECORDS = {"rejected.jsonl"}


@dataclass
class ValidationSummary:
    files: int = 0
    lines: int = 0
    records: int = 0
    extractions: int = 0
    ungrounded_elements: int = 0
    records_per_lang: Counter[str] = field(default_factory=Counter)
    extractions_per_lang: Counter[str] = field(default_factory=Counter)
    problems_per_reason: Counter[str] = field(default_factory=Counter)
    problems: list[Rejection] = field(default_factory=list)
    max_kept_problems: int = 1000

    @property
    def ok(self) -> bool:
        return not self.problems_per_reason

    def add_problem(self, problem: Rejection) -> None:
        self.problems_per_reason[problem.reason.value] += 1
        if len(self.problems) < self.max_kept_problems:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": self.files,
            "lines": self.lines,
            "records": self.records,
            "extractions": self.extractions,
            "ungrounded_elements": self.ungrounded_elements,
            "records_per_lang": dict(sorted(self.records_per_lang.items())),
            "extractions_per_lang": dict(sorted(self.extractions_per_lang.items())),
            "problems_per_reason": dict(sorted(self.problems_per_reason.items())),
        }


def record_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """JSONL files to check: files as given; folders searched recursively, in sorted order."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*.jsonl")) if p.name not in _NOT_RECORDS)
        else:
            yield path


def validate_paths(paths: Iterable[str | Path], *, max_kept_problems: int = 1000) -> ValidationSummary:
    summary = ValidationSummary(max_kept_problems=max_kept_problems)
    seen: dict[str, str] = {}
    for path in record_files(paths):
        summary.files += 1
        name = str(path)
        if not path.is_file():
            summary.add_problem(
                Rejection(
                    stage="validate",
                    reason=RejectionReason.malformed_json,
                    detail="no such file",
                    input="",
                    file=name,
                )
            )
            continue
        for number, raw, complete in iter_raw_lines(path):
            summary.lines += 1
            try:
                result = Record.model_validate_json(raw)
            except ValidationError as exc:
                for problem in rejections_for(exc, raw, name, number):
                    if problem.reason is RejectionReason.malformed_json and is_torn(raw, complete):
                        problem.detail = f"torn last line, no newline at end of file ({problem.detail})"
                    summary.add_problem(problem)
                continue
            where = f"{name}:{number}"
            if result.id in seen:
                summary.add_problem(
                    Rejection(
                        stage="validate",
                        reason=RejectionReason.duplicate,
                        input=raw.decode()[:2000],
                        file=name,
                        line=number,
                        field="sentence.id",
                        sentence_id=result.id,
                        detail=f"sentence id {result.id!r} was already seen at {seen[result.id]}",
                    )
                )
                continue
            seen[result.id] = where
            summary.records += 1
            summary.extractions += len(result.extractions)
            summary.records_per_lang[result.lang] += 1
            summary.extractions_per_lang[result.lang] += len(result.extractions)
            summary.ungrounded_elements += sum(
                (e.predicate.span is None) + sum(a.span is None for a in e.arguments)
                for e in result.extractions
            )
    return summary


def format_summary(summary: ValidationSummary) -> str:
    lines = [
        f"files {summary.files}  lines {summary.lines}  records {summary.records}  "
        f"extractions {summary.extractions}  ungrounded gold elements {summary.ungrounded_elements}",
        "",
        f"{'lang':<10}{'records':>10}{'extractions':>14}",
    ]
    for lang, count in sorted(summary.records_per_lang.items()):
        lines.append(f"{lang:<10}{count:>10}{summary.extractions_per_lang[lang]:>14}")
    if summary.problems_per_reason:
        lines += ["", f"{'problem':<24}{'count':>8}"]
        lines += [f"{reason:<24}{n:>8}" for reason, n in summary.problems_per_reason.most_common()]
        lines += ["", "problems (file:line:field: reason: detail):"]
        lines += [f"  {p.location()}: {p.reason.value}: {p.detail}" for p in summary.problems]
        hidden = sum(summary.problems_per_reason.values()) - len(summary.problems)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more")
    lines.append("")
    lines.append("OK" if summary.ok else "INVALID")
    return "\n".join(lines)


def summary_json(summary: ValidationSummary) -> str:
    return json.dumps(summary.as_dict(), ensure_ascii=False)
