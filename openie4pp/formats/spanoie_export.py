"""``openie4pp export --to spanoie DIR OUT``: OpenIE4++ records as the two files MT4CrossOIE trained on.

English records (``lang`` ``en``) go to ``OUT/structured_data.json``: one JSON list, one sentence per
line, positions over the sentence's words split on spaces (``\\xa0`` counting as one), as SpanOIE and
Multi2OIE read them. Every other language goes to ``OUT/OpenIE4_train_{lang}.json``: JSON lines with
``sentence_tokenized`` (BasicTokenizer's tokens joined by spaces) and positions over those tokens, as
in the CrossOIE release. ``openie4pp convert --from spanoie`` reads both back (see
:mod:`openie4pp.formats.spanoie`): for every record written, the sentence text, the language, each
triple's phrases and character extents and its confidence (as ``score``) come back exactly; token
indices are the format's tokenisation, the record's own when it was tokenised the same way.
Provenance is not kept: the formats have no place for it, and reading an export back sets it by
layout, ``source: gold`` for ``structured_data.json`` (English) and ``source: llm`` (``mode:
project``, ``source_lang: en``) for the release files, whatever the records' own: exported English
silver data reads back as ``gold``. The one-line summary says so.

What does not fit is skipped and counted, a whole record at a time (a record written without some of
its triples would teach a tagger that they are not there):

* ``ungrounded``: an element without a span (gold free text);
* ``roles``: arguments other than ``arg0, arg1, ...`` in that order (``loc``/``temp``/``context``, a
  gap, no subject);
* ``off_word_boundaries`` (English): an element that does not start and end at a space-separated word,
  e.g. ``Paris`` in ``... in Paris.``; ``off_token_boundaries`` (other languages): not on
  BasicTokenizer tokens;
* ``no_object`` (not English): a triple without an object, which the binary release format cannot hold;
* ``invalid_line``, ``torn_line``: lines of DIR that are no valid record.

The release format is binary, so an n-ary triple in another language is **cut to its first object**,
as the release itself did with OpenIE4's English tuples (``arg0``, ``relation``, ``args[0]``), and
counted; such a record does not read back as it was. English keeps every object.

Everything is streamed, one record at a time, into files written atomically: an interrupted or failed
export leaves OUT as it was. Files of an earlier export in OUT are refused unless ``overwrite``, which
also removes those this export does not rewrite.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from openie4pp.atomic import atomic_writer
from openie4pp.errors import InputFileError, UsageError
from openie4pp.formats.basic_tokens import basic_token_text, basic_tokenize
from openie4pp.formats.spanoie import space_words
from openie4pp.jsonl import TornLineWarning
from openie4pp.schema import Element, Record, Rejection, is_blank
from openie4pp.shards import check_not_busy, iter_records, shard_files

STRUCTURED = "structured_data.json"
RELEASE_PATTERN = "OpenIE4_train_*.json"


def release_name(lang: str) -> str:
    """The file of ``lang``'s records: ``OpenIE4_train_de.json``."""
    return f"OpenIE4_train_{lang}.json"


@dataclass
class ExportStats:
    """What an export wrote (records per file) and skipped (records per reason)."""

    written: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    truncated: int = 0
    """N-ary triples (not English) cut to their first object."""

    @property
    def records(self) -> int:
        return sum(self.written.values())

    def summary(self, src: Path, out: Path) -> str:
        files = ", ".join(f"{name} {n}" for name, n in sorted(self.written.items())) or "no file"
        reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(self.skipped.items()))
        return (f"{src} -> {out}: {self.records} records written ({files}), {sum(self.skipped.values())} "
                f"skipped{f' ({reasons})' if reasons else ''}, {self.truncated} n-ary triples cut to their "
                "first object; note: provenance is not part of the SpanOIE formats, reading these files "
                "back gives source gold (en) / llm (others)")


