"""Annotation inputs: the rows of :mod:`openie4pp.sources` as work items, sharded and bounded.

Reading (formats, lines, bytes, locations) is :func:`openie4pp.sources.read_source`'s job, shared
with ``extract`` and training; this module gives the rows their annotation meaning. Each input
becomes a :class:`WorkItem` with a stable id; ``--shard i/N`` keeps the items whose id hashes to
``i`` modulo ``N``, so N machines given the same input and different ``i`` do disjoint work that
together covers the input exactly once (the hash is sha256, not Python's salted ``hash``, so every
machine agrees).

What a row holds, by format (``auto`` picks by what the input is, see :mod:`openie4pp.sources`):

* ``jsonl``: objects with ``text`` (or ``sentence``), optional ``lang``, ``id`` and, for
  ``project`` mode, ``triples`` as ``[[subject, relation, object, *extra], ...]``;
* ``records``: OpenIE4++ records (e.g. converted gold); their extractions become the known
  triples that ``project`` mode carries into the target language;
* ``txt``: one sentence per line (``--lang`` required);
* ``parquet``: columns as for ``jsonl``, read in record batches with pyarrow;
* ``hf:NAME_OR_PATH[:split]``: a ``datasets`` dataset, streamed.

A bad input line never stops the run: it becomes an :class:`InputProblem`, which the pipeline
records as a rejection naming the file and line. Text must be valid UTF-8 (a byte that is not is
``malformed_text`` with its offset: replacing it with U+FFFD would put a corrupted sentence into
the silver data), a leading BOM is ignored, and lines are bounded (:class:`InputLimits`): a line
longer than the limit is skipped without being read into memory whole, and a sentence longer than
``max_chars`` characters or ``max_words`` words is ``too_long`` (it would be billed whole).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from openie4pp.errors import UsageError
from openie4pp.schema import Record, RejectionReason, canonical_lang, clip_input, is_blank, sentence_id_for
from openie4pp.sources import RecordRow, Row, SourceProblem, TextRow, read_source, resolve_format


@dataclass(frozen=True)
class WorkItem:
    id: str
    lang: str
    text: str
    triples: tuple[tuple[str, ...], ...] = ()
    """Known triples (subject, relation, object, *extra) of the sentence, for ``project`` mode."""
    pretokenized: bool = False
    source: str = ""
    line: int | None = None


@dataclass(frozen=True)
class InputProblem:
    source: str
    line: int | None
    detail: str
    raw: str
    field: str | None = None
    reason: str = "schema_invalid"
    sentence_id: str | None = None
    """The line's own id when it has a usable one, so every input id can be accounted for."""


@dataclass(frozen=True)
class InputLimits:
    """Bounds on one input sentence; see the module docstring for why they exist."""

    max_chars: int = 5000
    """Characters per sentence (``--max-sentence-chars``); OIE sentences are rarely over 500."""
    max_words: int = 400
    """Whitespace-separated words per sentence (``--max-sentence-words``)."""

    @property
    def max_line_bytes(self) -> int:
        """A raw line longer than this cannot hold an acceptable sentence (4 UTF-8 bytes a character,
        plus room for the JSON around it): it is skipped while being read."""
        return self.max_chars * 4 + 64 * 1024


class _LineTooLong(ValueError):
    pass


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"2/8"`` -> ``(2, 8)``; shards are numbered from 0."""
    if not spec:
        return None
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise UsageError(f"--shard {spec!r}: expected I/N such as 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {spec!r}: need 0 <= I < N")
    return index, count


def in_shard(item_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]


def _triples(value: Any) -> tuple[tuple[str, ...], ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, list) or not all(
        isinstance(t, list) and len(t) >= 3 and all(isinstance(x, str) for x in t) for t in value
    ):
        raise ValueError("triples must be a list of [subject, relation, object, ...] string lists")
    return tuple(tuple(t) for t in value)


def _item_id(value: Any) -> str | None:
    """An id as given: a non-empty string or an integer. Anything else (an object, ``true``, a float
    such as ``1e400``) would become a surprising string through ``str()``: it is an error."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"id: must be a string or an integer, not {type(value).__name__} {value!r:.80}")
    text = str(value)
    if not text.strip() or len(text) > 512:
        raise ValueError("id: must be a non-blank string of at most 512 characters")
    _check_encodable(text, "id")
    return text


