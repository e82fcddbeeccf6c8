"""Gold canaries: benchmark sentences mixed into an annotation run to measure its silver data.

Why: a user paying for a million sentences should learn how good the accepted triples are while
the run goes, not after training on them. ``--canaries N`` adds ``N`` gold sentences per language
to the run; they go through the same prompts, constraint, grounding and judge as the input, but
their records **never reach the shards** (nor ``rejected.jsonl``): they are scored with the
project's own scorers against the gold of exactly those sentences, and precision, recall and F1 per
language go to ``stats.json``, the progress line and the dataset card.

Where canaries come from (:data:`CANARY_SOURCES`, the benchmarks with the ``canary`` role in the
registry, :mod:`openie4pp.benchmarks`), and why these and not others:

====  ==================  ================================================================
en    ``carb-dev``        the last ``N`` of CaRB's *dev* split (the tagger's held-out score
                          is ``carb-test``)
es    ``re-oie2016-es``   the last ``N`` of Re-OIE2016 Spanish
pt    ``re-oie2016-pt``   the last ``N`` of Re-OIE2016 Portuguese
zh    ``benchie-zh``      the last ``N`` of BenchIE's 300 sentences
de    ``benchie-de``      the last ``N`` of BenchIE's 300 sentences
====  ==================  ================================================================

Which is which: canaries are always the *last* ``N`` sentences of their benchmark, and every
tagger evaluation with a limit (``extract --limit K``, the quickstart's ``--eval-limit``) reads
the *first* ``K``; the two sets are disjoint while ``K + N`` stays below the benchmark's size
(:func:`overlap` counts the shared sentences otherwise, and the quickstart prints it). Canaries
never reach the shards, so no benchmark sentence leaks into the tagger's training data through
them: the annotator's score and the tagger's score stay independent measurements.

In ``project`` mode a canary is the benchmark's English sentence with its English gold triples,
and its *known* translation is the benchmark's own sentence in the target language (BenchIE and
Re-OIE2016 are parallel: same sentences, same order): the translate step is skipped, so the
projection prompt and the judge are what the score measures, against gold that matches the text.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from openie4pp.benchmarks import BENCHMARKS, canary_for, get
from openie4pp.errors import RunProblems
from openie4pp.schema import Record
from openie4pp.sources import RecordRow, read_source

CANARY_PREFIX = "canary:"
"""Every canary's sentence id starts with it (``canary:benchie-de:300``), to be told apart in logs
and stats; the pipeline itself tells canaries apart by their task, so an input id that happens to
start with it is annotated and written like any other."""


@dataclass(frozen=True)
class CanarySource:
    lang: str
    benchmark: str
    """The scoring benchmark (a name of :data:`openie4pp.benchmarks.BENCHMARKS`)."""
    english: str | None
    """The parallel English benchmark for ``project`` mode (None: no project-mode canaries)."""
    pretokenized: bool


def _canary_sources() -> dict[str, CanarySource]:
    """One source per language, from the registry's ``canary`` role (:func:`canary_for`)."""
    langs = dict.fromkeys(b.lang for b in BENCHMARKS.values() if "canary" in b.roles)
    sources = {}
    for lang in langs:
        benchmark = canary_for(lang)
        assert benchmark is not None
        sources[lang] = CanarySource(lang, benchmark.name, benchmark.parallel, benchmark.pretokenized)
    return sources


CANARY_SOURCES: dict[str, CanarySource] = _canary_sources()
DEFAULT_PER_LANG = 10
"""``--canaries auto`` for a remote endpoint: 50 extract-mode sentences, a few cents on a paid API."""


@dataclass(frozen=True)
class Canary:
    """One gold sentence to annotate: ``text`` in ``lang`` (extract mode) or, in project mode, the
    known translation ``text`` of ``english`` with its ``english_triples``."""

    id: str
    lang: str
    benchmark: str
    text: str
    pretokenized: bool
    english: str | None = None
    english_triples: tuple[tuple[str, ...], ...] = ()


@lru_cache(maxsize=16)
def _records(benchmark: str) -> list[Record]:
    """The benchmark's gold records, in file order (:func:`openie4pp.sources.read_source`: through
    the project's converters, without their notes on gold phrases, which are for ``convert``)."""
    return [row.record for row in read_source(benchmark, "benchmark", option="--canaries")
            if isinstance(row, RecordRow)]


