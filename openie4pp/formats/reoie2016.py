"""Re-OIE2016 JSON (English, and the Spanish and Portuguese translations; n-ary and ``-Binary``).

The file maps each sentence to its tuples; every slot (``arg0``, ``pred``, ``arg1``..``arg3``,
``loc``, ``temp``, ``context``) has a phrase and ``<slot>_index`` = ``[first, last]``, the
*inclusive* whitespace-token indices, or ``[]`` when the slot is empty. Indices are trusted
when they reproduce the phrase, which gives exact spans without re-grounding.

Conventions of the data, kept rather than "fixed":

* an implicit predicate (``<be>``, ``<Ser>``) has index ``[-1, -1]``, and ``<be> chilled``
  has ``[-2, first, last]``: these stay free text (``span=None``) because the sentence does
  not contain ``<be>``;
* a slot whose index disagrees with its phrase (a typo such as ``1996`` for ``1966``) keeps
  the annotator's phrase, grounded by text if possible: scorers compare phrases;
* the Portuguese translation has sentences with a double space whose indices count the empty
  string between the spaces (``str.split(" ")``); such indices are mapped onto whitespace
  tokens when that is what makes them reproduce the phrase;
* a tuple with no phrase at all (two in English, two in Portuguese) is rejected: it carries
  nothing a scorer could match.

An index out of range or of the wrong shape rejects that tuple (not the sentence). The JSON
is scanned member by member so that rejections can name the line of the offending tuple.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openie4pp.formats.common import (
    build_record,
    check_language,
    ground_phrase,
    reject,
    sentence_id,
    sentence_or_rejection,
)
from openie4pp.schema import Argument, Element, Extraction, Record, Rejection, RejectionReason, Sentence

logger = logging.getLogger(__name__)

SLOTS = ("arg0", "pred", "arg1", "arg2", "arg3", "loc", "temp", "context")
ARGUMENT_SLOTS = ("arg0", "arg1", "arg2", "arg3", "loc", "temp", "context")
"""Argument order in records: positional first, then the extra slots (as :meth:`Extraction.nary`)."""

_LANGUAGES = {"spanish": "es", "portuguese": "pt", "english": "en"}
_WS = re.compile(r"[ \t\n\r]*")


class _SlotError(ValueError):
    def __init__(self, reason: RejectionReason, field: str, detail: str):
        super().__init__(detail)
        self.reason, self.field, self.detail = reason, field, detail


def infer(path: Path) -> tuple[str, str]:
    """``(lang, dataset)`` from names like ``Re-OIE2016-Spanish-Binary.json``:
    ``("es", "re-oie2016-binary-es")``."""
    words = re.split(r"[-_.\s]+", path.stem.lower())
    lang = next((_LANGUAGES[w] for w in words if w in _LANGUAGES), "en")
    binary = "-binary" if "binary" in words else ""
    return lang, f"re-oie2016{binary}-{lang}"


def read_reoie2016(path: Path, lang: str = "en", dataset: str | None = None) -> Iterator[Record | Rejection]:
    """Records for a Re-OIE2016 JSON file, sentences and tuples in file order.

    A sentence that occurs twice has its tuples merged into the first occurrence (the JSON
    object would otherwise silently keep only the last one).
    """
    dataset = dataset or infer(path)[1]
    bad_lang = check_language(lang, file=path)
    if bad_lang:
        yield bad_lang
        return
    text = path.read_text(encoding="utf-8-sig")
    newlines = [m.start() for m in re.finditer("\n", text)]

    def line_of(pos: int) -> int:
        return bisect.bisect_right(newlines, pos - 1) + 1

    start = _skip(text, 0)
    if text[start : start + 1] != "{":
        wrong_shape = text[start : start + 1] in ("[", '"') or text[start : start + 1].isdigit()
        yield reject(
            RejectionReason.schema_invalid if wrong_shape else RejectionReason.malformed_json,
            "expected a JSON object mapping each sentence to its list of tuples",
            file=path,
            line=line_of(start),
            input=text[start : start + 200],
        )
        return
    order: list[str] = []
    entries: dict[str, list[tuple[Any, int]]] = {}
    first_line: dict[str, int] = {}
    try:
        for key, value, pos in _members(text, start, "{"):
            line = line_of(pos)
            if not isinstance(key, str) or not key.strip():
                yield reject(
                    RejectionReason.empty_sentence,
                    "the sentence (object key) is empty",
                    file=path,
                    line=line,
                    input=str(key),
                    field="sentence",
                )
                continue
            if not isinstance(value, list):
                yield reject(
                    RejectionReason.schema_invalid,
                    "a sentence must map to a list of tuples",
                    file=path,
                    line=line,
                    input=json.dumps(value, ensure_ascii=False)[:500],
                    field="tuples",
                )
                continue
            if key not in entries:
                order.append(key)
                entries[key] = []
                first_line[key] = line
            entries[key] += list(_tuples(text, value, pos))
    except _JsonError as exc:
        yield reject(
            RejectionReason.malformed_json,
            f"{exc.detail} ({_where(text, exc.pos, line_of(exc.pos))})",
            file=path,
            line=line_of(exc.pos),
            input=text[exc.pos : exc.pos + 200],
        )

    for index, key in enumerate(order, start=1):
        sid = sentence_id(dataset, index)
        sentence = sentence_or_rejection(key, lang, sid, file=path, line=first_line[key])
        if isinstance(sentence, Rejection):
            yield sentence
            continue
        split_map = _space_split_map(key)
        extractions: list[Extraction] = []
        for number, (item, pos) in enumerate(entries[key]):
            line = line_of(pos)
            try:
                extractions.append(_extraction(sentence, item, split_map))
            except _SlotError as exc:
                yield reject(
                    exc.reason,
                    f"{exc.detail} ({_where(text, pos, line)})",
                    file=path,
                    line=line,
                    input=json.dumps(item, ensure_ascii=False),
                    field=f"tuples[{number}].{exc.field}",
                    sentence_id=sid,
                )
        yield build_record(sentence, extractions, dataset, file=path, line=first_line[key], input=key)


def convert(path: Path, lang: str | None = None, dataset: str | None = None) -> Iterator[Record | Rejection]:
    """Registry entry point: language and dataset name inferred from the file name."""
    inferred_lang, inferred_dataset = infer(path)
    return read_reoie2016(path, lang or inferred_lang, dataset or inferred_dataset)


# --------------------------------------------------------------------------- tuples


def _extraction(sentence: Sentence, item: Any, split_map: list[int | None] | None) -> Extraction:
    if not isinstance(item, dict):
        raise _SlotError(RejectionReason.schema_invalid, "tuple", "a tuple must be a JSON object")
    phrases = {slot: item.get(slot) or "" for slot in SLOTS}
    for slot, phrase in phrases.items():
        if not isinstance(phrase, str):
            raise _SlotError(RejectionReason.schema_invalid, slot, f"{slot} must be a string, not {phrase!r}")
    if not any(p.strip() for p in phrases.values()):
        raise _SlotError(
            RejectionReason.schema_invalid, "pred", "the tuple has no predicate and no arguments"
        )
    predicate = _element(sentence, "pred", phrases["pred"], item.get("pred_index"), None, split_map)
    near = predicate.span[0] if predicate.span else None
    arguments = []
    for slot in ARGUMENT_SLOTS:
        if phrases[slot].strip() or item.get(f"{slot}_index"):
            element = _element(sentence, slot, phrases[slot], item.get(f"{slot}_index"), near, split_map)
            arguments.append(Argument(text=element.text, span=element.span, role=slot))
    return Extraction(predicate=predicate, arguments=arguments)


def _element(
    sentence: Sentence,
    slot: str,
    phrase: str,
    index: Any,
    near: int | None,
    split_map: list[int | None] | None,
) -> Element:
    field = f"{slot}_index"
    if index is None or index == []:
        text, span = ground_phrase(sentence, phrase, near)  # a phrase without index (1 in Spanish)
        return Element(text=text, span=span)
    if not isinstance(index, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in index):
        raise _SlotError(
            RejectionReason.schema_invalid, field, f"expected [first, last] token indices, got {index!r}"
        )
    if index[0] < 0:  # implicit predicate: [-1, -1] for "<be>", [-2, first, last] for "<be> chilled"
        return Element(text=phrase.strip(), span=None)
    if len(index) != 2:
        raise _SlotError(RejectionReason.schema_invalid, field, f"expected [first, last], got {index!r}")
    first, last = index
    n_tokens = len(sentence.tokens)
    wanted = " ".join(phrase.split())
    candidates = []
    if first <= last < n_tokens:
        candidates.append((first, last + 1))
    if split_map is not None and first <= last < len(split_map):
        mapped = [t for t in split_map[first : last + 1] if t is not None]
        if mapped:
            candidates.append((mapped[0], mapped[-1] + 1))
    if not candidates:
        raise _SlotError(
            RejectionReason.span_out_of_range,
            field,
            f"index {index!r} is out of range for {n_tokens} tokens"
            if first <= last
            else f"index {index!r} has first > last",
        )
    for start, end in candidates:
        if not wanted or " ".join(sentence.tokens[start:end]) == wanted:
            return Element(text=sentence.span_text(start, end), span=(start, end))
    text, span = ground_phrase(sentence, phrase, near if near is not None else first)
    logger.warning(
        "%s: %s %r disagrees with its index %s (%r); kept the phrase%s",
        sentence.id,
        slot,
        phrase,
        index,
        sentence.span_text(*candidates[0]),
        f", grounded at {list(span)}" if span else " ungrounded",
    )
    return Element(text=text, span=span)


def _space_split_map(text: str) -> list[int | None] | None:
    """For text with runs of spaces: position in ``text.strip().split(" ")`` -> whitespace token
    index (``None`` for the empty strings between spaces); ``None`` for regular text."""
    stripped = text.strip()
    if "  " not in stripped or any(ch in stripped for ch in "\t\n\r"):
        return None
    mapping: list[int | None] = []
    token = 0
    for piece in stripped.split(" "):
        mapping.append(token if piece else None)
        token += bool(piece)
    return mapping


# --------------------------------------------------------------------------- JSON scanning


class _JsonError(ValueError):
    def __init__(self, pos: int, detail: str):
        super().__init__(detail)
        self.pos, self.detail = pos, detail


_DECODER = json.JSONDecoder()


def _where(text: str, pos: int, line: int) -> str:
    """``line L, column C``: several Re-OIE2016 files are a single line, so the column matters."""
    return f"line {line}, column {pos - text.rfind(chr(10), 0, pos)}"


def _skip(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    return match.end() if match else pos


def _decode(text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _JsonError(exc.pos, f"malformed JSON: {exc.msg}") from None


def _members(text: str, pos: int, opening: str) -> Iterator[tuple[Any, Any, int]]:
    """``(key, value, value_start)`` for each member of the object (``{``) or array (``[``)
    starting at ``pos``; ``key`` is ``None`` for arrays. Positions give rejections a line."""
    closing = "}" if opening == "{" else "]"
    if text[pos : pos + 1] != opening:
        raise _JsonError(pos, f"expected {opening!r} (a JSON {'object' if opening == '{' else 'array'})")
    pos = _skip(text, pos + 1)
    if text[pos : pos + 1] == closing:
        return
    while True:
        key = None
        if opening == "{":
            key, pos = _decode(text, pos)
            pos = _skip(text, pos)
            if text[pos : pos + 1] != ":":
                raise _JsonError(pos, "expected ':' after an object key")
            pos = _skip(text, pos + 1)
        start = pos
        value, pos = _decode(text, pos)
        yield key, value, start
        pos = _skip(text, pos)
        if text[pos : pos + 1] == ",":
            pos = _skip(text, pos + 1)
        elif text[pos : pos + 1] == closing:
            return
        else:
            raise _JsonError(pos, f"expected ',' or {closing!r}")


def _tuples(text: str, value: list[Any], pos: int) -> Iterator[tuple[Any, int]]:
    """The tuples of an already-decoded list with their start positions (re-scanned only for
    the positions; a list that scans differently falls back to the list's own position)."""
    try:
        scanned = [(item, start) for _, item, start in _members(text, pos, "[")]
    except _JsonError:
        scanned = []
    if len(scanned) != len(value):
        return iter([(item, pos) for item in value])
    return iter(scanned)