def _check_encodable(text: str, field: str) -> None:
    """JSON's ``\\ud800`` escapes decode to lone surrogates, which are no text: they cannot be sent
    to an LLM or written to a shard, so such a line is ``malformed_text`` at input."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _MalformedText(f"{field}: a lone surrogate (\\u{ord(text[error.start]):04x}) at character "
                             f"{error.start} is not text") from None


def item_from_mapping(data: Any, default_lang: str | None, source: str, line: int | None,
                      limits: InputLimits | None = None) -> WorkItem:
    """One input object -> a :class:`WorkItem`; raises ValueError naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    item_id = _item_id(data.get("id"))
    text = data.get("text", data.get("sentence"))
    if not isinstance(text, str) or is_blank(text):
        raise ValueError("text: missing or empty sentence")
    _check_encodable(text, "text")
    lang = data.get("lang") or default_lang
    if not isinstance(lang, str):
        raise ValueError("lang: missing (give it per line or with --lang)")
    try:
        lang = canonical_lang(lang)
    except ValueError as error:
        raise ValueError(f"lang: {error}") from None
    _check_length(text, limits or InputLimits())
    return WorkItem(
        item_id or sentence_id_for(lang, text), lang, text, _triples(data.get("triples")),
        bool(data.get("pretokenized")), source, line,
    )


def _check_length(text: str, limits: InputLimits) -> None:
    if len(text) > limits.max_chars:
        raise _LineTooLong(f"text: {len(text)} characters, over the limit of {limits.max_chars} "
                           "(--max-sentence-chars)")
    if len(text) <= limits.max_words:  # fewer characters than the word limit: nothing to count
        return
    words = len(text.split())
    if words > limits.max_words:
        raise _LineTooLong(
            f"text: {words} words, over the limit of {limits.max_words} (--max-sentence-words)")


def item_from_record(record: Record, source: str, line: int | None,
                     limits: InputLimits | None = None) -> WorkItem:
    """An OpenIE4++ record as a work item (its extractions are the known triples for ``project``);
    its language canonicalised and its length bounded like any other input (ValueError otherwise)."""
    try:
        lang = canonical_lang(record.lang)
    except ValueError as error:
        raise ValueError(f"sentence.lang: {error}") from None
    _check_length(record.sentence.text, limits or InputLimits())
    triples = []
    for extraction in record.extractions:
        subject = extraction.argument("arg0")
        objects = [a.text for a in extraction.arguments if a.role != "arg0"]
        if subject and objects and extraction.predicate.text:
            triples.append((subject.text, extraction.predicate.text, *objects))
    return WorkItem(record.id, lang, record.sentence.text, tuple(triples), True, source, line)


def _problem(source: str, line: int | None, error: Exception, raw: str, data: Any = None) -> InputProblem:
    detail = str(error)
    head = detail.split(":", 1)[0]
    field_name = head if ":" in detail and " " not in head else None
    reason = "schema_invalid"
    if isinstance(error, _LineTooLong):
        reason = "too_long"
    elif isinstance(error, _MalformedText):
        reason = "malformed_text"
    elif "language code" in detail:
        reason = "unknown_language"
    elif "empty sentence" in detail:
        reason = "empty_sentence"
    sentence_id = None
    if isinstance(data, dict):
        with contextlib.suppress(ValueError):
            sentence_id = _item_id(data.get("id"))
    return InputProblem(source, line, detail, clip_input(raw), field_name, reason, sentence_id)


class _MalformedText(ValueError):
    pass


