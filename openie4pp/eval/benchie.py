"""BenchIE scorer: an independent re-implementation of the original ``Benchie`` (gkiril/benchie, ``src/``).

BenchIE (Gashteovski et al., ACL 2022) judges an extraction correct only if it equals, slot by slot,
one of the triples that annotators listed for a *fact synset* (cluster). We reproduce the original
scorer's numbers exactly, quirks included, so our results are comparable with published ones; each
quirk is marked "as the original does" with the original function it mirrors. Only the regular facet
with the default per-slot match (``match_type="slot"``, ``load_mode="full"``) is implemented: it is
the one behind the README numbers (ClausIE F1 0.3389, MinIE 0.3372, OpenIE6 0.2536, M2OIE-en 0.2281);
the original's ``"lexical"`` match and ``"minimal"`` gold (optional tokens removed) are not, and the
entity/minimality/concatenation facets are unpublished. Files are read as UTF-8 (the original uses the
locale's encoding, UTF-8 on the systems the benchmark was made on).

Scoring (``scores.py``): an extraction on a gold sentence is a true positive when its subject,
relation and object, each ``strip()``-ed, equal those of a gold variant. Then the *first* synset of the
sentence holding a variant equal to the *unstripped* slots is marked matched; if only the stripped
comparison succeeds (whitespace-padded slots) the original's lookup returns -1 and so marks the
sentence's *last* synset, which we reproduce. ``precision = matched synsets / (matched synsets + wrong
extractions)``: correct duplicates, or several correct extractions of one synset, count once, while
every wrong extraction counts; ``recall = matched synsets / all synsets``. Extractions naming a
sentence id that is not in the gold are ignored (neither right nor wrong), as the original does; we
also warn, since that usually means 0-based ids. ``n_predictions`` counts every extraction read.
There is no case or Unicode normalisation and no language-specific rule: Chinese gold is written one
character per token and system-format extractions must be too; ``lang`` matters only when OpenIE4++
records are converted (see :func:`records_to_triples`).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from openie4pp.errors import InputFileError
from openie4pp.eval.result import EvalResult, UnmatchedPredictionsWarning
from openie4pp.schema import Record

SLOT_SEPARATOR = " --> "
ID_HINT = "Ids are the gold's 1-based 'sent_id:' values."


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
def _cached_gold(path: str, mtime_ns: int, size: int) -> BenchieGold:
    return load_benchie_gold(path)


def _gold(path: str | os.PathLike[str]) -> BenchieGold:
    stat = os.stat(path)
    return _cached_gold(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


Triple = tuple[str, str, str, str]
"""``(sent_id, subject, relation, object)``: one line of the BenchIE system format."""


def read_system_extractions(path: str | os.PathLike[str]) -> list[Triple]:
    """Read ``sent_id<TAB>subject<TAB>relation<TAB>object`` lines as ``OIEExtractions.load_oie_extractions``.

    As the original does: each line is ``strip()``-ed before splitting on tabs (so trailing empty slots
    vanish) and columns after the fourth are ignored (an n-ary tuple is scored on its first object).
    Where the original crashes (``compute_stats`` indexing a short line) we raise an error naming the
    file and line; blank lines, on which it also crashes, carry no extraction and are skipped.
    """
    triples: list[Triple] = []
    with open(path, encoding="utf-8") as handle:
        for lineno, raw_line in enumerate(handle, 1):
            line = raw_line.strip()
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) < 4:
                raise InputFileError(
                    f"{path}:{lineno}: expected 'sent_id<TAB>subject<TAB>relation<TAB>object' "
                    f"(an empty last slot is stripped away), got {len(fields)} field(s): {line!r}"
                )
            triples.append((fields[0], fields[1], fields[2], fields[3]))
    return triples


def _is_chinese(lang: str) -> bool:
    return lang.split("-")[0].lower() == "zh"


def sentence_key(text: str, lang: str) -> str:
    # Chinese gold is spaced one character per token, so there all whitespace is removed; elsewhere
    # runs of whitespace become one space.
    return "".join(text.split()) if _is_chinese(lang) else " ".join(text.split())


def _benchie_tokens(text: str, lang: str) -> str:
    """A record's phrase in the gold's tokenisation: for Chinese, every character (spaces included, which
    gives the gold's ``F r a z z y   F r o g``) separated by one space, unless it is spaced already."""
    if not _is_chinese(lang) or all(c.isspace() for c in text[1::2]):
        return text
    return " ".join(text)


def records_to_triples(
    records: Iterable[Record], gold: BenchieGold, lang: str, matched_ids: set[str] | None = None
) -> tuple[list[Triple], int]:
    """Turn OpenIE4++ records into BenchIE triples: ``(sent_id, arg0, predicate, other arguments)``.

    The sentence is found by its text after whitespace normalisation (see :func:`sentence_key`). The
    object is every argument but ``arg0``, in record order (``arg1``, ``arg2``..., then ``loc``/``temp``/
    ``context``), joined with one space, because BenchIE gold puts the whole remainder in the object; a
    missing subject or object becomes ``""``. Returns the triples and the number of unknown sentences;
    ``matched_ids``, when given, receives the gold ids of the records' sentences (records without
    extractions included: the system did read those sentences).
    """
    ids: dict[str, str] = {}
    for gold_id, text in gold.sentences.items():
        ids.setdefault(sentence_key(text, lang), gold_id)
    triples: list[Triple] = []
    unknown = 0
    for record in records:
        sent_id = ids.get(sentence_key(record.sentence.text, lang))
        if sent_id is None:
            unknown += 1
            continue
        if matched_ids is not None:
            matched_ids.add(sent_id)
        for extraction in record.extractions:
            subject = extraction.argument("arg0")
            rest = [_benchie_tokens(a.text, lang) for a in extraction.arguments if a.role != "arg0"]
            subj = _benchie_tokens(subject.text, lang) if subject else ""
            triples.append((sent_id, subj, _benchie_tokens(extraction.predicate.text, lang), " ".join(rest)))
    return triples, unknown


def _read_records(path: Path) -> list[Record]:
    records = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(Record.model_validate(json.loads(line)))
            except (json.JSONDecodeError, ValidationError, ValueError) as exc:
                raise InputFileError(f"{path}:{lineno}: not an OpenIE4++ record: {exc}") from exc
    return records


def _is_jsonl(path: Path) -> bool:
    """``.jsonl``/``.json`` files, or any file whose first non-blank line starts with ``{``, are records."""
    if path.suffix.lower() in (".jsonl", ".json"):
        return True
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                return line.lstrip().startswith("{")
    return False


def _from_memory(
    items: Iterable[Any], gold: BenchieGold, lang: str, matched_ids: set[str]
) -> tuple[list[Triple], int]:
    triples: list[Triple] = []
    records: list[Record] = []
    for index, item in enumerate(items):
        if isinstance(item, (Record, dict)):
            try:
                records.append(item if isinstance(item, Record) else Record.model_validate(item))
            except ValidationError as exc:
                raise InputFileError(f"predictions[{index}]: not an OpenIE4++ record: {exc}") from exc
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) >= 4:
            if not all(isinstance(slot, str) for slot in item[1:4]):
                raise InputFileError(
                    f"predictions[{index}]: subject, relation and object must be str: {item!r}")
            triples.append((str(item[0]), item[1], item[2], item[3]))
        else:
            raise InputFileError(
                f"predictions[{index}]: expected (sent_id, subject, relation, object) or Record")
    from_records, unknown = records_to_triples(records, gold, lang, matched_ids)
    return triples + from_records, unknown