class _Misfit(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _boundaries(spans: list[tuple[int, int]], text: str) -> tuple[dict[int, int], dict[int, int]]:
    """Position by start character and by end character; empty or blank words (which a
    tokenisation has no token for) keep their position but are no boundary."""
    kept = [(i, s, e) for i, (s, e) in enumerate(spans) if not is_blank(text[s:e])]
    return {s: i for i, s, _ in kept}, {e: i for i, _, e in kept}


def entry(record: Record) -> tuple[dict[str, Any], int]:
    """``(the SpanOIE object of record, n-ary triples cut)``; raises ``ValueError`` (``.reason``) for
    a record that does not fit (see the module docstring)."""
    text, english = record.sentence.text, record.lang == "en"
    spans = space_words(text) if english else basic_tokenize(text)
    starts, ends = _boundaries(spans, text)
    offsets = record.sentence.offsets

    def position(element: Element) -> list[int]:
        assert element.span is not None
        first, last = offsets[element.span[0]][0], offsets[element.span[1] - 1][1]
        if first not in starts or last not in ends:
            raise _Misfit("off_word_boundaries" if english else "off_token_boundaries")
        return [starts[first], ends[last]]

    tuples, truncated = [], 0
    for extraction in record.extractions:
        if extraction.predicate.span is None or any(a.span is None for a in extraction.arguments):
            raise _Misfit("ungrounded")
        roles = [a.role for a in extraction.arguments]
        if not roles or roles != [f"arg{k}" for k in range(len(roles))]:
            raise _Misfit("roles")
        subject, objects = extraction.arguments[0], extraction.arguments[1:]
        if not english:
            if not objects:
                raise _Misfit("no_object")
            truncated += len(objects) > 1
            objects = objects[:1]
        tuples.append({
            "arg0": subject.text, "relation": extraction.predicate.text, "args": [o.text for o in objects],
            "arg0_pos": position(subject), "rel_pos": position(extraction.predicate),
            "args_pos": [position(o) for o in objects], "score": extraction.confidence,
        })
    if english:
        return {"sentence": text, "tuples": tuples}, truncated
    tokenized = " ".join(basic_token_text(text[s:e]) for s, e in spans)
    return {"sentence": text, "sentence_tokenized": tokenized, "tuples": tuples}, truncated


def _earlier_export(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return sorted(p for p in [out / STRUCTURED, *out.glob(RELEASE_PATTERN)] if p.is_file())


def _check(src: Path, out: Path, overwrite: bool) -> list[Path]:
    if not src.exists():
        raise InputFileError(f"{src}: no such shard folder")
    if src.is_dir():
        if not shard_files(src):
            raise InputFileError(f"{src} holds no <lang>/shard-*.jsonl files: give an OpenIE4++ shard folder")
        check_not_busy(src)
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out} is a file; give a folder for the exported files")
    earlier = _earlier_export(out)
    if earlier and not overwrite:
        names = ", ".join(p.name for p in earlier)
        raise UsageError(f"{out} already holds exported files ({names}); pass --overwrite to replace them")
    return earlier


def export_spanoie(src: Path, out: Path, *, overwrite: bool = False) -> ExportStats:
    """Export the records of ``src`` (a shard folder or one JSONL file) into ``out``; see the module."""
    earlier = _check(src, out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    stats = ExportStats()
    handles: dict[str, BinaryIO] = {}
    with contextlib.ExitStack() as stack, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TornLineWarning)
        for item in iter_records(src):
            if isinstance(item, Rejection):
                stats.skipped["invalid_line"] += 1
                continue
            name = STRUCTURED if item.lang == "en" else release_name(item.lang)
            try:
                obj, truncated = entry(item)
            except _Misfit as misfit:
                stats.skipped[misfit.reason] += 1
                continue
            line = json.dumps(obj, ensure_ascii=False).encode("utf-8")
            handle = handles.get(name)
            if handle is None:
                handle = handles[name] = stack.enter_context(atomic_writer(out / name))
                handle.write(b"[\n" if name == STRUCTURED else b"")
            elif name == STRUCTURED:
                handle.write(b",\n")
            handle.write(line if name == STRUCTURED else line + b"\n")
            stats.written[name] += 1
            stats.truncated += truncated
        if STRUCTURED in handles:
            handles[STRUCTURED].write(b"\n]\n")
    torn = sum(issubclass(w.category, TornLineWarning) for w in caught)
    if torn:
        stats.skipped["torn_line"] += torn
    for warning in caught:
        if not issubclass(warning.category, TornLineWarning):
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    for path in earlier:  # the earlier export's files this one did not rewrite
        if path.name not in handles:
            path.unlink(missing_ok=True)
    return stats

