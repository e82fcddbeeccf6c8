"""BenchIE gold files as the original scorer (gkiril/benchie, ``src/``) reads them: fact synsets of triples,
each slot expanded to every surface form its ``[optional]`` tokens allow.

Kept apart from :mod:`openie4pp.formats.benchie` on purpose: that parser reads the annotation leniently
and faithfully for conversion, this one reproduces the original's reading *quirks included* (marked "as
the original does"), because scores are only comparable with published ones if the gold is read the
same way. The scorer is :mod:`openie4pp.eval.benchie`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import NamedTuple

from openie4pp.errors import InputFileError

SLOT_SEPARATOR = " --> "


class GoldTriple(NamedTuple):
    """A gold triple as the surface variants of each slot (every choice of optional tokens)."""

    raw: tuple[frozenset[str], frozenset[str], frozenset[str]]
    stripped: tuple[frozenset[str], frozenset[str], frozenset[str]]


@dataclass
class BenchieGold:
    """Sentences by id (``"1"``..., file order) and, per id, its synsets, each a list of gold triples."""

    sentences: dict[str, str]
    synsets: dict[str, list[list[GoldTriple]]]

    @property
    def n_synsets(self) -> int:
        return sum(len(clusters) for clusters in self.synsets.values())


def _units(slot: str) -> list[str]:
    """Split a gold slot into units: plain tokens and ``[optional groups]``.

    As the original does (``__generate_golden_extractions_from_optional_tokens``): tokens are split on
    single spaces (so double spaces leave empty tokens), a token holding ``[`` but no ``]`` opens a group
    that runs to the next token holding ``]``; the closing token is then looked at again on its own and,
    holding only ``]``, is dropped. An unclosed ``[`` token and a stray ``...]`` token are dropped too.
    """
    tokens = slot.split(" ")
    units: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        opens, closes = "[" in token, "]" in token
        if opens == closes:  # a plain token, or a one-token group such as "[the]"
            units.append(token)
        elif opens:
            end = next((j for j in range(i + 1, len(tokens)) if "]" in tokens[j]), None)
            if end is not None:
                units.append(" ".join(tokens[i : end + 1]))
                i = end  # the original skips one token too few: the closing token is examined again
                continue
        i += 1
    return units


def slot_variants(slot: str) -> frozenset[str]:
    """Every surface form of a gold slot: each subset of its optional units left out, brackets removed.

    As ``__generate_slots_from_optional_tokens``: a unit is optional if it contains ``[``; the kept units
    are joined with one space and every ``[`` and ``]`` is deleted (so the full form keeps the contents).
    """
    units = _units(slot)
    optional = [k for k, unit in enumerate(units) if "[" in unit]
    forms = set()
    for size in range(len(optional) + 1):
        for dropped in combinations(optional, size):
            kept = " ".join(unit for k, unit in enumerate(units) if k not in dropped)
            forms.add(kept.replace("[", "").replace("]", ""))
    return frozenset(forms)


def _is_header(item: str | list[str]) -> bool:
    # As __generate_golden_extractions: `'Cluster' in item`, a substring test for a text line and a
    # membership test (a slot exactly "Cluster") for a triple.
    return "Cluster" in item


def _gold_triple(item: str | list[str], where: str) -> GoldTriple:
    # A line without " --> " that is neither blank nor a header is kept by the original as a "triple"
    # whose slots are its characters (zh line 2080 "2 0 6 :" is one); we keep it the same way.
    slots = list(item)
    if len(slots) < 3:
        raise InputFileError(
            f"{where}: a gold triple needs 3 slots 'subject --> relation --> object': {item!r}")
    # As the original does: slots beyond the third (n-ary gold) are ignored.
    raw = (slot_variants(slots[0]), slot_variants(slots[1]), slot_variants(slots[2]))
    stripped = (
        frozenset(v.strip() for v in raw[0]),
        frozenset(v.strip() for v in raw[1]),
        frozenset(v.strip() for v in raw[2]),
    )
    return GoldTriple(raw, stripped)


def load_benchie_gold(path: str | os.PathLike[str]) -> BenchieGold:
    """Parse a BenchIE gold file the way ``GoldAnnotations.load_gold_annotations(load_mode="full")`` does.

    Lines are ``strip()``-ed. A line containing ``sent_id:`` registers a sentence (id between ``sent_id:``
    and the first tab, text after it; a repeated id is an error). A line containing ``" --> "`` is a
    triple, a line containing ``Cluster`` opens a synset. Blank lines split the rest into per-sentence
    blocks that are paired with the sentence ids *by position* (not by the ``N--> Cluster`` prefix),
    surplus on either side being dropped, as the original's ``zip`` does. A block of one line yields no
    synset, and a header directly followed by another header yields an empty synset that can never
    be matched but still counts in recall, as in the original.
    """
    path = Path(path)
    sent_ids: list[str] = []
    sentences: dict[str, str] = {}
    items: list[tuple[str | list[str], int]] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, raw_line in enumerate(handle, 1):
            line = raw_line.strip()
            if "sent_id:" in line:
                fields = line.split("\t")
                head = fields[0].split("sent_id:")
                if len(fields) < 2 or len(head) < 2:
                    raise InputFileError(f"{path}:{lineno}: expected 'sent_id:ID<TAB>sentence', got {line!r}")
                if head[1] in sentences:
                    raise InputFileError(f"{path}:{lineno}: sentence id {head[1]!r} is repeated")
                sent_ids.append(head[1])
                sentences[head[1]] = fields[1]
            if SLOT_SEPARATOR in line:
                items.append((line.split(SLOT_SEPARATOR), lineno))
            elif "sent_id:" not in line:
                items.append((line, lineno))
    blocks: list[list[tuple[str | list[str], int]]] = [[]] if items else []
    for item, lineno in items:
        if item == "":
            blocks.append([])
        else:
            blocks[-1].append((item, lineno))
    synsets: dict[str, list[list[GoldTriple]]] = {}
    for sent_id, block in zip(sent_ids, blocks, strict=False):  # the original's zip truncates
        clusters: list[list[GoldTriple]] = []
        if len(block) > 1:  # as the original does: its splitting loop starts at the block's second line
            starts = [0] + [k for k in range(1, len(block)) if _is_header(block[k][0])]
            for start, end in zip(starts, [*starts[1:], len(block)], strict=True):
                members = [entry for entry in block[start:end] if not _is_header(entry[0])]
                clusters.append([_gold_triple(item, f"{path}:{lineno}") for item, lineno in members])
        synsets[sent_id] = clusters
    return BenchieGold(sentences, synsets)


@lru_cache(maxsize=8)
def _cached_gold(path: str, *stamp: int) -> BenchieGold:
    """``stamp`` (modification time and size) is part of the cache key only: a changed file is re-read."""
    return load_benchie_gold(path)


def cached_gold(path: str | os.PathLike[str]) -> BenchieGold:
    """:func:`load_benchie_gold`, parsed again only when the file changed (an eval loop scores many runs)."""
    stat = os.stat(path)
    return _cached_gold(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)
