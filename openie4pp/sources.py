"""The one reader of user input: sentences or records from a file, a folder, a dataset or a benchmark.

Why one: the annotator, ``extract`` and training each had a reader of their own, with their own
format detection, and the same bad line was refused by one with a message the others did not give
(or not refused at all). Here the *reading* is shared (formats, lines, bytes, locations, what
counts as a bad line); what a row *means* (a work item for the annotator, a sentence for
``extract``, a training record) stays with each consumer, which maps the rows below onto its own
type with its own field rules.

Formats, and how ``auto`` decides (by what the input *is*, never by its content: a BOM or an odd
first line once made a JSONL file read as text):

* ``hf:NAME_OR_PATH[:split]``: a ``datasets`` dataset, streamed (``hf``);
* a folder: OpenIE4++ shards, ``<lang>/shard-*.jsonl`` (``records``; a single JSONL file of
  records can be read as ``records`` too);
* ``.jsonl``, ``.ndjson``, ``.json``: JSON Lines (``jsonl``), one object per line: a record (it has
  a ``sentence`` object) or a mapping such as ``{text, lang?, id?}``;
* ``.txt``: one sentence per line (``txt``);
* ``.parquet``: rows as for JSON Lines, read in record batches (``parquet``);
* a name of :data:`openie4pp.benchmarks.BENCHMARKS` that is not a path: that benchmark's gold
  records through its converter (``benchmark``; gold lines the converter refuses are
  ``openie4pp convert``'s to report, not input problems);
* anything else is refused, naming ``--input-format``.

Everything is a generator, so an input of any size is read in bounded memory. Text files are
split on ``\\n`` only (:func:`openie4pp.jsonl.iter_text_lines`: a leading BOM is ignored, bytes that
are not UTF-8 are a problem naming the offset, and a line over ``max_line_bytes`` is skipped
without being held whole). JSON strings with a lone surrogate (``\\ud800``) are no text and
cannot be written out again: such a line is ``malformed_text``.

A bad line never stops the read: it is yielded as a :class:`SourceProblem` with its location
(file and line, or dataset row), the field and the reason. A configuration mistake (a missing
file, an unknown format, a folder that holds no shards) raises :class:`~openie4pp.errors.UsageError`
when :func:`read_source` is called, before the first row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openie4pp.errors import InputFileError, UsageError
from openie4pp.schema import Record, Rejection, RejectionReason, clip_input

FORMATS = ("txt", "jsonl", "parquet", "records", "hf", "benchmark")
"""Every format :func:`read_source` reads (``auto`` picks one of them, see the module docstring)."""
SUFFIX_FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
                  ".parquet": "parquet"}


@dataclass(frozen=True)
class Location:
    """Where a row came from: a file and its 1-based line, a dataset and its 1-based row, or a
    benchmark and its 1-based sentence; ``line`` is None where nothing finer is known."""

    source: str
    line: int | None = None

    def __str__(self) -> str:
        return self.source if self.line is None else f"{self.source}:{self.line}"


@dataclass(frozen=True)
class TextRow:
    """One non-blank line of a ``txt`` input, line end removed."""

    text: str
    where: Location


@dataclass(frozen=True)
class MappingRow:
    """A JSON object that is not a record, or a Parquet / dataset row; its fields are the consumer's
    to check (``text``, ``lang``, ``id``...)."""

    data: dict[str, Any]
    where: Location
    raw: str | None = None
    """The line as read (JSON Lines); None for table rows, see :meth:`raw_text`."""

    def raw_text(self) -> str:
        """The row as text, for a rejection that quotes the offending input."""
        return self.raw if self.raw is not None else json.dumps(self.data, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class RecordRow:
    """A valid OpenIE4++ record (a shard line, a record line of JSON Lines, a benchmark sentence)."""

    record: Record
    where: Location


@dataclass(frozen=True)
class SourceProblem:
    """A line that yields no row, and why: ``reason`` is a rejection reason (``malformed_json``,
    ``malformed_text``, ``too_long``, ``schema_invalid``...), ``field`` the field at fault (None:
    the line as a whole)."""

    where: Location
    reason: RejectionReason
    detail: str
    field: str | None = None
    raw: str = ""
    """The offending input, clipped (``<not read>`` for a line too long to read)."""
    data: Any = None
    """The parsed JSON, when the line was JSON: a consumer can still recover the line's id."""

    def message(self) -> str:
        """``field 'text': why`` or ``why``: the part after ``file:line: `` in a warning."""
        return f"field {self.field!r}: {self.detail}" if self.field else self.detail


Row = TextRow | MappingRow | RecordRow | SourceProblem


