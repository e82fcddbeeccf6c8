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
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from openie4pp.errors import InputFileError
from openie4pp.eval.benchie_gold import (
    SLOT_SEPARATOR,
    BenchieGold,
    GoldTriple,
    cached_gold,
    load_benchie_gold,
    slot_variants,
)
from openie4pp.eval.result import EvalResult, UnmatchedPredictionsWarning
from openie4pp.schema import Record
from openie4pp.text import primary_subtag

__all__ = [  # the gold reader's names are re-exported: one import for scoring
    "ID_HINT", "SLOT_SEPARATOR", "BenchieGold", "GoldTriple", "SystemTriple", "load_benchie_gold",
    "read_system_extractions", "records_to_triples", "score_benchie", "score_triples", "sentence_key",
    "slot_variants",
]

ID_HINT = "Ids are the gold's 1-based 'sent_id:' values."


SystemTriple = tuple[str, str, str, str]
"""``(sent_id, subject, relation, object)``: one line of the BenchIE system format."""


def read_system_extractions(path: str | os.PathLike[str]) -> list[SystemTriple]:
    """Read ``sent_id<TAB>subject<TAB>relation<TAB>object`` lines as ``OIEExtractions.load_oie_extractions``.

    As the original does: each line is ``strip()``-ed before splitting on tabs (so trailing empty slots
    vanish) and columns after the fourth are ignored (an n-ary tuple is scored on its first object).
    Where the original crashes (``compute_stats`` indexing a short line) we raise an error naming the
    file and line; blank lines, on which it also crashes, carry no extraction and are skipped.
    """
    triples: list[SystemTriple] = []
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
    return primary_subtag(lang) == "zh"


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
) -> tuple[list[SystemTriple], int]:
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
    triples: list[SystemTriple] = []
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
) -> tuple[list[SystemTriple], int]:
    triples: list[SystemTriple] = []
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


def score_triples(gold: BenchieGold, triples: Sequence[SystemTriple]) -> dict[str, Any]:
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
    gold = cached_gold(gold_path)
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
