"""CaRB gold tuples (``gold_dev.tsv``, ``gold_test.tsv``) as OpenIE4++ records.

Each line is ``sentence \\t relation \\t arg1 \\t arg2 ...`` (``arg1`` is the subject).
The file lists only sentences that have tuples, in an order of its own, so when the
benchmark's sentence list (``sentences_<split>.txt``) sits beside it we follow the list:
record ids then number the sentences as systems see them, and a listed sentence without
gold tuples (7 in CaRB test, 3 in dev) still becomes a record with zero extractions —
leaving it out would silently drop the false positives a system produces on it.

We follow CaRB's own gold reader where it is lenient: fields are stripped (dev has
sentences with a trailing space), a relation column left empty by the annotators is kept
as an empty predicate, and ``C:``/``L:``/``T:`` prefixed arguments stay positional with
their prefix, as CaRB scores them. Phrases are grounded to token spans when they are
contiguous in the sentence; the others stay as free text (``span=None``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openie4pp.formats.common import (
    build_record,
    check_language,
    extraction_from_phrases,
    read_lines,
    reject,
    sentence_id,
    sentence_or_rejection,
)
from openie4pp.schema import Extraction, Record, Rejection, RejectionReason

_SPLIT = re.compile(r"(?:^|[_\-.])(dev|test|train|valid(?:ation)?)(?:$|[_\-.])", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _Row:
    line: int
    relation: str
    arguments: list[str]
    raw: str


def infer_dataset(path: Path) -> str:
    """``carb-test`` for ``gold_test.tsv`` (or ``test.tsv``), ``carb`` when no split is named."""
    match = _SPLIT.search(path.stem)
    return f"carb-{match.group(1).lower()}" if match else "carb"


def find_sentence_list(path: Path) -> Path | None:
    """``sentences_<split>.txt`` beside a ``gold_<split>.tsv``, if it exists."""
    match = _SPLIT.search(path.stem)
    if not match:
        return None
    candidate = path.with_name(f"sentences_{match.group(1)}.txt")
    return candidate if candidate.is_file() else None


def read_carb_gold(
    path: Path, lang: str = "en", dataset: str | None = None, sentences: Path | None = None
) -> Iterator[Record | Rejection]:
    """Records for a CaRB gold file, in the order of ``sentences`` (the sentence list) when
    given, else in the order sentences first appear in the gold file.

    Gold sentences missing from the list are appended after the listed ones, in gold order,
    rather than dropped: their tuples are still gold.
    """
    dataset = dataset or infer_dataset(path)
    bad_lang = check_language(lang, file=path)
    if bad_lang:
        yield bad_lang
        return

    tuples: dict[str, list[_Row]] = {}
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.rstrip().split("\t")  # as CaRB (which strips the line), trailing empty args vanish
        text = fields[0].strip()
        if len(fields) < 2:
            yield reject(
                RejectionReason.schema_invalid,
                "expected 'sentence<TAB>relation<TAB>arg1...'; the line has no tab",
                file=path,
                line=number,
                input=line,
                field="relation",
            )
            continue
        if not text:
            yield reject(
                RejectionReason.empty_sentence,
                "the sentence column is empty",
                file=path,
                line=number,
                input=line,
                field="sentence",
            )
            continue
        relation, arguments = fields[1], fields[2:]
        if not relation.strip() and not any(a.strip() for a in arguments):
            yield reject(
                RejectionReason.schema_invalid,
                "the tuple has neither a relation nor an argument",
                file=path,
                line=number,
                input=line,
                field="relation",
            )
            continue
        tuples.setdefault(text, []).append(_Row(number, relation, arguments, line))

    order: list[str] = []
    list_lines: dict[str, int] = {}
    if sentences is not None:
        for number, line in enumerate(read_lines(sentences), start=1):
            text = line.strip()
            if text and text not in list_lines:
                list_lines[text] = number
                order.append(text)
    order += [text for text in tuples if text not in list_lines]

    for index, text in enumerate(order, start=1):
        rows = tuples.get(text, [])
        # point problems at the sentence list when the sentence comes from it
        where: Path = sentences if sentences is not None and text in list_lines else path
        first_line = list_lines[text] if text in list_lines else rows[0].line
        sentence = sentence_or_rejection(text, lang, sentence_id(dataset, index), file=where, line=first_line)
        if isinstance(sentence, Rejection):
            yield sentence
            continue
        extractions: list[Extraction] = [
            extraction_from_phrases(sentence, r.relation, r.arguments) for r in rows
        ]
        yield build_record(sentence, extractions, dataset, file=where, line=first_line, input=text)


def convert(path: Path, lang: str | None = None, dataset: str | None = None) -> Iterator[Record | Rejection]:
    """Registry entry point: English, dataset from the file name, sentence list found beside it."""
    return read_carb_gold(
        path, lang or "en", dataset or infer_dataset(path), sentences=find_sentence_list(path)
    )