def _matches(slots: tuple[str, str, str], variants: tuple[frozenset[str], ...]) -> bool:
    return all(slot in forms for slot, forms in zip(slots, variants, strict=True))


def score_triples(gold: BenchieGold, triples: Sequence[Triple]) -> dict[str, Any]:
    """Count matched synsets and wrong extractions, as ``Scores.__compute_scores``/``compute_precision``."""
    matched = {sent_id: [False] * len(clusters) for sent_id, clusters in gold.synsets.items()}
    per_sentence: dict[str, dict[str, int]] = {}
    false_positives = correct = ignored = 0
    ignored_ids: list[str] = []
    for sent_id, subj, rel, obj in triples:
        clusters = gold.synsets.get(sent_id)
        if clusters is None:  # as the original does: `if sent_id in golden_annotations`, else skipped
            ignored += 1
            if len(ignored_ids) < 5 and sent_id not in ignored_ids:
                ignored_ids.append(sent_id)
            continue
        counts = per_sentence.setdefault(sent_id, {"n_predictions": 0, "n_correct": 0})
        counts["n_predictions"] += 1
        key = (subj.strip(), rel.strip(), obj.strip())
        if not any(_matches(key, t.stripped) for cluster in clusters for t in cluster):
            false_positives += 1
            continue
        correct += 1
        counts["n_correct"] += 1
        raw = (subj, rel, obj)
        hit = next(
            (i for i, cluster in enumerate(clusters) if any(_matches(raw, t.raw) for t in cluster)),
            -1,  # as __get_true_positive_synset_ind: -1, so numpy marks the last synset
        )
        matched[sent_id][hit] = True
    true_positives = sum(sum(flags) for flags in matched.values())
    return {
        "true_positives": true_positives,
        "false_positives": false_positives,
        "n_synsets": gold.n_synsets,
        "n_correct_extractions": correct,
        "n_ignored": ignored,
        "ignored_sent_ids": ignored_ids,
        "per_sentence": {
            sent_id: {
                "n_synsets": len(flags),
                "matched_synsets": [i for i, flag in enumerate(flags) if flag],
                **per_sentence.get(sent_id, {"n_predictions": 0, "n_correct": 0}),
            }
            for sent_id, flags in matched.items()
        },
    }


