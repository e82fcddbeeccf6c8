"""Streaming annotation inputs: JSONL, plain text, Parquet, OpenIE4++ records, or a ``datasets`` dataset.

Inputs can have millions of lines, so everything here is a generator: nothing is loaded whole.
Each input becomes a :class:`WorkItem` with a stable id; ``--shard i/N`` keeps the items whose
id hashes to ``i`` modulo ``N``, so N machines given the same input and different ``i`` do
disjoint work that together covers the input exactly once (the hash is sha256, not Python's
salted ``hash``, so every machine agrees).

Formats (``auto`` picks by suffix):

* ``jsonl``: objects with ``text`` (or ``sentence``), optional ``lang``, ``id`` and, for
  ``project`` mode, ``triples`` as ``[[subject, relation, object, *extra], ...]``;
* ``records``: OpenIE4++ records (e.g. converted gold); their extractions become the known
  triples that ``project`` mode carries into the target language;
* ``txt``: one sentence per line (``--lang`` required);
* ``parquet``: columns as for ``jsonl``, read in record batches with pyarrow;
* ``hf:NAME_OR_PATH[:split]``: a ``datasets`` dataset, streamed.

A bad input line never stops the run: it becomes an :class:`InputProblem`, which the pipeline
records as a rejection naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openie4pp.schema import Record, check_lang, sentence_id_for


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


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """``"2/8"`` -> ``(2, 8)``; shards are numbered from 0."""
    if not spec:
        return None
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard {spec!r}: expected I/N such as 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {spec!r}: need 0 <= I < N")
    return index, count


def in_shard(item_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    digest = hashlib.sha256(item_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]


def detect_format(path: str) -> str:
    if path.startswith("hf:"):
        return "hf"
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".txt":
        return "txt"
    if Path(path).is_dir():
        return "records"
    return "jsonl"


def _triples(value: Any) -> tuple[tuple[str, ...], ...]:
    if value in (None, ""):
        return ()
    if not isinstance(value, list) or not all(
        isinstance(t, list) and len(t) >= 3 and all(isinstance(x, str) for x in t) for t in value
    ):
        raise ValueError("triples must be a list of [subject, relation, object, ...] string lists")
    return tuple(tuple(t) for t in value)


def item_from_mapping(data: Any, default_lang: str | None, source: str, line: int | None) -> WorkItem:
    """One input object -> a :class:`WorkItem`; raises ValueError naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    text = data.get("text", data.get("sentence"))
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text: missing or empty sentence")
    lang = data.get("lang") or default_lang
    if not isinstance(lang, str):
        raise ValueError("lang: missing (give it per line or with --lang)")
    check_lang(lang)
    item_id = data.get("id") or sentence_id_for(lang, text)
    return WorkItem(
        str(item_id), lang, text, _triples(data.get("triples")), bool(data.get("pretokenized")), source, line
    )


def item_from_record(record: Record, source: str, line: int | None) -> WorkItem:
    triples = []
    for extraction in record.extractions:
        subject = extraction.argument("arg0")
        objects = [a.text for a in extraction.arguments if a.role != "arg0"]
        if subject and objects and extraction.predicate.text:
            triples.append((subject.text, extraction.predicate.text, *objects))
    return WorkItem(record.id, record.lang, record.sentence.text, tuple(triples), True, source, line)


def _problem(source: str, line: int | None, error: Exception, raw: str) -> InputProblem:
    detail = str(error)
    field_name = detail.split(":", 1)[0] if ":" in detail and " " not in detail.split(":", 1)[0] else None
    reason = "schema_invalid"
    if "language code" in detail:
        reason = "unknown_language"
    elif "empty sentence" in detail:
        reason = "empty_sentence"
    elif isinstance(error, json.JSONDecodeError):
        reason = "malformed_json"
    return InputProblem(source, line, detail, raw[:2000], field_name, reason)


def _read_jsonl(path: str, lang: str | None) -> Iterator[WorkItem | InputProblem]:
    with open(path, "rb") as handle:
        for number, raw_bytes in enumerate(handle, 1):
            raw = raw_bytes.decode("utf-8", "replace").strip()
            if not raw:
                continue
            try:
                data = json.loads(raw)
                if isinstance(data, dict) and "sentence" in data and isinstance(data["sentence"], dict):
                    yield item_from_record(Record.model_validate(data), path, number)
                else:
                    yield item_from_mapping(data, lang, path, number)
            except ValueError as error:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
                yield _problem(path, number, error, raw)


def _read_txt(path: str, lang: str | None) -> Iterator[WorkItem | InputProblem]:
    if not lang:
        raise ValueError(f"{path}: plain-text input needs --lang")
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            text = line.rstrip("\r\n")
            if text.strip():
                try:
                    yield item_from_mapping({"text": text}, lang, path, number)
                except ValueError as error:
                    yield _problem(path, number, error, text)


def _read_records(path: str) -> Iterator[WorkItem | InputProblem]:
    from openie4pp.shards import iter_records

    for item in iter_records(path):
        if isinstance(item, Record):
            yield item_from_record(item, path, None)
        else:
            yield InputProblem(
                item.file or path, item.line, item.detail, item.input, item.field, item.reason.value
            )


def _read_rows(
    rows: Iterator[dict[str, Any]], lang: str | None, source: str
) -> Iterator[WorkItem | InputProblem]:
    for number, row in enumerate(rows, 1):
        try:
            yield item_from_mapping(row, lang, source, number)
        except ValueError as error:
            yield _problem(source, number, error, json.dumps(row, ensure_ascii=False, default=str))


def _parquet_rows(path: str) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        yield from batch.to_pylist()


def _hf_rows(spec: str) -> Iterator[dict[str, Any]]:
    import datasets

    name, _, split = spec.removeprefix("hf:").partition(":")
    yield from datasets.load_dataset(name, split=split or "train", streaming=True)


def read_inputs(
    path: str,
    *,
    fmt: str = "auto",
    lang: str | None = None,
    shard: tuple[int, int] | None = None,
    limit: int | None = None,
) -> Iterator[WorkItem | InputProblem]:
    """Stream work items (and problems) from ``path``, keeping only this shard, up to ``limit`` items."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in ("hf",) and not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such input")
    readers = {
        "jsonl": lambda: _read_jsonl(path, lang),
        "records": lambda: _read_records(path),
        "txt": lambda: _read_txt(path, lang),
        "parquet": lambda: _read_rows(_parquet_rows(path), lang, path),
        "hf": lambda: _read_rows(_hf_rows(path), lang, path),
    }
    if fmt not in readers:
        raise ValueError(f"unknown input format {fmt!r} (auto, {', '.join(readers)})")
    taken = 0
    for item in readers[fmt]():
        if isinstance(item, InputProblem):  # a bad line belongs to exactly one shard too
            if in_shard(f"{item.source}:{item.line}", shard):
                yield item
            continue
        if not in_shard(item.id, shard):
            continue
        if limit is not None and taken >= limit:
            return
        taken += 1
        yield item