def natural_text(text: str, lang: str) -> str:
    """BenchIE's Chinese is spaced one character per token (a real space is three): a canary is
    sent as a user's sentence would be, ``RTC可能`` rather than ``R T C 可 能``. The scorer compares
    sentences without whitespace, so the record still finds its gold."""
    if not lang.startswith("zh"):
        return text
    return " ".join("".join(word.split(" ")) for word in re.split(r" {2,}", text.strip()))


def _triples(record: Record) -> tuple[tuple[str, ...], ...]:
    triples = []
    for extraction in record.extractions:
        relation, args = extraction.nary()
        subject = args[0] if args else ""
        rest = args[1:] if len(args) > 1 else [""]
        triples.append((subject, relation, *rest))
    return tuple(t for t in triples if t[0] and t[1])


def load_canaries(per_lang: int, langs: Iterable[str], mode: str) -> list[Canary]:
    """``per_lang`` canaries for each of ``langs`` that has a gold source (for ``project`` mode: a
    parallel English one too), in the order of ``langs``. Fails before any request when a gold file
    is missing."""
    canaries: list[Canary] = []
    for lang in langs:
        source = CANARY_SOURCES.get(lang)
        if source is None or per_lang <= 0 or (mode == "project" and source.english is None):
            continue
        records = _records(source.benchmark)
        chosen = list(range(max(0, len(records) - per_lang), len(records)))  # the last: see "which is which"
        english = _records(source.english) if mode == "project" and source.english else None
        english_at: dict[int, Record] = {}
        if english is not None:  # parallel from the end (Re-OIE2016 pt lacks one line early on)
            offset = len(english) - len(records)
            english_at = {i: english[i + offset] for i in chosen if 0 <= i + offset < len(english)}
        for i in chosen:
            record = records[i]
            if english is None:
                canaries.append(Canary(f"{CANARY_PREFIX}{source.benchmark}:{i + 1}", lang, source.benchmark,
                                       natural_text(record.sentence.text, lang), source.pretokenized))
                continue
            parallel = english_at.get(i)
            triples = _triples(parallel) if parallel is not None else ()
            if parallel is None or not triples:
                continue
            canaries.append(Canary(f"{CANARY_PREFIX}{source.benchmark}:{i + 1}", lang, source.benchmark,
                                   natural_text(record.sentence.text, lang), source.pretokenized,
                                   parallel.sentence.text, triples))
    return canaries


def canary_langs(mode: str, input_langs: Iterable[str] | None = None) -> list[str]:
    """The languages that get canaries: project mode's target languages with a parallel gold, or,
    in extract mode, every language with a gold source (the input's languages are not known before
    it is read to its end)."""
    if mode == "project":
        return [lang for lang in input_langs or () if lang in CANARY_SOURCES and CANARY_SOURCES[lang].english]
    return list(CANARY_SOURCES)


def overlap(benchmark: str, eval_limit: int | None, per_lang: int) -> int:
    """How many of ``benchmark``'s canaries (its last ``per_lang`` sentences, when it is a canary
    source) a tagger evaluation of its first ``eval_limit`` sentences (None: all) also reads."""
    if per_lang <= 0 or not any(s.benchmark == benchmark for s in CANARY_SOURCES.values()):
        return 0
    size = len(_records(benchmark))
    first = size if eval_limit is None else min(eval_limit, size)
    return max(0, first - (size - min(per_lang, size)))


# -- scoring -------------------------------------------------------------------------------------

@dataclass
class CanaryScore:
    lang: str
    benchmark: str
    sentences: int = 0
    accepted: int = 0
    extractions: int = 0
    precision: float | None = None
    recall: float = 0.0
    f1: float = 0.0
    rejections: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {"benchmark": self.benchmark, "sentences": self.sentences, "accepted": self.accepted,
                "extractions": self.extractions, "precision": r(self.precision), "recall": r(self.recall),
                "f1": r(self.f1), "rejections": dict(self.rejections.most_common())}


