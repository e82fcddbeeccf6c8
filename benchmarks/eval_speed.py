"""Seconds to score 20,000 predictions with the CaRB and Re-OIE2016 scorers, on one core.

The prediction file is built from the OpenIE-4 and ClausIE outputs shipped with CaRB, keeping only
lines whose sentence is in the gold (so every prediction is scored: the worst case) and cycling
through them with perturbations (a truncated argument, jittered confidences) until there are
20,000 lines, about 32 per gold sentence. The target is < 5 s for CaRB test. Prints one JSON object.

    python benchmarks/eval_speed.py [--n 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from openie4pp.eval.carb import normalize_sentence, read_carb_gold, score_carb
from openie4pp.eval.reoie2016 import read_reoie2016_gold, score_reoie2016
from openie4pp.paths import benchmarks_dir

LIMIT_S = 5.0


def build(n: int, gold_keys: set[str], path: Path, seed: int = 0) -> int:
    """Write ``n`` perturbed system-output lines on gold sentences to ``path``; return the sentence count."""
    rng = random.Random(seed)
    bench = benchmarks_dir()
    pool: list[list[str]] = []
    for name in ("openie4_test.tsv", "clausie_test.tsv"):
        for line in (bench / "carb" / "system_outputs" / name).read_text(encoding="utf-8").splitlines():
            columns = line.split("\t")
            if normalize_sentence(columns[0]) in gold_keys:
                pool.append(columns)
    lines: list[str] = []
    while len(lines) < n:
        columns = list(pool[len(lines) % len(pool)])
        if rng.random() < 0.3:
            k = rng.randrange(3, len(columns))
            columns[k] = " ".join(columns[k].split()[:-1])
        columns[1] = f"{rng.random():.4f}"
        lines.append("\t".join(columns))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len({normalize_sentence(line.split("\t")[0]) for line in lines})


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    bench = benchmarks_dir()
    carb_gold = bench / "carb" / "gold_test.tsv"
    reoie_gold = bench / "re-oie2016" / "Re-OIE2016.json"
    with tempfile.TemporaryDirectory() as tmp:
        carb_file, reoie_file = Path(tmp) / "carb_pred.tsv", Path(tmp) / "reoie_pred.tsv"
        carb_sentences = build(args.n, {normalize_sentence(s) for s in read_carb_gold(carb_gold)}, carb_file)
        reoie_sentences = build(
            args.n, {normalize_sentence(s) for s in read_reoie2016_gold(reoie_gold)}, reoie_file
        )
        timings = {
            "carb_nary_s": best_time(lambda: score_carb(carb_gold, carb_file), args.repeat),
            "carb_binary_s": best_time(lambda: score_carb(carb_gold, carb_file, binary=True), args.repeat),
            "reoie2016_lexical_s": best_time(lambda: score_reoie2016(reoie_gold, reoie_file), args.repeat),
            "reoie2016_binary_tuple_s": best_time(
                lambda: score_reoie2016(reoie_gold, reoie_file, binary=True), args.repeat
            ),
        }
        scored = score_carb(carb_gold, carb_file).details["scored_predictions"]
    print(
        json.dumps(
            {
                "benchmark": "eval_speed",
                "n_predictions": args.n,
                "carb_scored_predictions": scored,
                "carb_sentences": carb_sentences,
                "reoie2016_sentences": reoie_sentences,
                **{k: round(v, 4) for k, v in timings.items()},
                "limit_s": LIMIT_S,
                "ok": timings["carb_nary_s"] < LIMIT_S and timings["carb_binary_s"] < LIMIT_S,
                "repeat": args.repeat,
                "cores": 1 if hasattr(os, "sched_setaffinity") else None,
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