def detect_format(source: str | Path, *, option: str = "--input") -> str:
    """The format ``auto`` reads ``source`` in (see the module docstring); a :class:`UsageError`
    naming ``option`` and ``--input-format`` when it cannot tell. Touches only file metadata."""
    from openie4pp.benchmarks import BENCHMARKS

    text = str(source)
    if text.startswith("hf:"):
        return "hf"
    path = Path(text)
    if path.is_dir():
        return "records"
    if not path.exists() and text in BENCHMARKS:
        return "benchmark"
    by_suffix = SUFFIX_FORMATS.get(path.suffix.lower())
    if by_suffix is not None:
        return by_suffix
    if not path.exists():
        raise UsageError(f"{option} {source}: no such file or folder and not a benchmark name "
                         f"({', '.join(BENCHMARKS)})")
    if not path.is_file():  # a pipe (/dev/stdin, <(...)): JSON Lines, as before there were suffixes
        return "jsonl"
    raise UsageError(
        f"{option} {source}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
        "pass --input-format txt (one sentence per line) or --input-format jsonl"
    )


def resolve_format(source: str | Path, fmt: str = "auto", *, option: str = "--input") -> str:
    """``fmt`` (``auto``: :func:`detect_format`) after checking that ``source`` can be read in it:
    the file exists, a folder holds shards, a benchmark name is known and its gold is there.
    Touches only file metadata, so a caller runs it before any expensive setup."""
    if fmt != "auto" and fmt not in FORMATS:
        raise UsageError(f"--input-format {fmt!r}: expected one of auto, {', '.join(FORMATS)}")
    fmt = detect_format(source, option=option) if fmt == "auto" else fmt
    text, path = str(source), Path(source)
    if fmt == "hf":
        if not text.removeprefix("hf:").partition(":")[0]:
            raise UsageError(f"{option} {text!r}: expected hf:NAME_OR_PATH[:split]")
        return fmt
    if fmt == "benchmark":
        from openie4pp.benchmarks import BENCHMARKS

        if text not in BENCHMARKS:
            raise UsageError(f"{option} {text}: not a benchmark name (known: {', '.join(BENCHMARKS)})")
        gold = BENCHMARKS[text].gold_path()
        if not gold.is_file():
            raise UsageError(
                f"{option} {text}: the benchmark file {gold} is missing (see OPENIE4PP_BENCHMARKS)")
        return fmt
    if not path.exists():
        raise UsageError(f"{option} {text}: no such file or folder")
    if fmt == "records":
        from openie4pp.shards import shard_files

        if path.is_dir() and not shard_files(path):
            raise UsageError(
                f"{option} {text}: a folder without <lang>/shard-*.jsonl files (not OpenIE4++ shards)")
    elif path.is_dir():
        raise UsageError(
            f"{option} {text}: is a folder, not a {fmt} file (a shard folder is read as records)")
    return fmt


def read_source(
    source: str | Path, fmt: str = "auto", *, max_line_bytes: int | None = None, option: str = "--input"
) -> Iterator[Row]:
    """Stream the rows of ``source`` in input order (see the module docstring).

    The format and the path are checked on the call (:func:`resolve_format`), not when the first
    row is pulled. ``max_line_bytes`` bounds a line of a text file (``txt``, ``jsonl``): a longer
    one is a ``too_long`` problem, skipped unread. ``option`` is the option named in errors."""
    fmt = resolve_format(source, fmt, option=option)
    text = str(source)
    if fmt == "txt":
        return _text_rows(text, max_line_bytes, option)
    if fmt == "jsonl":
        return _json_rows(text, max_line_bytes, option)
    if fmt == "records":
        return _record_rows(Path(text))
    if fmt == "parquet":
        return _table_rows(_parquet_rows(text), text)
    if fmt == "hf":
        return _table_rows(_hf_rows(text, option), text)
    return _benchmark_rows(text)


# -- text files -----------------------------------------------------------------------------------


def _lines(
    path: str, max_line_bytes: int | None, option: str
) -> Iterator[tuple[Location, str | SourceProblem]]:
    from openie4pp.jsonl import iter_text_lines

    try:
        for line in iter_text_lines(path, max_line_bytes):
            where = Location(path, line.number)
            if line.text is not None:
                yield where, line.text
            elif line.too_long:
                problem = line.problem or ""
                yield where, SourceProblem(where, RejectionReason.too_long, problem, raw="<not read>")
            else:
                raw = clip_input(line.raw.decode("utf-8", "replace"))
                yield where, SourceProblem(where, RejectionReason.malformed_text, line.problem or "", raw=raw)
    except OSError as error:
        raise InputFileError(f"{option} {path}: cannot read: {error.strerror or error}") from None


def _text_rows(path: str, max_line_bytes: int | None, option: str) -> Iterator[Row]:
    for where, text in _lines(path, max_line_bytes, option):
        yield text if isinstance(text, SourceProblem) else TextRow(text, where)