class CanaryBook:
    """What the canaries of one run gave: accepted records and rejection reasons per language,
    scored on demand against the gold of exactly the canary sentences."""

    def __init__(self, canaries: Iterable[Canary]) -> None:
        self.canaries = {c.id: c for c in canaries}
        self.records: dict[str, list[Record]] = {}
        self.rejected: dict[str, Counter[str]] = {}
        self.scores: dict[str, CanaryScore] = {}

    def __contains__(self, sentence_id: object) -> bool:
        return sentence_id in self.canaries

    def accept(self, sentence_id: str, record: Record) -> None:
        self.records.setdefault(sentence_id, []).append(record)

    def reject(self, sentence_id: str, reason: str) -> None:
        self.rejected.setdefault(sentence_id, Counter())[reason] += 1

    def score(self) -> dict[str, CanaryScore]:
        """Precision, recall and F1 per language with the benchmark's own scorer (CaRB, BenchIE,
        Re-OIE2016 lexical match); a language whose canaries were all rejected scores recall 0 and
        no precision."""
        by_lang: dict[str, list[Canary]] = {}
        for canary in self.canaries.values():
            by_lang.setdefault(canary.lang, []).append(canary)
        scores: dict[str, CanaryScore] = {}
        for lang, canaries in by_lang.items():
            score = CanaryScore(lang, canaries[0].benchmark, sentences=len(canaries))
            records = [r for c in canaries for r in self.records.get(c.id, [])]
            score.accepted = sum(1 for c in canaries if c.id in self.records)
            score.extractions = sum(len(r.extractions) for r in records)
            for c in canaries:
                if c.id not in self.records:
                    score.rejections.update(self.rejected.get(c.id, Counter({"unfinished": 1})))
            if records:
                result = _evaluate(score.benchmark, [c.text for c in canaries], records)
                score.precision, score.recall, score.f1 = result
            scores[lang] = score
        self.scores = scores
        return scores

    def postfix(self) -> str:
        """``en .52 de .31``: canary F1 per language, for the progress line."""
        return " ".join(f"{lang} {s.f1:.2f}".replace("0.", ".") for lang, s in sorted(self.scores.items()))


def _evaluate(benchmark: str, texts: list[str], records: list[Record]) -> tuple[float | None, float, float]:
    from openie4pp.eval.run import evaluate

    with tempfile.TemporaryDirectory(prefix="openie4pp-canaries-") as tmp:
        gold = subset_gold(benchmark, texts, Path(tmp))
        predictions = Path(tmp) / "predictions.jsonl"
        predictions.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
        try:
            result = evaluate(benchmark, predictions, gold=gold)
        except RunProblems:  # no prediction matched a canary's gold sentence: nothing was right
            return None, 0.0, 0.0
    return result.precision, result.recall, result.f1


def subset_gold(benchmark: str, texts: list[str], folder: Path) -> Path:
    """The benchmark's gold file cut to the sentences ``texts``, in its own format (so the scorer
    reads it unchanged and recall counts only these sentences)."""
    info = get(benchmark)
    source = info.gold_path()
    target = folder / source.name
    if info.scorer == "carb":
        from openie4pp.eval.carb import normalize_sentence

        keys = {normalize_sentence(t) for t in texts}
        lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
        target.write_text("".join(x for x in lines if normalize_sentence(x.split("\t")[0].strip()) in keys),
                          encoding="utf-8")
    elif info.scorer == "re-oie2016":
        wanted = {" ".join(t.split()) for t in texts}
        data = json.loads(source.read_text(encoding="utf-8"))
        kept = {k: v for k, v in data.items() if " ".join(k.split()) in wanted}
        target.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
    else:
        target.write_text(_benchie_subset(source, texts, info.lang), encoding="utf-8")
    return target


def _benchie_subset(source: Path, texts: list[str], lang: str) -> str:
    """BenchIE blocks (a ``sent_id:`` line, its clusters, a blank line) of the wanted sentences,
    matched as the scorer matches a record to its gold sentence."""
    from openie4pp.eval.benchie import sentence_key as key

    wanted = {key(t, lang) for t in texts}
    out: list[str] = []
    block: list[str] = []
    keep = False
    for line in [*source.read_text(encoding="utf-8").splitlines(), "sent_id:\t"]:
        if "sent_id:" in line:
            if keep and block:
                out.append("\n".join(block).rstrip("\n") + "\n\n")
            sentence = line.split("\t", 1)[1] if "\t" in line else ""
            keep, block = key(sentence, lang) in wanted and bool(sentence), [line]
        else:
            block.append(line)
    return "".join(out)
