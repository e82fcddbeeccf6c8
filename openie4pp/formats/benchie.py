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
chunks. :class:`BenchIESentence` keeps exactly that, and each :class:`BenchIESlot` keeps its
``raw`` annotation verbatim, so a scorer can reproduce the original tool bit for bit while
ordinary code uses the parsed ``chunks``.

The files have a few slips; parsing is lenient where the intent is clear and says so:

* a stray ``]`` (``for [as little as] $ 89]``) is dropped, an unclosed ``[`` runs to the end
  of the slot, and a nested ``[`` is ignored; brackets glued to a word (``Crozier[,]``,
  ``[eine]Petition``) make a chunk glued to its neighbour, realised without a space;
* a cluster header with a wrong sentence number or spacing (``14-> Cluster 6:``) is still a
  header, as in the original scorer;
* a line that is none of sentence, header or triple (``2 0 6 :`` in zh) is rejected and
  starts a new cluster with ``cluster_id=None``, so the triples after it are not merged into
  the preceding, different fact.

Sentences with no cluster (4 en, 2 zh, 3 de) are kept: a system's extractions there are
false positives the scorer must see.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import jsonlines
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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

_SENTENCE = re.compile(r"^sent_id:\s*(\S+)\t(.*)$")
_CLUSTER = re.compile(r"Cluster\s*(\d+)")
_SEPARATOR = " --> "
_BRACKET_OR_TEXT = re.compile(r"[\[\]]|[^\[\]]+")
MAX_VARIANTS = 4096
"""Cap on :meth:`BenchIETriple.variants` (a slot with 12 optional chunks has 4,096 alone)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BenchIEChunk(_Model):
    """A run of words that is kept or dropped as a whole: a bracket group or the text between two.

    Frozen, so that parsed chunks can be shared between the many slots with the same annotation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1)
    optional: bool = False
    glued: bool = False
    """No space between this chunk and the previous one in the annotation (``Crozier[,]``)."""


def parse_slot(raw: str) -> list[BenchIEChunk]:
    """Split an annotated slot into chunks; see the module docstring for the lenient cases."""
    return list(_parse_slot(raw))


@lru_cache(maxsize=65536)
def _parse_slot(raw: str) -> tuple[BenchIEChunk, ...]:
    chunks: list[BenchIEChunk] = []
    buffer: list[str] = []
    optional = False
    space_before = False  # whitespace since the last chunk's last character

    def flush(as_optional: bool) -> None:
        nonlocal space_before
        text = "".join(buffer)
        buffer.clear()
        if not text.strip():
            space_before = space_before or bool(text)
            return
        glued = bool(chunks) and not space_before and not text[0].isspace()
        # built without re-validation: the text is non-empty by construction (hot path)
        chunks.append(
            BenchIEChunk.model_construct(text=" ".join(text.split()), optional=as_optional, glued=glued)
        )
        space_before = text[-1].isspace()

    for match in _BRACKET_OR_TEXT.finditer(raw):
        piece = match.group()
        if piece == "[":
            if not optional:
                flush(False)
                optional = True
        elif piece == "]":
            if optional:
                flush(True)
                optional = False
        else:
            buffer.append(piece)
    flush(optional)
    return tuple(chunks)


def _key(chunk: BenchIEChunk) -> tuple[str, bool, bool]:
    return chunk.text, chunk.optional, chunk.glued


def realise(chunks: list[BenchIEChunk], keep: Iterable[bool] | None = None) -> str:
    """The slot's text with the chunks marked in ``keep`` (default: all), brackets removed.

    Spacing between two kept chunks is a space unless they, and every dropped chunk between
    them, were glued: ``x [y]z`` without ``y`` is ``x z``, ``Crozier[,]`` without ``,`` is
    ``Crozier``.
    """
    parts: list[str] = []
    glue = True
    for chunk, kept in zip(chunks, keep if keep is not None else itertools.repeat(True), strict=False):
        glue = glue and chunk.glued
        if kept:
            if parts:
                parts.append("" if glue else " ")
            parts.append(chunk.text)
            glue = True
    return "".join(parts)


class BenchIESlot(_Model):
    """One part of a triple (subject, relation or object)."""

    raw: str
    """The annotation verbatim, brackets included: what the original BenchIE scorer reads."""
    chunks: list[BenchIEChunk]

    @classmethod
    def from_raw(cls, raw: str) -> BenchIESlot:
        return cls.model_construct(raw=raw, chunks=parse_slot(raw))  # consistent by construction

    @model_validator(mode="after")
    def _chunks_match_raw(self) -> BenchIESlot:
        if [_key(c) for c in self.chunks] != [_key(c) for c in parse_slot(self.raw)]:
            raise ValueError(f"chunks do not match the raw annotation {self.raw!r}")
        return self

    @property
    def full(self) -> str:
        """Every chunk, optional ones included."""
        return realise(self.chunks)

    @property
    def minimal(self) -> str:
        """Required chunks only."""
        return realise(self.chunks, [not c.optional for c in self.chunks])

    def variants(self) -> list[str]:
        """Every realisation (each subset of optional chunks dropped), longest first, no repeats."""
        optional = [i for i, c in enumerate(self.chunks) if c.optional]
        seen: dict[str, None] = {}
        for dropped_count in range(len(optional) + 1):
            for dropped in itertools.combinations(optional, dropped_count):
                seen.setdefault(realise(self.chunks, [i not in dropped for i in range(len(self.chunks))]))
                if len(seen) >= MAX_VARIANTS:
                    return list(seen)
        return list(seen)


class BenchIETriple(_Model):
    subject: BenchIESlot
    relation: BenchIESlot
    object: BenchIESlot
    line: int | None = None

    @property
    def parts(self) -> tuple[BenchIESlot, BenchIESlot, BenchIESlot]:
        return self.subject, self.relation, self.object

    def full(self) -> tuple[str, str, str]:
        s, r, o = self.parts
        return s.full, r.full, o.full

    def variants(self) -> list[tuple[str, str, str]]:
        """Every ``(subject, relation, object)`` realisation the scorer accepts (capped at
        :data:`MAX_VARIANTS`)."""
        product = itertools.product(self.subject.variants(), self.relation.variants(), self.object.variants())
        return list(itertools.islice(product, MAX_VARIANTS))


class FactSynset(_Model):
    """A BenchIE cluster: alternative triples for one fact."""

    cluster_id: int | None
    """The number in ``N--> Cluster K:``; ``None`` when the header line was unreadable."""
    triples: list[BenchIETriple]
    line: int | None = None


class BenchIESentence(_Model):
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


def write_benchie_jsonl(sentences: Iterable[BenchIESentence], path: Path) -> int:
    """Write one sentence per line; returns how many."""
    count = 0
    with jsonlines.open(path, mode="w", compact=True) as writer:
        for sentence in sentences:
            writer.write(sentence.model_dump(mode="json"))
            count += 1
    return count


def read_benchie_jsonl(path: Path) -> Iterator[BenchIESentence | Rejection]:
    """Read what :func:`write_benchie_jsonl` wrote; a bad line is a rejection, not an exception."""
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            yield BenchIESentence.model_validate_json(line)
        except ValidationError as exc:
            malformed = any(e.get("type") == "json_invalid" for e in exc.errors())
            yield reject(
                RejectionReason.malformed_json if malformed else RejectionReason.schema_invalid,
                str(exc.errors()[0].get("msg", exc)),
                file=path,
                line=number,
                input=line,
            )


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
            PRETOKENIZED.get(item.lang.split("-")[0], False) if pretokenized is None else pretokenized
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