def score_benchie(
    gold_path: str | os.PathLike[str],
    predictions: str | os.PathLike[str] | Iterable[Any],
    lang: str,
) -> EvalResult:
    """Score extractions against a BenchIE gold file; precision, recall and F1 as the original computes them.

    ``predictions`` is a file in the BenchIE system format (``sent_id<TAB>subject<TAB>relation<TAB>object``,
    the gold's 1-based ids, compared as strings: ``"01"`` is not ``"1"``), an OpenIE4++ JSONL file, or a
    list of ``(sent_id, subject, relation, object)`` tuples and/or :class:`Record` objects. ``lang`` only
    names the benchmark and says how records are tokenised (Chinese: one character per token); the
    system format is scored exactly as written. ``details`` holds the counts and, per sentence, the
    indices of the matched synsets.
    """
    gold = _gold(gold_path)
    if gold.n_synsets == 0:  # the original divides by zero here
        raise InputFileError(f"{gold_path}: no fact synsets found; is this a BenchIE gold file?")
    unknown_records = 0
    record_ids: set[str] = set()  # gold ids of the sentences of records, with extractions or not
    if isinstance(predictions, (str, os.PathLike)):
        path = Path(predictions)
        if _is_jsonl(path):
            triples, unknown_records = records_to_triples(_read_records(path), gold, lang, record_ids)
        else:
            triples = read_system_extractions(path)
    else:
        triples, unknown_records = _from_memory(predictions, gold, lang, record_ids)
    counts = score_triples(gold, triples)
    if counts["n_ignored"]:
        warnings.warn(
            f"{counts['n_ignored']} extraction(s) name sentence ids not in {gold_path} "
            f"(e.g. {counts['ignored_sent_ids']}); they are ignored, as the original BenchIE does. "
            f"{ID_HINT}",
            UnmatchedPredictionsWarning,
            stacklevel=2,
        )
    if unknown_records:
        warnings.warn(f"{unknown_records} record(s) match no sentence of {gold_path}; ignored",
                      UnmatchedPredictionsWarning, stacklevel=2)
    tp, fp = counts["true_positives"], counts["false_positives"]
    precision = tp / (tp + fp) if tp + fp else 0.0  # compute_precision leaves 0.0 when nothing was scored
    recall = tp / counts["n_synsets"]
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    details = {"match": "slot", "facet": "regular", "unknown_records": unknown_records, **counts}
    if counts["n_ignored"]:
        details["hint"] = ID_HINT
    result = EvalResult(
        benchmark=f"benchie-{lang}",
        precision=precision,
        recall=recall,
        f1=f1,
        n_predictions=len(triples),
        details=details,
    )
    predicted_ids = record_ids | {sent_id for sent_id, *_ in triples}
    # an unknown record is a sentence of its own that no gold key can equal
    unknown_keys = [f"\x00unknown record {k}" for k in range(unknown_records)]
    result.set_coverage(gold.synsets, [*predicted_ids, *unknown_keys])
    return result
