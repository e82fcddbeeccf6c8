"""Pieces every benchmark converter shares, so that each reports problems in the same shape: a
:class:`~openie4pp.schema.Rejection` naming file, line and field, never an exception for a bad row."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from openie4pp.grounding import Grounded, ground
from openie4pp.jsonl import rejection_for
from openie4pp.schema import (
    Argument,
    Element,
    Extraction,
    Provenance,
    Record,
    Rejection,
    RejectionReason,
    Sentence,
    Source,
    canonical_lang,
)


def read_lines(path: Path) -> list[str]:
    """The file's lines without line ends. Splits on ``\\n`` only: benchmark sentences may hold
    characters (``\\x85``, ``\\u2028``) that :meth:`str.splitlines` would treat as line breaks,
    which would shift every line number after them."""
    text = path.read_text(encoding="utf-8-sig")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def reject(
    reason: RejectionReason,
    detail: str,
    *,
    file: Path | str,
    line: int | None,
    input: str,
    field: str | None = None,
    sentence_id: str | None = None,
) -> Rejection:
    """A conversion-stage rejection; ``input`` is the offending raw text, verbatim."""
    return Rejection(
        stage="convert",
        reason=reason,
        detail=detail,
        input=input,
        sentence_id=sentence_id,
        file=str(file),
        line=line,
        field=field,
    )


def ground_phrase(
    sentence: Sentence, phrase: str, near: int | None = None
) -> tuple[str, tuple[int, int] | None]:
    """``(text, span)`` for a benchmark phrase: the sentence's own text and span when the phrase
    grounds, else the stripped phrase with no span (gold records may hold free text)."""
    stripped = phrase.strip()
    if not stripped:
        return stripped, None
    found = ground(sentence, stripped, near=near)
    if isinstance(found, Grounded):
        return found.text, found.span
    return stripped, None


def extraction_from_phrases(
    sentence: Sentence, predicate: str, arguments: list[str], predicate_near: int | None = None
) -> Extraction:
    """An extraction from phrase-only benchmarks (CaRB, OIE2016 tab, BenchIE).

    The predicate is grounded first (closest to ``predicate_near`` when the format gives a
    hint such as OIE2016's predicate head); arguments are grounded nearest the predicate,
    which picks the right ``it`` or ``the company`` when a phrase occurs more than once.
    ``arguments`` are positional (``arg0`` is the subject); empty ones are skipped but keep
    their position, so ``[subj, "", "C: ..."]`` gives roles ``arg0`` and ``arg2``.
    """
    text, span = ground_phrase(sentence, predicate, near=predicate_near)
    near = span[0] if span else predicate_near
    built: list[Argument] = []
    for position, phrase in enumerate(arguments):
        if phrase.strip():
            arg_text, arg_span = ground_phrase(sentence, phrase, near=near)
            built.append(Argument(text=arg_text, span=arg_span, role=f"arg{position}"))
    return Extraction(predicate=Element(text=text, span=span), arguments=built)


def make_sentence(text: str, lang: str, sentence_id: str, pretokenized: bool = True) -> Sentence:
    """A benchmark sentence: whitespace tokens (the benchmarks' indices count them), outer
    whitespace dropped (it carries no tokens and readers such as CaRB's strip it too)."""
    return Sentence.from_text(text.strip(), lang, id=sentence_id, pretokenized=pretokenized)


def build_record(
    sentence: Sentence,
    extractions: list[Extraction],
    dataset: str,
    *,
    file: Path | str,
    line: int | None,
    input: str,
) -> Record | Rejection:
    """A gold record, or a rejection if it does not validate (which would be a converter bug
    or an inconsistent span: either way the caller keeps going)."""
    try:
        return Record(
            sentence=sentence,
            extractions=extractions,
            provenance=Provenance(source=Source.gold, dataset=dataset),
        )
    except ValidationError as exc:
        rejection = rejection_for(exc, input, file, line, stage="convert")
        rejection.sentence_id = sentence.id
        return rejection


def sentence_or_rejection(
    text: str,
    lang: str,
    sentence_id: str,
    *,
    file: Path | str,
    line: int | None,
    field: str | None = "sentence",
    pretokenized: bool = True,
) -> Sentence | Rejection:
    """:func:`make_sentence`, with an empty or otherwise invalid sentence as a rejection."""
    if not text.strip():
        return reject(
            RejectionReason.empty_sentence,
            "the sentence is empty",
            file=file,
            line=line,
            input=text,
            field=field,
        )
    try:
        return make_sentence(text, lang, sentence_id, pretokenized=pretokenized)
    except ValidationError as exc:
        rejection = rejection_for(exc, text, file, line, stage="convert")
        rejection.field = f"{field}.{rejection.field}" if field and rejection.field else field
        rejection.sentence_id = sentence_id
        return rejection


def check_language(lang: str, *, file: Path | str) -> Rejection | None:
    """A rejection if ``lang`` is not a usable BCP-47 tag (:func:`~openie4pp.schema.canonical_lang`
    also refuses ``und`` and private-use tags): converters yield it instead of raising, so a batch
    conversion reports a bad language like any other problem."""
    try:
        canonical_lang(lang)
    except ValueError as exc:
        return reject(
            RejectionReason.unknown_language, str(exc), file=file, line=None, input=lang, field="lang"
        )
    return None


def sentence_id(dataset: str, index: int) -> str:
    """The stable id of the ``index``-th (1-based) sentence of ``dataset``: ``carb-test-00001``."""
    return f"{dataset}-{index:05d}"
