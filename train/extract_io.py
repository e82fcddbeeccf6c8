"""What ``openie4pp extract`` reads and writes: sentences in, records or CaRB tab lines out.

Input format
------------
The format is **decided, never guessed from the content**: a UTF-8 BOM or an odd first line once
made a JSONL file read as plain text, and the "sentences" were raw JSON strings. ``auto`` (the
default of ``--input-format``) decides by what the input *is*:

* a folder: OpenIE4++ shards (``<lang>/shard-*.jsonl``);
* ``.jsonl``, ``.ndjson``, ``.json``: JSON Lines, one ``{text, lang?, id?}`` object or one record
  per line;
* ``.txt``: one sentence per line;
* a name in :data:`~openie4pp.train.data.BENCHMARK_SOURCES` that is not a path: that benchmark's
  sentences, exactly as its scorer tokenises them;
* anything else is refused with the option to pass (a ``.tsv`` or extension-less file could be either).

Lines
-----
Files are read as a stream of bytes split on ``\\n`` only (``str.splitlines`` also splits on U+2028,
which valid JSON may hold raw), with a BOM on the first line tolerated and ``\\r\\n`` accepted. A
bad line (not UTF-8, malformed JSON, no ``text``, a bad ``lang`` or ``id``, a sentence longer than
``max_chars``) is *reported* through ``on_problem`` as ``file:line: field ...: why``, counted in
:class:`ReadStats` and skipped: one bad line never aborts a long file. Without ``on_problem`` (the
library default) the first bad line raises :class:`~openie4pp.errors.InputFileError` instead.

``max_chars`` bounds the work one line can cause: a 50 MB line once took 3.7 GB to tokenise. It is
checked on the raw text before tokenising.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from openie4pp.errors import InputFileError, UsageError
from openie4pp.jsonl import iter_text_lines
from openie4pp.schema import Record, Sentence, canonical_lang

INPUT_FORMATS = ("auto", "txt", "jsonl", "shards", "benchmark")
EXTENSION_FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
OUTPUT_FORMATS = ("jsonl", "carb-tab")

Problem = Callable[[str, str], None]
"""``on_problem(location, message)``: a bad input line, located as ``file:line``."""


@dataclass
class ReadStats:
    """What reading saw: sentences yielded, bad lines skipped, sentences over ``max_chars`` skipped."""

    sentences: int = 0
    bad_lines: int = 0
    too_long: int = 0

    @property
    def skipped(self) -> int:
        return self.bad_lines + self.too_long

    def describe_skipped(self, max_chars: int | None) -> str:
        parts = []
        if self.bad_lines:
            parts.append(f"{self.bad_lines} bad line{'s' * (self.bad_lines != 1)}")
        if self.too_long:
            parts.append(f"{self.too_long} longer than --max-chars {max_chars}")
        return f"{self.skipped} skipped: " + ", ".join(parts) if parts else "none skipped"


class _LineProblem(ValueError):
    """One line's fault, with the field it concerns (``None``: the line as a whole)."""

    def __init__(self, field: str | None, message: str, too_long: bool = False) -> None:
        super().__init__(f"field {field!r}: {message}" if field else message)
        self.too_long = too_long


def benchmark_names() -> dict[str, tuple[str, str]]:
    from .data import BENCHMARK_SOURCES

    return BENCHMARK_SOURCES


def resolve_input_format(path: str | Path, input_format: str = "auto") -> str:
    """The format ``path`` is read in (see the module docstring), or a :class:`UsageError` saying
    what is wrong with the path and which option fixes it. Touches nothing but the file system's
    metadata, so it runs before the model is loaded."""
    if input_format not in INPUT_FORMATS:
        raise UsageError(f"--input-format {input_format!r}: expected one of {', '.join(INPUT_FORMATS)}")
    source, benchmarks = Path(path), benchmark_names()
    if input_format == "benchmark" or (
        input_format == "auto" and not source.exists() and str(path) in benchmarks
    ):
        if str(path) not in benchmarks:
            raise UsageError(f"--input {path}: not a benchmark name (known: {', '.join(benchmarks)})")
        from openie4pp.paths import benchmarks_dir

        gold = benchmarks_dir() / benchmarks[str(path)][1]
        if not gold.is_file():
            raise UsageError(
                f"--input {path}: the benchmark file {gold} is missing (see OPENIE4PP_BENCHMARKS)"
            )
        return "benchmark"
    if not source.exists():
        hint = f" and not a benchmark name ({', '.join(benchmarks)})" if input_format == "auto" else ""
        raise UsageError(f"--input {path}: no such file or folder{hint}")
    if source.is_dir():
        from openie4pp.shards import shard_files

        if input_format not in ("auto", "shards"):
            raise UsageError(f"--input {path}: is a folder, not a {input_format} file")
        if not shard_files(source):
            raise UsageError(
                f"--input {path}: a folder without <lang>/shard-*.jsonl files (not OpenIE4++ shards)"
            )
        return "shards"
    if input_format == "shards":
        raise UsageError(f"--input {path}: --input-format shards needs a shard folder, this is a file")
    if input_format != "auto":
        return input_format
    by_extension = EXTENSION_FORMATS.get(source.suffix.lower())
    if by_extension is None:
        raise UsageError(
            f"--input {path}: cannot tell the format from the extension {source.suffix or '(none)'!r}; "
            "pass --input-format txt (one sentence per line) or --input-format jsonl"
        )
    return by_extension


