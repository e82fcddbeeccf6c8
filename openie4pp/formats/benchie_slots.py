"""The slots of a BenchIE gold triple: ``[optional]`` chunks, their realisations and variants.

A slot such as ``[the] [first] Prime Minister [of Australia]`` is parsed into chunks, each kept or
dropped as a whole; any subset of the optional ones may be dropped. Parsing is lenient where the
annotators' intent is clear:

* a stray ``]`` (``for [as little as] $ 89]``) is dropped, an unclosed ``[`` runs to the end
  of the slot, and a nested ``[`` is ignored; brackets glued to a word (``Crozier[,]``,
  ``[eine]Petition``) make a chunk glued to its neighbour, realised without a space;

Each :class:`BenchIESlot` keeps its ``raw`` annotation verbatim, so a scorer can reproduce the
original tool bit for bit while ordinary code uses the parsed ``chunks``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, model_validator

_BRACKET_OR_TEXT = re.compile(r"[\[\]]|[^\[\]]+")
MAX_VARIANTS = 4096
"""Cap on :meth:`BenchIETriple.variants` (a slot with 12 optional chunks has 4,096 alone)."""


class BenchIEModel(BaseModel):
    """Unknown fields are errors in every BenchIE model."""

    model_config = ConfigDict(extra="forbid")


class BenchIEChunk(BenchIEModel):
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


class BenchIESlot(BenchIEModel):
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


class BenchIETriple(BenchIEModel):
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
