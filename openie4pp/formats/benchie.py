"""BenchIE gold annotations (``benchie_gold_annotations_{en,zh,de}.txt``): fact synsets.

Layout (per sentence, blank line between sentences)::

    sent_id:1<TAB>He served as the first Prime Minister of Australia ...
    1--> Cluster 1:
    He --> served as --> [the] [first] Prime Minister [of Australia]
    He --> served --> as [the] [first] Prime Minister [of Australia]
    1--> Cluster 2:
    ...

A *cluster* is a fact synset: any one of its triples, with any subset of its ``[optional]``
chunks dropped, counts as extracting the fact. The BenchIE scorer therefore needs, per
sentence id, the clusters in order and each triple's three slots with their optional
chunks. :class:`BenchIESentence` keeps exactly that; its slots are
:class:`~openie4pp.formats.benchie_slots.BenchIESlot` values.

The files have a few slips; parsing is lenient where the intent is clear and says so:

* inside a slot, a stray ``]``, an unclosed ``[`` and brackets glued to a word are read as
  :mod:`openie4pp.formats.benchie_slots` explains;
* a cluster header with a wrong sentence number or spacing (``14-> Cluster 6:``) is still a
  header, as in the original scorer;
* a line that is none of sentence, header or triple (``2 0 6 :`` in zh) is rejected and
  starts a new cluster with ``cluster_id=None``, so the triples after it are not merged into
  the preceding, different fact.

Sentences with no cluster (4 en, 2 zh, 3 de) are kept: a system's extractions there are
false positives the scorer must see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import Field, model_validator

from openie4pp.formats.benchie_slots import (
    MAX_VARIANTS,
    BenchIEChunk,
    BenchIEModel,
    BenchIESlot,
    BenchIETriple,
    parse_slot,
    realise,
)
from openie4pp.formats.common import (
    build_record,
    check_language,
    extraction_from_phrases,
    read_lines,
    reject,
    sentence_id,
    sentence_or_rejection,
)
from openie4pp.schema import Extraction, Record, Rejection, RejectionReason, check_lang
from openie4pp.text import primary_subtag

__all__ = [  # the slot models are re-exported: one import for a BenchIE file
    "MAX_VARIANTS", "PRETOKENIZED", "BenchIEChunk", "BenchIESentence", "BenchIESlot", "BenchIETriple",
    "FactSynset", "benchie_to_records", "convert", "infer_lang", "parse_benchie", "parse_slot", "realise",
]

_SENTENCE = re.compile(r"^sent_id:\s*(\S+)\t(.*)$")
_CLUSTER = re.compile(r"Cluster\s*(\d+)")
_SEPARATOR = " --> "


class FactSynset(BenchIEModel):
    """A BenchIE cluster: alternative triples for one fact."""

    cluster_id: int | None
    """The number in ``N--> Cluster K:``; ``None`` when the header line was unreadable."""
    triples: list[BenchIETriple]
    line: int | None = None


class BenchIESentence(BenchIEModel):
    sent_id: str
    """As written after ``sent_id:`` (the scorer keys sentences by this string)."""
    lang: str
    text: str = Field(min_length=1)
    clusters: list[FactSynset]
    line: int | None = None

    @model_validator(mode="after")
    def _lang(self) -> BenchIESentence:
        check_lang(self.lang)
        return self


# --------------------------------------------------------------------------- parsing


def infer_lang(path: Path) -> str:
    """``zh`` from ``benchie_gold_annotations_zh.txt``; English when no language is named."""
    match = re.search(r"[_\-.]([a-z]{2,3}(?:-[A-Za-z]{2,4})?)$", path.stem)
    return match.group(1) if match else "en"


def parse_benchie(path: Path, lang: str | None = None) -> Iterator[BenchIESentence | Rejection]:
    """The sentences of a BenchIE gold file, in file order, with rejections for unreadable lines."""
    lang = lang or infer_lang(path)
    bad_lang = check_language(lang, file=path)
    if bad_lang:
        yield bad_lang
        return
    current: BenchIESentence | None = None
    seen: set[str] = set()
    for number, line in enumerate(read_lines(path), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if "sent_id:" in stripped:
            if current is not None:
                yield current
            current = None
            match = _SENTENCE.match(stripped)
            if not match or not match.group(2).strip():
                yield reject(
                    RejectionReason.schema_invalid,
                    "expected 'sent_id:N<TAB>sentence'",
                    file=path,
                    line=number,
                    input=line,
                    field="sentence",
                )
            elif match.group(1) in seen:
                yield reject(
                    RejectionReason.duplicate,
                    f"sent_id {match.group(1)} occurs twice",
                    file=path,
                    line=number,
                    input=line,
                    field="sent_id",
                )
            else:
                seen.add(match.group(1))
                current = BenchIESentence(
                    sent_id=match.group(1), lang=lang, text=match.group(2).strip(), clusters=[], line=number
                )
            continue
        if current is None:
            yield reject(
                RejectionReason.schema_invalid,
                "annotation outside a (readable) sentence",
                file=path,
                line=number,
                input=line,
            )
            continue
        if _SEPARATOR in stripped:
            parts = stripped.split(_SEPARATOR)
            if len(parts) != 3:
                yield reject(
                    RejectionReason.schema_invalid,
                    f"a triple has 3 parts separated by '-->', found {len(parts)}",
                    file=path,
                    line=number,
                    input=line,
                    field="triple",
                )
                continue
            triple = BenchIETriple.model_construct(  # parts built by the parser: nothing to re-check
                subject=BenchIESlot.from_raw(parts[0]),
                relation=BenchIESlot.from_raw(parts[1]),
                object=BenchIESlot.from_raw(parts[2]),
                line=number,
            )
            if not current.clusters:
                current.clusters.append(FactSynset(cluster_id=None, triples=[], line=number))
            current.clusters[-1].triples.append(triple)
        elif "Cluster" in stripped:
            match = _CLUSTER.search(stripped)
            current.clusters.append(
                FactSynset(cluster_id=int(match.group(1)) if match else None, triples=[], line=number)
            )
        else:
            yield reject(
                RejectionReason.schema_invalid,
                "neither a sentence, a cluster header nor a triple; the triples after it form a new cluster",
                file=path,
                line=number,
                input=line,
                field="cluster",
            )
            current.clusters.append(FactSynset(cluster_id=None, triples=[], line=number))
    if current is not None:
        yield current


# --------------------------------------------------------------------------- records

PRETOKENIZED = {"en": True, "zh": True}
"""Languages whose BenchIE sentences are whitespace-tokenised (zh: one character per token).
German sentences are plain text (``Australien.``), so they get the word tokeniser, which
separates punctuation and lets ``Australien`` ground."""


def benchie_to_records(
    sentences: Iterable[BenchIESentence | Rejection],
    dataset: str,
    pretokenized: bool | None = None,
    file: Path | str = "<benchie>",
) -> Iterator[Record | Rejection]:
    """One record per sentence, one extraction per cluster: the cluster's first triple with its
    optional chunks included (``arg0`` subject, ``arg1`` object), grounded where contiguous.

    Record ids number sentences 1.. in file order (BenchIE's ``sent_id`` is the same number in
    the shipped files). Rejections passed in are passed through; a cluster without triples
    gives no extraction. ``file`` names the source in rejections.
    """
    index = 0
    for item in sentences:
        if isinstance(item, Rejection):
            yield item
            continue
        index += 1
        tokens_by_space = (
            PRETOKENIZED.get(primary_subtag(item.lang), False) if pretokenized is None else pretokenized
        )
        sentence = sentence_or_rejection(
            item.text,
            item.lang,
            sentence_id(dataset, index),
            file=file,
            line=item.line,
            pretokenized=tokens_by_space,
        )
        if isinstance(sentence, Rejection):
            yield sentence
            continue
        extractions: list[Extraction] = []
        for cluster in item.clusters:
            if cluster.triples:
                subject, relation, obj = cluster.triples[0].full()
                extractions.append(extraction_from_phrases(sentence, relation, [subject, obj]))
        yield build_record(sentence, extractions, dataset, file=file, line=item.line, input=item.text)


def convert(path: Path, lang: str | None = None, dataset: str | None = None) -> Iterator[Record | Rejection]:
    """Registry entry point: ``benchie-<lang>`` records, language from the file name."""
    lang = lang or infer_lang(path)
    return benchie_to_records(parse_benchie(path, lang), dataset or f"benchie-{lang}", file=path)
