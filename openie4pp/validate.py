"""``openie4pp validate``: schema and grounding checks over shards or any JSONL file, streamed.

Every bad line becomes a :class:`~openie4pp.schema.Rejection` naming file, 1-based line,
field path and reason code, so a problem can be found and fixed without a traceback, and
nothing is silently dropped. Memory is constant in the file size except for the set of
sentence ids kept to flag duplicates, and of the problems *kept for listing* (``max_kept_problems``):
every problem is also handed to ``on_problem`` as it is found, which is how ``--rejected FILE``
gets all of them without holding them in memory.

A shard folder (one with ``manifest.json`` or ``<lang>/shard-N.jsonl`` files) is read as the
writer laid it out: only its shards. Its other files (``rejected.jsonl``, the BenchIE synsets
sidecar ``benchie-gold.jsonl``, a user's notes) are not records and were never meant to be
checked as such. A folder that is not a shard folder is searched for ``*.jsonl`` files, and a
shard folder inside it is again read by its shards only.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from openie4pp.errors import UsageError
from openie4pp.jsonl import is_torn, iter_raw_lines, rejections_for
from openie4pp.schema import Record, Rejection, RejectionReason
from openie4pp.shards import MANIFEST, REJECTED, shard_files

# Files that are never records, even in a folder that is not a shard folder.
_NOT_RECORDS = {REJECTED}

ProblemSink = Callable[[Rejection], None]


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
    incomplete_folders: list[str] = field(default_factory=list)
    """Shard folders whose ``manifest.json`` says the run that wrote them did not complete."""
    on_problem: ProblemSink | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Clean, finished and not empty: an empty folder is a mistake (a wrong path, a run that
        wrote nothing), not a success."""
        return self.verdict == "OK"

    @property
    def verdict(self) -> str:
        if self.problems_per_reason:
            return "INVALID"
        if not self.records:
            return "NO RECORDS"
        return "INCOMPLETE" if self.incomplete_folders else "OK"

    def add_problem(self, problem: Rejection) -> None:
        self.problems_per_reason[problem.reason.value] += 1
        if self.on_problem is not None:
            self.on_problem(problem)
        if len(self.problems) < self.max_kept_problems:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verdict": self.verdict,
            "files": self.files,
            "lines": self.lines,
            "records": self.records,
            "extractions": self.extractions,
            "ungrounded_elements": self.ungrounded_elements,
            "records_per_lang": dict(sorted(self.records_per_lang.items())),
            "extractions_per_lang": dict(sorted(self.extractions_per_lang.items())),
            "problems_per_reason": dict(sorted(self.problems_per_reason.items())),
            "incomplete_folders": list(self.incomplete_folders),
        }


def is_shard_folder(folder: Path) -> bool:
    """Written by a :class:`~openie4pp.shards.ShardWriter`: it has a manifest or shards."""
    return (folder / MANIFEST).is_file() or bool(shard_files(folder))


def run_completed(folder: Path) -> bool:
    """False only when ``manifest.json`` says ``"complete": false`` (an interrupted or failed
    writer). Folders written before the key existed, and folders without a readable manifest, are
    not called incomplete: this check must not turn old, valid data into errors."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    return not (isinstance(manifest, dict) and manifest.get("complete", True) is False)


def _files_under(folder: Path, shard_folders: list[Path] | None) -> Iterator[Path]:
    if is_shard_folder(folder):
        if shard_folders is not None:
            shard_folders.append(folder)
        for shards in shard_files(folder).values():
            yield from shards
        return
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):  # .git, caches, a writer's temporary files
            continue
        if child.is_dir() and not child.is_symlink():  # a link could lead in a circle
            yield from _files_under(child, shard_folders)
        elif child.suffix == ".jsonl" and child.name not in _NOT_RECORDS and child.is_file():
            yield child


def record_files(paths: Iterable[str | Path], shard_folders: list[Path] | None = None) -> Iterator[Path]:
    """JSONL files to check: files as given; a shard folder's shards; other folders searched
    recursively (sorted) for ``*.jsonl``. Shard folders met on the way are appended to
    ``shard_folders`` when it is given."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _files_under(path, shard_folders)
        else:
            yield path


@contextlib.contextmanager
def open_rejected_file(
    target: str | Path | None, validated: Iterable[str | Path]
) -> Iterator[ProblemSink | None]:
    """A sink writing each problem as one rejection JSONL line to ``target`` (None: no sink).

    Checked before any record is read, so a wrong ``--rejected`` costs nothing: it must not be a
    folder, nor lie inside (or be) a path being validated: it would truncate a shard folder's own
    ``rejected.jsonl`` or be read back while it is written.
    """
    if target is None:
        yield None
        return
    path = Path(target)
    if path.is_dir():
        raise UsageError(f"--rejected {target} is a folder; give the path of a file to write")
    resolved = path.resolve()
    for raw in validated:
        checked = Path(raw).resolve()
        if resolved == checked or (checked.is_dir() and resolved.is_relative_to(checked)):
            raise UsageError(f"--rejected {target} lies inside {raw}, which is being validated; "
                             "write it somewhere else")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed below, after the run)
    except OSError as exc:
        raise UsageError(f"--rejected {target}: cannot write it ({exc.strerror or exc})") from None

    def write(problem: Rejection) -> None:
        handle.write(problem.model_dump_json() + "\n")

    with handle:
        yield write


def validate_paths(
    paths: Iterable[str | Path], *, max_kept_problems: int = 1000, on_problem: ProblemSink | None = None
) -> ValidationSummary:
    """Check every record under ``paths``; ``on_problem`` sees every problem, in order, as it is
    found (the summary keeps only the first ``max_kept_problems`` for listing)."""
    summary = ValidationSummary(max_kept_problems=max_kept_problems, on_problem=on_problem)
    seen: dict[str, str] = {}
    shard_folders: list[Path] = []
    for path in record_files(paths, shard_folders):
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
    summary.incomplete_folders = [str(folder) for folder in shard_folders if not run_completed(folder)]
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
    for folder in summary.incomplete_folders:
        lines += ["", f"{folder}: incomplete (manifest.json says the run that wrote it did not complete)"]
    lines.append("")
    lines.append(summary.verdict)
    return "\n".join(lines)


def summary_json(summary: ValidationSummary) -> str:
    return json.dumps(summary.as_dict(), ensure_ascii=False)