def _json_rows(path: str, max_line_bytes: int | None, option: str) -> Iterator[Row]:
    for where, text in _lines(path, max_line_bytes, option):
        yield text if isinstance(text, SourceProblem) else json_row(text.strip(), where)


def json_row(raw: str, where: Location) -> Row:
    """One JSON Lines line as a row: a record when it has a ``sentence`` object, else a mapping."""
    from pydantic import ValidationError

    from openie4pp.jsonl import problems_from_error

    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as error:
        return SourceProblem(where, RejectionReason.malformed_json, f"malformed JSON: {error}",
                             raw=clip_input(raw))
    if not isinstance(data, dict):
        return SourceProblem(where, RejectionReason.schema_invalid,
                             f"a JSON {type(data).__name__}, not an object (JSON Lines: one object per line)",
                             raw=clip_input(raw), data=data)
    if "\\u" in raw or "\\U" in raw:  # a lone surrogate can only come from an escape
        surrogate = _lone_surrogate(data)
        if surrogate is not None:
            field, detail = surrogate
            return SourceProblem(where, RejectionReason.malformed_text, detail, field, clip_input(raw), data)
    if not isinstance(data.get("sentence"), dict):
        return MappingRow(data, where, raw)
    try:
        return RecordRow(Record.model_validate(data), where)
    except ValidationError as error:
        field, reason, detail = problems_from_error(error)[0]
        return SourceProblem(where, reason, detail, field, clip_input(raw), data)


def _lone_surrogate(value: Any, path: str = "") -> tuple[str | None, str] | None:
    """``(field path, why)`` of the first string in ``value`` that holds a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return path or None, (f"a lone surrogate (\\u{ord(value[error.start]):04x}) at character "
                                  f"{error.start} is not text")
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _lone_surrogate(item, f"{path}[{key}]" if isinstance(key, int) else
                                f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


# -- records, tables, datasets, benchmarks --------------------------------------------------------


def _record_rows(path: Path) -> Iterator[Row]:
    from openie4pp.jsonl import iter_jsonl_lines, parse_record
    from openie4pp.shards import shard_files

    files = [f for shards in shard_files(path).values() for f in shards] if path.is_dir() else [path]
    for file in files:
        for number, raw in iter_jsonl_lines(file):
            item = parse_record(raw, file, number)
            where = Location(str(file), number)
            yield RecordRow(item, where) if isinstance(item, Record) else _rejection_problem(item, where)


def _rejection_problem(rejection: Rejection, where: Location) -> SourceProblem:
    if rejection.file is not None:
        where = Location(rejection.file, rejection.line)
    return SourceProblem(where, rejection.reason, rejection.detail, rejection.field, rejection.input)


def _table_rows(rows: Iterator[dict[str, Any]], source: str) -> Iterator[Row]:
    for number, row in enumerate(rows, 1):
        yield MappingRow(row, Location(source, number))


def _parquet_rows(path: str) -> Iterator[dict[str, Any]]:
    import pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (OSError, pyarrow.ArrowException) as error:  # not Parquet, truncated: the user's file
        raise InputFileError(f"{path}: not a readable Parquet file "
                             f"({' '.join(str(error).split())[:200]})") from None
    for batch in table.iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _hf_rows(spec: str, option: str) -> Iterator[dict[str, Any]]:
    import datasets

    name, _, split = spec.removeprefix("hf:").partition(":")
    try:
        rows = iter(datasets.load_dataset(name, split=split or "train", streaming=True))
        first = next(rows, None)
    except Exception as error:  # offline, no such dataset or split: a configuration fault
        message = " ".join(str(error).split())[:300]
        raise InputFileError(f"{option} {spec}: cannot open the dataset ({type(error).__name__}: {message}); "
                             "offline? (HF_HUB_OFFLINE) a local path works too: hf:/path/to/dataset"
                             ) from None
    if first is not None:
        yield first
        yield from rows


def _benchmark_rows(name: str) -> Iterator[Row]:
    """The benchmark's gold records in file order, numbered from 1, read as ``convert`` and training
    read them (the dataset name, hence the sentence ids, from the gold file's name). The converters'
    notes on gold phrases that disagree with their indices are for ``convert``, not for a reader of
    sentences: they are silenced while a record is converted, never while this generator waits."""
    from openie4pp.benchmarks import BENCHMARKS
    from openie4pp.formats.registry import convert

    benchmark = BENCHMARKS[name]
    converted = convert(benchmark.format, benchmark.gold_path(), benchmark.lang)
    notes = logging.getLogger("openie4pp.formats")
    number = 0
    while True:
        level = notes.level
        notes.setLevel(logging.ERROR)
        try:
            item = next(converted, None)
        finally:
            notes.setLevel(level)
        if item is None:
            return
        if isinstance(item, Record):
            number += 1
            yield RecordRow(item, Location(name, number))