def iter_sentences(
    path: str | Path,
    *,
    lang: str = "en",
    pretokenized: bool = False,
    input_format: str = "auto",
    max_chars: int | None = None,
    limit: int | None = None,
    stats: ReadStats | None = None,
    on_problem: Problem | None = None,
) -> Iterator[Sentence]:
    """Stream the sentences of ``path`` (at most ``limit``), in input order; see the module docstring."""
    stats = stats if stats is not None else ReadStats()
    fmt = resolve_input_format(path, input_format)
    default_lang = canonical_lang(lang)

    def report(location: str, problem: Exception) -> None:
        if isinstance(problem, _LineProblem) and problem.too_long:
            stats.too_long += 1
        else:
            stats.bad_lines += 1
        if on_problem is None:
            raise InputFileError(f"{location}: {problem}")
        on_problem(location, str(problem))

    if fmt == "benchmark":
        items: Iterator[tuple[str, Sentence | Exception]] = _benchmark_items(str(path), max_chars)
    elif fmt == "shards":
        items = _shard_items(Path(path), default_lang, max_chars)
    else:
        items = _file_items(Path(path), fmt, default_lang, pretokenized, max_chars)
    if limit is not None and limit <= 0:
        return
    for location, item in items:
        if isinstance(item, Exception):
            report(location, item)
            continue
        stats.sentences += 1
        yield item
        if limit is not None and stats.sentences >= limit:
            return


def _too_long(text: str, max_chars: int | None) -> _LineProblem | None:
    if max_chars is not None and len(text) > max_chars:
        return _LineProblem(
            None, f"sentence of {len(text)} characters is longer than --max-chars {max_chars}", True
        )
    return None


def _benchmark_items(name: str, max_chars: int | None) -> Iterator[tuple[str, Sentence | Exception]]:
    from .data import load_records

    for index, record in enumerate(load_records([{"benchmark": name}]), 1):
        yield f"{name}:{index}", _too_long(record.sentence.text, max_chars) or record.sentence


def _shard_items(root: Path, lang: str, max_chars: int | None) -> Iterator[tuple[str, Sentence | Exception]]:
    from openie4pp.shards import iter_records

    for item in iter_records(root):
        if not isinstance(item, Record):
            yield item.location(), _LineProblem(None, f"{item.reason.value}: {item.detail}")
            continue
        location = f"{root} (sentence {item.sentence.id})"
        yield location, _too_long(item.sentence.text, max_chars) or _canonical(item.sentence)


def _file_items(
    path: Path, fmt: str, lang: str, pretokenized: bool, max_chars: int | None
) -> Iterator[tuple[str, Sentence | Exception]]:
    for line_no, text in _lines(path, max_chars):
        location = f"{path}:{line_no}"
        if isinstance(text, Exception):
            yield location, text
            continue
        try:
            if fmt == "txt":
                yield location, _too_long(text, max_chars) or _text_sentence(text, lang, pretokenized)
            else:
                yield location, _json_sentence(text, lang, pretokenized, max_chars)
        except _LineProblem as problem:
            yield location, problem


def _lines(path: Path, max_chars: int | None = None) -> Iterator[tuple[int, str | Exception]]:
    """``(1-based line number, text without its line end)`` for every non-blank line
    (:func:`openie4pp.jsonl.iter_text_lines`: only ``\\n`` ends a line, a BOM is ignored); a line that
    is not UTF-8, or far longer than ``max_chars`` (skipped unread), comes as a :class:`_LineProblem`."""
    max_bytes = None if max_chars is None else max_chars * 4 + 64 * 1024
    try:
        lines = iter_text_lines(path, max_bytes)
        for line in lines:
            yield line.number, line.text if line.text is not None else _LineProblem(None, line.problem or "")
    except OSError as exc:
        raise InputFileError(f"--input {path}: cannot read: {exc.strerror or exc}") from None


def _canonical(sentence: Sentence) -> Sentence:
    """The sentence with its language tag spelt canonically (``EN`` and ``en`` are one language)."""
    lang = canonical_lang(sentence.lang)
    return sentence if lang == sentence.lang else sentence.model_copy(update={"lang": lang})