def _from_source_problem(problem: SourceProblem) -> InputProblem:
    where = problem.where
    if problem.reason is RejectionReason.too_long:  # a line too long to read: --max-sentence-chars bounds it
        return InputProblem(where.source, where.line, f"{problem.detail} (--max-sentence-chars)", problem.raw,
                            None, "too_long")
    detail = f"{problem.field}: {problem.detail}" if problem.field else problem.detail
    sentence_id = None
    if isinstance(problem.data, dict):
        with contextlib.suppress(ValueError):
            sentence_id = _item_id(problem.data.get("id"))
    return InputProblem(where.source, where.line, detail, problem.raw, problem.field, problem.reason.value,
                        sentence_id)


def _items(rows: Iterator[Row], lang: str | None, limits: InputLimits) -> Iterator[WorkItem | InputProblem]:
    """Each row of the reader as a work item, or as the problem that keeps it from being one."""
    for row in rows:
        if isinstance(row, SourceProblem):
            yield _from_source_problem(row)
            continue
        source, line = row.where.source, row.where.line
        try:
            if isinstance(row, RecordRow):
                yield item_from_record(row.record, source, line, limits)
            elif isinstance(row, TextRow):
                yield item_from_mapping({"text": row.text}, lang, source, line, limits)
            else:
                yield item_from_mapping(row.data, lang, source, line, limits)
        except ValueError as error:
            if isinstance(row, RecordRow):
                yield _problem(source, line, error, row.record.sentence.text, {"id": row.record.id})
            elif isinstance(row, TextRow):
                yield _problem(source, line, error, row.text)
            else:
                yield _problem(source, line, error, row.raw_text(), row.data)


ANNOTATE_FORMATS = ("jsonl", "records", "txt", "parquet", "hf")
"""What ``--input-format`` offers (a benchmark's sentences are annotated by converting it first)."""


def read_inputs(
    path: str,
    *,
    fmt: str = "auto",
    lang: str | None = None,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
    limits: InputLimits | None = None,
    counts: InputCounts | None = None,
) -> Iterator[WorkItem | InputProblem]:
    """Stream work items (and problems) from ``path``, keeping only this shard, up to ``limit`` items.

    Everything that can be checked without reading a line is checked on the call (not when the
    first item is pulled): a missing file, an unknown format, TXT without ``--lang``."""
    limits = limits or InputLimits()
    if fmt != "auto" and fmt not in ANNOTATE_FORMATS:
        raise UsageError(f"--input-format {fmt!r}: unknown (auto, {', '.join(ANNOTATE_FORMATS)})")
    fmt = resolve_format(path, fmt)
    if fmt not in ANNOTATE_FORMATS:
        raise UsageError(f"--input {path}: a benchmark name; convert it first (`openie4pp convert`) and "
                         "annotate the converted folder")
    if fmt == "txt" and not lang:
        raise UsageError(f"--input {path}: plain-text input needs --lang")
    rows = read_source(path, fmt, max_line_bytes=limits.max_line_bytes)
    return _take(_items(rows, lang, limits), shard, limit, counts if counts is not None else InputCounts())


@dataclass
class InputCounts:
    """What the reader passed over, for the run's summary (filled in while it streams)."""

    other_shards: int = 0
    """Lines that belong to another ``--shard``: an empty share of a non-empty input is no problem."""


def _take(items: Iterator[WorkItem | InputProblem], shard: tuple[int, int] | None,
          limit: int | None, counts: InputCounts) -> Iterator[WorkItem | InputProblem]:
    taken = 0
    for item in items:
        if isinstance(item, InputProblem):  # a bad line belongs to exactly one shard too
            if in_shard(f"{item.source}:{item.line}", shard):
                yield item
            else:
                counts.other_shards += 1
            continue
        if not in_shard(item.id, shard):
            counts.other_shards += 1
            continue
        if limit is not None and taken >= limit:
            return
        taken += 1
        yield item
