"""SpanOIE / Multi2OIE ``structured_data.json`` and the OpenIE4++ release (``OpenIE4_train_{lang}.json``).

One format name, ``--from spanoie``, for both files MT4CrossOIE trained on, told apart by the first
non-space byte (``[``: one JSON list; else JSON lines). A sentence is ``{"sentence", "tuples": [{"arg0",
"relation", "args", "arg0_pos", "rel_pos", "args_pos", "score"?, "context"?}]}``; positions are
*inclusive* ``[first, last]`` token indices:

* **list** (SpanOIE's English OpenIE4 extractions; ``source: gold``, ``en`` whatever the file's name
  unless ``--lang`` is given, dataset ``spanoie-structured``): the words of the sentence split on
  single spaces, ``\\xa0`` counting as one, as Multi2OIE reads them (``sentence.replace("\\xa0", " ")
  .split(" ")``). Empty words (two spaces) count but are no tokens.
* **lines** (``CrossOIE-Dataset``, translated from English; ``source: llm``, ``mode: project``,
  ``source_lang: en``, dataset ``crossoie-openie4pp``, the language from a file name of the release's
  pattern only, ``OpenIE4_train_de.json``: ``de`` (any case); another name is an ``unknown_language``
  rejection asking for ``--lang``, which always wins): ``transformers.BasicTokenizer(
  do_lower_case=False)`` tokens (punctuation split off, one token per CJK character), computed by
  :func:`basic_tokenize` with character offsets, without ``transformers``. ``sentence_tokenized`` (a
  string of space-separated tokens, or a list), when present, must equal them (after BasicTokenizer's
  NFC and control-character removal), or the sentence is rejected: its positions could index either.

Sentence tokens are exactly these words or tokens, so spans carry over one to one (the input file's
name is in the shard folder's manifest; provenance has no field for it). Decisions:

* a phrase is compared with the tokens at its position (spacing ignored); when they differ the tuple
  is **rejected** (``span_text_mismatch``): which one is wrong is unknown, and a re-read phrase would
  no longer be the annotation. A kept element's text is the sentence's own text at its span;
* ``context`` has no position and is dropped; ``score`` becomes the confidence (default 1.0);
* a sentence keeps its good tuples, each bad tuple is one rejection; ``"tuples": []`` gives a record
  without extractions, a sentence whose every tuple was rejected a ``no_extractions`` rejection.

The two levels never share a reason, so ``convert``'s reason counts give exact numbers (and a closing
warning states both). Tuple-level (field ``tuples[i].KEY``): ``span_out_of_range`` (a ``-1``,
SpanOIE's mark of a malformed tuple; past the last token; first > last; only empty words),
``span_text_mismatch`` (phrase differs from its span), ``ungrounded`` (the tuple does not pair every
phrase with a ``[first, last]`` position: not an object, a phrase or position missing or misshapen,
``args``/``args_pos`` lengths differ, a score not in [0, 1]). Sentence-level: ``malformed_json`` (not
JSON, a torn last line, a torn last list element, a list without its ``]``; after a syntax error in
the list, reading resumes at the next ``,`` ``{`` that starts a sentence object, and the span skipped
is one rejection naming the line it starts on and its length in characters), ``malformed_text`` (not
UTF-8: a line, or in the list the one sentence holding the bad byte; also a lone surrogate escape
such as ``\\udce9``), ``schema_invalid`` (not an object, ``sentence``/``tuples`` missing or
mistyped, a disagreeing ``sentence_tokenized``), ``empty_sentence``, ``no_extractions``. Rejections
name file, line (where the sentence starts), field and sentence id (``spanoie-structured-en-00042``:
the 42nd sentence, the only pointer into a one-line file).

Streaming: the list is read by :func:`iter_json_array` (``ijson`` is no dependency and not
installed), lines one at a time; memory stays bounded by one element (also while skipping a
malformed span).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError

from openie4pp.formats.basic_tokens import basic_token_text, basic_tokenize, basic_tokens
from openie4pp.formats.common import check_language, reject, sentence_id
from openie4pp.jsonl import BOM, rejection_for
from openie4pp.jsonstream import JsonStreamError, iter_json_array
from openie4pp.schema import (
    Record,
    Rejection,
    RejectionReason,
    canonical_lang,
    clip_input,
    is_blank,
)

logger = logging.getLogger(__name__)
_R = RejectionReason
LIST_DATASET, LINES_DATASET = "spanoie-structured", "crossoie-openie4pp"
TUPLE_REASONS = frozenset({_R.span_out_of_range, _R.span_text_mismatch, _R.ungrounded})
"""The reasons of tuple-level rejections; every other reason is sentence-level."""
_LANG_IN_NAME = re.compile(r"openie4_train_([a-z]{2,3}(?:-[a-z0-9]{1,8})*)\.json", re.IGNORECASE)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
"""A lone surrogate: an undecodable byte (read with ``surrogateescape``) or a ``\\udXXX`` escape."""


def is_tuple_rejection(rejection: Rejection) -> bool:
    """Whether ``rejection`` is about one tuple (the sentence's record exists without it)."""
    return rejection.reason in TUPLE_REASONS


# --------------------------------------------------------------------------- tokenisation


def space_words(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every word of ``text`` split on ``" "`` and ``"\\xa0"``, empty ones included."""
    spans, start = [], 0
    for word in text.replace("\xa0", " ").split(" "):
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return spans


def _iter_lines(handle: BinaryIO) -> Iterator[tuple[int, str, Any, str | None]]:
    """``(line, text, value, None)`` per non-blank line, or ``(line, text, None, "reason:detail")`` for
    a line that is no JSON value (a torn last line: one without its newline)."""
    for number, raw in enumerate(handle, start=1):
        raw = raw[len(BOM) :] if number == 1 and raw.startswith(BOM) else raw
        body = raw.rstrip(b"\r\n")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, body.decode("utf-8", "replace"), None, f"malformed_text:not UTF-8 at {exc.start}"
            continue
        if not text.strip():
            continue
        try:
            yield number, text, json.loads(text), None
        except ValueError as exc:
            torn = "" if raw.endswith(b"\n") else "a torn last line (the file is truncated): "
            yield number, text, None, f"malformed_json:{torn}{exc}"


# --------------------------------------------------------------------------- conversion


@dataclass
class _Context:
    path: Path
    lang: str
    dataset: str
    basic: bool
    tuples: int = 0
    tuples_rejected: int = 0
    sentences: int = 0
    sentences_rejected: int = 0

    @property
    def provenance(self) -> dict[str, str]:
        if self.basic:  # translated from English OpenIE4 tuples by an LLM
            return {"source": "llm", "dataset": self.dataset, "mode": "project", "source_lang": "en"}
        return {"source": "gold", "dataset": self.dataset}

    def sentence_rejection(self, reason: RejectionReason, detail: str, *, line: int | None, raw: str,
                           key: str | None = None, sid: str | None = None) -> Rejection:
        self.sentences_rejected += 1
        shown = _SURROGATE.sub("\ufffd", clip_input(raw))  # a Rejection holds valid text only
        return reject(reason, detail, file=self.path, line=line, input=shown, field=key, sentence_id=sid)


class _TupleError(ValueError):
    def __init__(self, reason: RejectionReason, key: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.key, self.detail = reason, key, detail


def infer(path: Path) -> str | None:
    """The language of a release file name (``OpenIE4_train_zh.json``: ``zh``, any case), or None:
    other names (``structured_data_new.json``, ``train_set.json``) say nothing about a language."""
    match = _LANG_IN_NAME.fullmatch(path.name)
    try:
        return canonical_lang(match.group(1)) if match else None
    except ValueError:
        return None


def detect_layout(path: Path) -> str:
    """``"list"`` when the first non-space byte (after a BOM) is ``[``, else ``"lines"``."""
    with open(path, "rb") as handle:
        head = handle.read(len(BOM))
        head = b"" if head == BOM else head
        while True:
            stripped = head.lstrip(b" \t\r\n")
            if stripped:
                return "list" if stripped[:1] == b"[" else "lines"
            head = handle.read(1 << 16)
            if not head:
                return "lines"


def convert(path: Path, lang: str | None = None, dataset: str | None = None) -> Iterator[Record | Rejection]:
    """Registry entry point: :func:`read_spanoie`."""
    return read_spanoie(path, lang, dataset)


def read_spanoie(path: Path, lang: str | None = None, dataset: str | None = None, *,
                 chunk_size: int = 1 << 20) -> Iterator[Record | Rejection]:
    """Records and rejections of either layout, in file order (``chunk_size``: the list reader's)."""
    layout = detect_layout(path)
    lang = lang or ("en" if layout == "list" else infer(path))
    if lang is None:
        yield reject(_R.unknown_language, f"cannot tell the language of {path.name!r}: only a release file "
                     "name, OpenIE4_train_LANG.json, names one; pass --lang", file=path, line=None,
                     input=path.name, field="lang")
        return
    bad_lang = check_language(lang, file=path)
    if bad_lang:
        yield bad_lang
        return
    context = _Context(path, lang, dataset or (LIST_DATASET if layout == "list" else LINES_DATASET),
                       basic=layout == "lines")
    if layout == "list":
        # a bad byte becomes a lone surrogate, which rejects its sentence only (malformed_text)
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            for line, value in iter_json_array(handle, chunk_size, restart=_is_sentence):
                if isinstance(value, JsonStreamError):
                    context.sentences += value.element
                    yield context.sentence_rejection(value.reason, value.detail, line=value.line,
                                                     raw=value.excerpt)
                else:
                    yield from _sentence(context, line, value, None)
    else:
        with open(path, "rb") as handle:
            for line, text, value, problem in _iter_lines(handle):
                if problem is None:
                    yield from _sentence(context, line, value, text)
                    continue
                reason, _, detail = problem.partition(":")
                context.sentences += 1
                yield context.sentence_rejection(_R(reason), detail, line=line, raw=text)
    if context.tuples_rejected or context.sentences_rejected:
        logger.warning("%s: %d of %d tuples rejected (tuple-level), %d sentence-level rejections (%d "
                       "sentences read); see rejected.jsonl", path, context.tuples_rejected, context.tuples,
                       context.sentences_rejected, context.sentences)


def _sentence(context: _Context, line: int, value: Any, raw: str | None) -> Iterator[Record | Rejection]:
    context.sentences += 1
    sid = sentence_id(f"{context.dataset}-{context.lang}", context.sentences)

    dumped = json.dumps(value, ensure_ascii=False)

    def verbatim() -> str:
        return raw if raw is not None else dumped

    def fail(reason: RejectionReason, detail: str, key: str | None) -> Rejection:
        return context.sentence_rejection(reason, detail, line=line, raw=verbatim(), key=key, sid=sid)

    bad = _SURROGATE.search(dumped)
    if bad:
        near = dumped[max(bad.start() - 30, 0) : bad.end() + 30]
        yield fail(_R.malformed_text, f"text that is not valid UTF-8 (a byte that is no UTF-8, or a lone "
                   f"surrogate escape): {bad.group()!r} in {near!r}", None)
        return

    text, tuples = (value.get("sentence"), value.get("tuples")) if isinstance(value, dict) else (None, None)
    if not isinstance(value, dict):
        yield fail(_R.schema_invalid, f"expected an object with sentence and tuples, not "
                   f"{type(value).__name__}", None)
        return
    if not isinstance(text, str):
        yield fail(_R.schema_invalid, "sentence is missing or not a string", "sentence")
        return
    if is_blank(text):
        yield fail(_R.empty_sentence, "the sentence is empty", "sentence")
        return
    if not isinstance(tuples, list):
        yield fail(_R.schema_invalid, "tuples is missing or not a list", "tuples")
        return
    if context.basic:
        spans = basic_tokenize(text)
        word_to_token: list[int | None] = list(range(len(spans)))
        problem = _check_tokenized(value.get("sentence_tokenized"), [basic_token_text(text[s:e])
                                                                     for s, e in spans])
        if problem:
            yield fail(_R.schema_invalid, problem, "sentence_tokenized")
            return
    else:
        spans, word_to_token = [], []
        for start, end in space_words(text):
            word_to_token.append(None if _blank(text[start:end]) else len(spans))
            spans += [] if word_to_token[-1] is None else [(start, end)]
    tokens = [text[s:e] for s, e in spans]
    extractions: list[dict[str, Any]] = []
    for number, item in enumerate(tuples):
        context.tuples += 1
        try:
            extractions.append(_extraction(context.basic, text, spans, word_to_token, item))
        except _TupleError as exc:
            context.tuples_rejected += 1
            yield reject(exc.reason, exc.detail, file=context.path, line=line, sentence_id=sid,
                         input=clip_input(json.dumps(item, ensure_ascii=False)),
                         field=f"tuples[{number}]" + (f".{exc.key}" if exc.key else ""))
    if tuples and not extractions:
        yield fail(_R.no_extractions, f"all {len(tuples)} tuples of the sentence were rejected", "tuples")
        return
    sentence = {"id": sid, "lang": context.lang, "text": text, "tokens": tokens, "offsets": spans}
    try:  # validated once, as a whole
        yield Record.model_validate({"sentence": sentence, "extractions": extractions,
                                     "provenance": context.provenance})
    except ValidationError as exc:  # a lone surrogate, no token at all; spans were all checked
        rejection = rejection_for(exc, verbatim(), context.path, line, stage="convert")
        rejection.reason = _R.internal_error if rejection.reason in TUPLE_REASONS else rejection.reason
        rejection.sentence_id = sid
        context.sentences_rejected += 1
        yield rejection


def _is_sentence(value: Any) -> bool:
    """Where the list reader may resume after a syntax error: a sentence object, not a tuple object."""
    return isinstance(value, dict) and "sentence" in value


def _blank(word: str) -> bool:
    """:func:`is_blank`, fast for the ASCII words of the 2.2 GB English file."""
    return not word or word.isspace() or (not word.isascii() and is_blank(word))


def _check_tokenized(given: Any, tokens: list[str]) -> str | None:
    if given is None:
        return None
    given = given.split() if isinstance(given, str) else given
    if not isinstance(given, list) or not all(isinstance(t, str) for t in given):
        return "sentence_tokenized must be a string of space-separated tokens or a list of strings"
    if given == tokens:
        return None
    at = next((i for i, (a, b) in enumerate(zip(given, tokens, strict=False)) if a != b),
              min(len(given), len(tokens)))
    return (f"sentence_tokenized ({len(given)} tokens) differs from BasicTokenizer's tokens of the sentence "
            f"({len(tokens)}) at token {at}: {given[at:at + 1]} vs {tokens[at:at + 1]}")


def _is_position(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(p, int) and not isinstance(p, bool) for p in value))


def _extraction(basic: bool, text: str, spans: list[tuple[int, int]], word_to_token: list[int | None],
                item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _TupleError(_R.ungrounded, "", f"a tuple must be an object, not {type(item).__name__}")
    args, args_pos = item.get("args", []), item.get("args_pos", [])
    if not isinstance(args, list) or not isinstance(args_pos, list) or len(args) != len(args_pos):
        raise _TupleError(_R.ungrounded, "args_pos", "args and args_pos must be lists of the same length")
    slots: list[tuple[str, Any, str, Any]] = [
        ("arg0", item.get("arg0"), "arg0_pos", item.get("arg0_pos")),
        ("relation", item.get("relation"), "rel_pos", item.get("rel_pos"))]
    slots += [(f"args[{j}]", args[j], f"args_pos[{j}]", args_pos[j]) for j in range(len(args))]
    score = item.get("score", 1.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        raise _TupleError(_R.ungrounded, "score", f"score {score!r} is not a number in [0, 1]")
    for key, phrase, pos_key, position in slots:
        if not isinstance(phrase, str):
            raise _TupleError(_R.ungrounded, key, f"{key} is missing or not a string")
        if not _is_position(position):
            raise _TupleError(_R.ungrounded, pos_key, f"{pos_key} {position!r} is not [first, last]")
    for _, _, pos_key, position in slots:  # the file's own mark first
        if -1 in position:
            raise _TupleError(_R.span_out_of_range, pos_key, f"{pos_key} {position} is marked malformed (-1)")
    predicate, subject, *objects = [_element(basic, text, spans, word_to_token, *slot)
                                    for slot in (slots[1], slots[0], *slots[2:])]
    return {"predicate": predicate, "confidence": float(score),
            "arguments": [{**e, "role": f"arg{k}"} for k, e in enumerate([subject, *objects])]}


def _element(basic: bool, text: str, spans: list[tuple[int, int]], word_to_token: list[int | None], key: str,
             phrase: str, pos_key: str, position: list[int]) -> dict[str, Any]:
    first, last = position
    unit = "tokens" if basic else "words"
    if first < 0 or first > last or last >= len(word_to_token):
        raise _TupleError(_R.span_out_of_range, pos_key, f"{pos_key} {position} is not a [first, last] range "
                          f"of the sentence's {len(word_to_token)} {unit}")
    covered = [t for t in word_to_token[first : last + 1] if t is not None]
    if not covered:
        raise _TupleError(_R.span_out_of_range, pos_key, f"{pos_key} {position} covers only empty words")
    start, end = covered[0], covered[-1] + 1
    tokens = [text[s:e] for s, e in spans[start:end]]
    if basic:
        same = basic_tokens(phrase) == [basic_token_text(t) for t in tokens]
    else:
        same = [w for w in phrase.replace("\xa0", " ").split(" ") if not _blank(w)] == tokens
    span_text = text[spans[start][0] : spans[end - 1][1]]
    if not same:
        raise _TupleError(_R.span_text_mismatch, key, f"{key} {phrase!r} differs from the {unit} at "
                          f"{pos_key} {position}: {span_text!r}")
    return {"text": span_text, "span": (start, end)}
