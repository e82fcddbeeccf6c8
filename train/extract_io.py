"""What ``openie4pp extract`` reads and writes: sentences in, records or CaRB tab lines out.

Input
-----
Reading is :func:`openie4pp.sources.read_source`'s (shared with the annotator and training): the
format is **decided, never guessed from the content** (a folder is shards, ``.jsonl``/``.ndjson``/
``.json`` JSON Lines, ``.txt`` text, ``.parquet`` a table, ``hf:`` a dataset, a benchmark name
that benchmark's sentences exactly as its scorer tokenises them; other extensions need
``--input-format``), only ``\\n`` ends a line, a BOM is tolerated. This module gives the rows their
``extract`` meaning: a :class:`~openie4pp.schema.Sentence` from a text line, a ``{text, lang?,
id?}`` object (``id`` a non-empty string) or a record.

A bad line (not UTF-8, malformed JSON, no ``text``, a bad ``lang`` or ``id``, a sentence longer
than ``max_chars``) is *reported* through ``on_problem`` as ``file:line: field ...: why``, counted
in :class:`ReadStats` and skipped: one bad line never aborts a long file. Without ``on_problem``
(the library default) the first bad line raises :class:`~openie4pp.errors.InputFileError` instead.

``max_chars`` bounds the work one line can cause: a 50 MB line once took 3.7 GB to tokenise. It is
checked on the raw text before tokenising, and a text line far over it is skipped unread.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from openie4pp.errors import InputFileError
from openie4pp.schema import Record, RejectionReason, Sentence, canonical_lang
from openie4pp.sources import FORMATS, MappingRow, RecordRow, Row, SourceProblem, TextRow, read_source

FORMAT_ALIASES = {"shards": "records"}
"""``--input-format shards``: the name ``extract`` gave a shard folder before there was one reader."""
INPUT_FORMATS = ("auto", *FORMATS, *FORMAT_ALIASES)
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


def max_line_bytes(max_chars: int | None) -> int | None:
    """A raw line longer than this cannot hold a sentence of ``max_chars`` characters (4 UTF-8
    bytes a character, plus room for the JSON around it): it is skipped while being read."""
    return None if max_chars is None else max_chars * 4 + 64 * 1024


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
    """Stream the sentences of ``path`` (at most ``limit``), in input order; see the module docstring.

    The format and the path are checked on the call, before the first sentence is pulled."""
    stats = stats if stats is not None else ReadStats()
    default_lang = canonical_lang(lang)
    fmt = FORMAT_ALIASES.get(input_format, input_format)
    rows = read_source(path, fmt, max_line_bytes=max_line_bytes(max_chars))
    return _sentences(rows, default_lang, pretokenized, max_chars, limit, stats, on_problem)


def _sentences(rows: Iterator[Row], lang: str, pretokenized: bool, max_chars: int | None, limit: int | None,
               stats: ReadStats, on_problem: Problem | None) -> Iterator[Sentence]:
    if limit is not None and limit <= 0:
        return
    for row in rows:
        try:
            sentence = _sentence(row, lang, pretokenized, max_chars)
        except _LineProblem as problem:
            if problem.too_long:
                stats.too_long += 1
            else:
                stats.bad_lines += 1
            if on_problem is None:
                raise InputFileError(f"{row.where}: {problem}") from None
            on_problem(str(row.where), str(problem))
            continue
        stats.sentences += 1
        yield sentence
        if limit is not None and stats.sentences >= limit:
            return


def _sentence(row: Row, lang: str, pretokenized: bool, max_chars: int | None) -> Sentence:
    """The sentence a row holds, or the :class:`_LineProblem` that keeps it from being one."""
    if isinstance(row, SourceProblem):
        raise _LineProblem(row.field, row.detail, row.reason is RejectionReason.too_long)
    if isinstance(row, TextRow):
        _check_length(row.text, max_chars)
        return _text_sentence(row.text, lang, pretokenized)
    if isinstance(row, RecordRow):
        _check_length(row.record.sentence.text, max_chars)
        try:
            return _canonical(row.record.sentence)
        except ValueError as exc:
            raise _LineProblem("sentence.lang", str(exc)) from None
    return _mapping_sentence(row, lang, pretokenized, max_chars)


def _check_length(text: str, max_chars: int | None) -> None:
    if max_chars is not None and len(text) > max_chars:
        raise _LineProblem(
            None, f"sentence of {len(text)} characters is longer than --max-chars {max_chars}", True
        )


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


def _mapping_sentence(row: MappingRow, lang: str, pretokenized: bool, max_chars: int | None) -> Sentence:
    data = row.data
    text = data.get("text")
    if text is None:
        raise _LineProblem("text", "missing (a line is {text, lang?, id?} or an OpenIE4++ record)")
    if not isinstance(text, str):
        raise _LineProblem("text", f"must be a string, not {type(text).__name__}")
    if not text.strip():
        raise _LineProblem("text", "empty sentence")
    _check_length(text, max_chars)
    line_lang = data.get("lang")
    if line_lang is None:
        line_lang = lang
    else:
        try:
            line_lang = canonical_lang(line_lang)
        except ValueError as exc:
            raise _LineProblem("lang", str(exc)) from None
    line_id = data.get("id")
    if line_id is not None and (not isinstance(line_id, str) or not line_id):
        raise _LineProblem("id", f"must be a non-empty string, not {json.dumps(line_id, default=str)[:40]}")
    return _text_sentence(text, line_lang, pretokenized, line_id)


def count_lines(path: str | Path) -> int | None:
    """Non-blank lines of a file (the progress bar's total), or ``None`` for a folder, a dataset or a
    benchmark (and for Parquet, whose rows are no lines)."""
    source = Path(path)
    if not source.is_file() or source.suffix.lower() == ".parquet":
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
    """Sentences from text lines, JSONL (``{text, lang, id}`` or records), a shard folder, Parquet,
    a ``hf:`` dataset, or a benchmark name (``carb-dev``: its sentences exactly as the scorer's gold
    tokenises them); the first ``limit``. A bad line raises :class:`InputFileError` naming file,
    line and field (use :func:`iter_sentences` with ``on_problem`` to skip bad lines instead)."""
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