def _text_sentence(text: str, lang: str, pretokenized: bool, id: str | None = None) -> Sentence:
    from pydantic import ValidationError

    try:
        return Sentence.from_text(text, lang, id, pretokenized)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        raise _LineProblem("text", str(problem["msg"]).removeprefix("Value error, ")) from None


def _json_sentence(line: str, lang: str, pretokenized: bool, max_chars: int | None) -> Sentence:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise _LineProblem(None, f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _LineProblem(
            None, f"a JSON {type(obj).__name__}, not an object (JSON Lines: one object per line)"
        )
    if "sentence" in obj:  # an OpenIE4++ record: keep its tokenisation and id
        return _record_sentence(obj, max_chars)
    text = obj.get("text")
    if text is None:
        raise _LineProblem("text", "missing (a line is {text, lang?, id?} or an OpenIE4++ record)")
    if not isinstance(text, str):
        raise _LineProblem("text", f"must be a string, not {type(text).__name__}")
    if not text.strip():
        raise _LineProblem("text", "empty sentence")
    too_long = _too_long(text, max_chars)
    if too_long:
        raise too_long
    line_lang = obj.get("lang")
    if line_lang is None:
        line_lang = lang
    else:
        try:
            line_lang = canonical_lang(line_lang)
        except ValueError as exc:
            raise _LineProblem("lang", str(exc)) from None
    line_id = obj.get("id")
    if line_id is not None and (not isinstance(line_id, str) or not line_id):
        raise _LineProblem("id", f"must be a non-empty string, not {json.dumps(line_id)[:40]}")
    return _text_sentence(text, line_lang, pretokenized, line_id)


def _record_sentence(obj: dict[str, Any], max_chars: int | None) -> Sentence:
    from pydantic import ValidationError

    from openie4pp.jsonl import problems_from_error

    sentence = obj["sentence"]
    text = sentence.get("text") if isinstance(sentence, dict) else None
    too_long = _too_long(text, max_chars) if isinstance(text, str) else None
    if too_long:
        raise too_long
    try:
        record = Record.model_validate(obj)
    except ValidationError as exc:
        field, reason, detail = problems_from_error(exc)[0]
        raise _LineProblem(field, f"{reason.value}: {detail}") from None
    try:
        return _canonical(record.sentence)
    except ValueError as exc:
        raise _LineProblem("sentence.lang", str(exc)) from None


def count_lines(path: str | Path) -> int | None:
    """Non-blank lines of a file (the progress bar's total), or ``None`` for a folder or benchmark."""
    source = Path(path)
    if not source.is_file():
        return None
    with open(source, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def read_sentences(
    path: str | Path,
    lang: str = "en",
    pretokenized: bool = False,
    limit: int | None = None,
    *,
    input_format: str = "auto",
    max_chars: int | None = None,
) -> list[Sentence]:
    """Sentences from text lines, JSONL (``{text, lang, id}`` or records), a shard folder, or a
    benchmark name (``carb-dev``: its sentences exactly as the scorer's gold tokenises them); the
    first ``limit``. A bad line raises :class:`InputFileError` naming file, line and field (use
    :func:`iter_sentences` with ``on_problem`` to skip bad lines instead)."""
    return list(
        iter_sentences(
            path,
            lang=lang,
            pretokenized=pretokenized,
            input_format=input_format,
            max_chars=max_chars,
            limit=limit,
        )
    )


# -- output --------------------------------------------------------------------------------------

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""C0 and C1 control characters (tab, newline, carriage return, NEL...) and the Unicode line and
paragraph separators: each would cut or shift a CaRB tab line."""


def tab_cell(text: str) -> str:
    """A cell of CaRB's tab format: every control character or line separator becomes one space,
    since the format has no escaping (a newline in a sentence would split its line, a tab would
    shift its columns, and the scorer would reject the file)."""
    return _CONTROL.sub(" ", text)


def tab_lines(records: Iterable[Record]) -> Iterator[str]:
    """CaRB tab lines: ``sentence \\t confidence \\t relation \\t arg0 \\t arg1 ...``, one per extraction."""
    for record in records:
        text = tab_cell(record.sentence.text)
        for extraction in record.extractions:
            relation, args = extraction.nary()
            cells = [text, f"{extraction.confidence:.6f}", relation, *args]
            yield "\t".join(tab_cell(c) for c in cells) + "\n"


def write_records(records: Iterable[Record], out: TextIO, fmt: str = "jsonl") -> int:
    """Write ``records`` as OpenIE4++ JSONL or CaRB tab lines; returns the number of extractions."""
    if fmt == "jsonl":
        count = 0
        for record in records:
            out.write(record.model_dump_json() + "\n")
            count += len(record.extractions)
        return count
    if fmt == "carb-tab":
        return sum(out.write(line) > 0 for line in tab_lines(records))
    raise ValueError(f"unknown output format {fmt!r} (jsonl or carb-tab)")


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
