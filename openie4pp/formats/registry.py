"""Which converter reads which benchmark format, plus the small pieces every converter shares.

The CLI (``openie4pp convert --from FORMAT IN --out DIR``) only needs :data:`CONVERTERS` (or
:func:`get_converter`) and :class:`ConversionStats`: every converter has the same signature,
``convert(path, lang, dataset) -> Iterator[Record | Rejection]``, and infers the language
and dataset name from the file name when they are not given.

Converters are imported lazily, so listing the formats (``--help``) costs nothing and a
broken optional reader cannot stop the others from loading.

The helpers below (:func:`ground_phrase`, :func:`reject`, :func:`build_record`,
:func:`read_lines`) live here rather than in one converter so that every reader reports
problems in the same shape: a :class:`~openie4pp.schema.Rejection` naming file, line and
field, never an exception for a bad row.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import ValidationError

from openie4pp.grounding import Grounded, ground
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
    check_lang,
)

Converter = Callable[[Path, str | None, str | None], Iterator[Record | Rejection]]
"""``convert(path, lang, dataset)``: records and rejections, in file order of sentences."""


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FormatInfo:
    """A benchmark format: its CLI name, the module that reads it and a line for ``--help``."""

    name: str
    module: str
    description: str


FORMATS: Mapping[str, FormatInfo] = MappingProxyType(
    {
        info.name: info
        for info in (
            FormatInfo(
                "carb",
                "openie4pp.formats.carb",
                "CaRB gold TSV (sentence, relation, arg1, arg2...); reads sentences_<split>.txt beside it",
            ),
            FormatInfo(
                "re-oie2016",
                "openie4pp.formats.reoie2016",
                "Re-OIE2016 JSON (en/es/pt, n-ary or -Binary) with inclusive token indices",
            ),
            FormatInfo(
                "oie2016-conll",
                "openie4pp.formats.oie2016",
                "OIE2016 CoNLL (word rows with P/A0..An BIO labels, one run per tuple)",
            ),
            FormatInfo(
                "oie2016-tab",
                "openie4pp.formats.oie2016",
                "OIE2016 tab format (sentence, predicate head, predicate phrase, arg0, arg1...)",
            ),
            FormatInfo(
                "benchie",
                "openie4pp.formats.benchie",
                "BenchIE gold annotations (fact synsets of triples with [optional] tokens); en/zh/de",
            ),
        )
    }
)

_ENTRY_POINTS = {"oie2016-conll": "convert_conll", "oie2016-tab": "convert_tab"}


def _lazy(info: FormatInfo) -> Converter:
    def convert(
        path: Path, lang: str | None = None, dataset: str | None = None
    ) -> Iterator[Record | Rejection]:
        module = importlib.import_module(info.module)
        function: Converter = getattr(module, _ENTRY_POINTS.get(info.name, "convert"))
        return function(Path(path), lang, dataset)

    convert.__name__ = f"convert_{info.name.replace('-', '_')}"
    convert.__doc__ = info.description
    return convert


CONVERTERS: Mapping[str, Converter] = MappingProxyType({name: _lazy(info) for name, info in FORMATS.items()})
"""Format name -> ``convert(path, lang, dataset)``."""


def get_converter(name: str) -> Converter:
    """The converter for ``name``; a ``ValueError`` listing the known formats otherwise."""
    try:
        return CONVERTERS[name]
    except KeyError:
        known = ", ".join(sorted(CONVERTERS))
        raise ValueError(f"unknown format {name!r} (known formats: {known})") from None


def convert(
    format_name: str, path: Path | str, lang: str | None = None, dataset: str | None = None
) -> Iterator[Record | Rejection]:
    """Convert ``path`` read as ``format_name``; see :data:`CONVERTERS`."""
    return get_converter(format_name)(Path(path), lang, dataset)


# --------------------------------------------------------------------------- statistics

T = TypeVar("T", bound="Record | Rejection")


@dataclass
class ConversionStats:
    """Counts over a converter's output, for the CLI summary and for tests.

    Gold benchmarks contain phrases that are not contiguous in the sentence, so
    ``ungrounded_elements`` is expected to be non-zero; a jump in it after a change to
    grounding or tokenisation is the signal to look for.
    """

    records: int = 0
    empty_records: int = 0
    extractions: int = 0
    grounded_elements: int = 0
    ungrounded_elements: int = 0
    rejections: Counter[str] = field(default_factory=Counter)

    def add(self, item: Record | Rejection) -> None:
        if isinstance(item, Rejection):
            self.rejections[item.reason.value] += 1
            return
        self.records += 1
        if not item.extractions:
            self.empty_records += 1
        self.extractions += len(item.extractions)
        for extraction in item.extractions:
            for element in (extraction.predicate, *extraction.arguments):
                if element.span is None:
                    self.ungrounded_elements += 1
                else:
                    self.grounded_elements += 1

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """Pass ``items`` through unchanged, counting them on the way (for streaming writers)."""
        for item in items:
            self.add(item)
            yield item

    @property
    def total_rejections(self) -> int:
        return sum(self.rejections.values())

    @property
    def grounded_fraction(self) -> float:
        total = self.grounded_elements + self.ungrounded_elements
        return self.grounded_elements / total if total else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "empty_records": self.empty_records,
            "extractions": self.extractions,
            "grounded_elements": self.grounded_elements,
            "ungrounded_elements": self.ungrounded_elements,
            "rejections": dict(sorted(self.rejections.items())),
        }

    def __str__(self) -> str:
        rejected = ", ".join(f"{reason}={n}" for reason, n in sorted(self.rejections.items())) or "none"
        return (
            f"{self.records} records ({self.empty_records} without extractions), "
            f"{self.extractions} extractions, {self.grounded_elements} grounded / "
            f"{self.ungrounded_elements} ungrounded elements, rejections: {rejected}"
        )


# --------------------------------------------------------------------------- shared helpers


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
        return reject(
            RejectionReason.schema_invalid,
            f"record does not validate: {_first_error(exc)}",
            file=file,
            line=line,
            input=input,
            sentence_id=sentence.id,
        )


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
        return reject(
            RejectionReason.schema_invalid,
            f"sentence does not validate: {_first_error(exc)}",
            file=file,
            line=line,
            input=text,
            field=field,
            sentence_id=sentence_id,
        )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ()))
    return f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", ""))


def check_language(lang: str, *, file: Path | str) -> Rejection | None:
    """A rejection if ``lang`` is not a BCP-47 tag: converters yield it instead of raising, so a
    batch conversion reports a bad ``--lang`` like any other problem."""
    try:
        check_lang(lang)
    except ValueError as exc:
        return reject(
            RejectionReason.unknown_language, str(exc), file=file, line=None, input=lang, field="lang"
        )
    return None


def sentence_id(dataset: str, index: int) -> str:
    """The stable id of the ``index``-th (1-based) sentence of ``dataset``: ``carb-test-00001``."""
    return f"{dataset}-{index:05d}"
