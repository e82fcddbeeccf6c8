"""Groundings per second on one core, on real benchmark sentences and phrases.

Phrases are the gold arguments and relations of CaRB test (strings, grounded as an LLM's
output would be) plus Re-OIE2016 Spanish/Portuguese phrases and BenchIE Chinese sentences
re-joined without spaces. Prints one JSON object.

    python benchmarks/grounding.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import time

from openie4pp.grounding import Grounded, SentenceIndex, ground
from openie4pp.paths import benchmarks_dir
from openie4pp.schema import Sentence


def workload() -> list[tuple[Sentence, str]]:
    bench = benchmarks_dir()
    pairs: list[tuple[Sentence, str]] = []
    sentences: dict[str, Sentence] = {}
    for line in (bench / "carb" / "gold_test.tsv").read_text(encoding="utf-8").splitlines():
        text, *phrases = line.split("\t")
        sentence = sentences.get(text) or sentences.setdefault(
            text, Sentence.from_text(text, "en", pretokenized=True)
        )
        pairs += [(sentence, p) for p in phrases if p.strip()]
    for lang, name in (("es", "Re-OIE2016-Spanish.json"), ("pt", "Re-OIE2016-Portuguese.json")):
        for text, tuples in json.loads((bench / "re-oie2016" / name).read_text(encoding="utf-8")).items():
            sentence = Sentence.from_text(text, lang, pretokenized=True)
            pairs += [(sentence, t[k]) for t in tuples for k in ("arg0", "pred", "arg1", "arg2") if t.get(k)]
    for line in (
        (bench / "benchie" / "benchie_gold_annotations_zh.txt").read_text(encoding="utf-8").splitlines()
    ):
        if line.startswith("sent_id:"):
            zh = Sentence.from_text(line.split("\t", 1)[1].replace(" ", ""), "zh")
        elif " --> " in line:
            pairs += [
                (zh, part.replace("[", "").replace("]", "").replace(" ", "")) for part in line.split(" --> ")
            ]
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pairs = workload()
    # "cold" builds the sentence index for every phrase (worst case); "cached" reuses it, as the
    # annotator does when it grounds all elements of one sentence.
    best_cold = best_warm = float("inf")
    found = 0
    for _ in range(args.repeat):
        start = time.perf_counter()
        found = sum(isinstance(SentenceIndex(s).ground(p), Grounded) for s, p in pairs)
        best_cold = min(best_cold, time.perf_counter() - start)
        start = time.perf_counter()
        for sentence, phrase in pairs:
            ground(sentence, phrase)
        best_warm = min(best_warm, time.perf_counter() - start)
    print(
        json.dumps(
            {
                "benchmark": "grounding",
                "groundings": len(pairs),
                "grounded_fraction": round(found / len(pairs), 4),
                "per_second_index_per_phrase": round(len(pairs) / best_cold),
                "per_second_cached_index": round(len(pairs) / best_warm),
                "target_per_second": 20000,
            }
        )
    )


if __name__ == "__main__":
    main()
