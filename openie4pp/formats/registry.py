"""Which converter reads which benchmark format, plus the small pieces every converter shares.

The CLI (``openie4pp convert --from FORMAT IN --out DIR``) only needs :data:`CONVERTERS` (or
:func:`get_converter`) and :class:`ConversionStats`: every converter has the same signature,
``convert(path, lang, dataset) -> Iterator[Record | Rejection]``, and infers the language
and dataset name from the file name when they are not given.

Converters are imported lazily, so listing the formats (``--help``) costs nothing and a
broken optional reader cannot stop the others from loading.

The pieces the converters share (grounding a phrase, building a record, rejecting a row) are
in :mod:`openie4pp.formats.common`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from openie4pp.schema import Record, Rejection, canonical_lang

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
            FormatInfo(
                "spanoie",
                "openie4pp.formats.spanoie",
                "SpanOIE/Multi2OIE structured_data.json (a JSON list, en) or the CrossOIE OpenIE4++ release "
                "OpenIE4_train_LANG.json (JSON lines); inclusive token positions",
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
    """Convert ``path`` read as ``format_name``; see :data:`CONVERTERS`.

    A given ``lang`` is canonicalised first (``EN`` -> ``en``), so that it cannot become a second
    shard folder beside ``en``; one that is no usable tag is passed on unchanged for the converter
    to report as an ``unknown_language`` rejection.
    """
    if lang is not None:
        with contextlib.suppress(ValueError):
            lang = canonical_lang(lang)
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
