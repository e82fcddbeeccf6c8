"""``openie4pp eval``: one entry point over the three scorers, with gold found in the shared data.

Benchmarks: ``carb-dev``, ``carb-test`` (CaRB tuple match), ``re-oie2016-{en,es,pt}`` (Multi2OIE's
lexical match; ``--binary`` scores the binary gold with its protocol), ``benchie-{en,zh,de}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from openie4pp.eval.result import EvalResult
from openie4pp.paths import benchmarks_dir


@dataclass(frozen=True)
class Benchmark:
    name: str
    scorer: str  # "carb" | "re-oie2016" | "benchie"
    gold: str  # relative to the benchmarks folder
    binary_gold: str | None = None
    lang: str = "en"


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("carb-dev", "carb", "carb/gold_dev.tsv"),
        Benchmark("carb-test", "carb", "carb/gold_test.tsv"),
        Benchmark(
            "re-oie2016-en", "re-oie2016", "re-oie2016/Re-OIE2016.json", "re-oie2016/Re-OIE2016-Binary.json"
        ),
        Benchmark(
            "re-oie2016-es",
            "re-oie2016",
            "re-oie2016/Re-OIE2016-Spanish.json",
            "re-oie2016/Re-OIE2016-Spanish-Binary.json",
            "es",
        ),
        Benchmark(
            "re-oie2016-pt",
            "re-oie2016",
            "re-oie2016/Re-OIE2016-Portuguese.json",
            "re-oie2016/Re-OIE2016-Portuguese-Binary.json",
            "pt",
        ),
        Benchmark("benchie-en", "benchie", "benchie/benchie_gold_annotations_en.txt"),
        Benchmark("benchie-zh", "benchie", "benchie/benchie_gold_annotations_zh.txt", lang="zh"),
        Benchmark("benchie-de", "benchie", "benchie/benchie_gold_annotations_de.txt", lang="de"),
    )
}


def gold_path(benchmark: Benchmark, binary: bool = False) -> Path:
    relative = benchmark.binary_gold if binary and benchmark.binary_gold else benchmark.gold
    return benchmarks_dir() / relative


def evaluate(name: str, predictions: Path, *, binary: bool = False, gold: Path | None = None) -> EvalResult:
    """Score ``predictions`` on benchmark ``name``; ``gold`` overrides where the gold is read from."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    benchmark = BENCHMARKS[name]
    if not predictions.is_file():
        raise FileNotFoundError(f"{predictions}: no such prediction file")
    gold = gold or gold_path(benchmark, binary)
    if benchmark.scorer == "carb":
        from openie4pp.eval.carb import score_carb

        result = score_carb(gold, predictions, binary=binary)
    elif benchmark.scorer == "re-oie2016":
        from openie4pp.eval.reoie2016 import score_reoie2016

        result = score_reoie2016(gold, predictions, binary=binary)
    else:
        if binary:
            raise ValueError("BenchIE scores triples; --binary does not apply")
        from openie4pp.eval.benchie import score_benchie

        result = score_benchie(gold, predictions, benchmark.lang)
    result.benchmark = name + ("-binary" if binary else "")
    return result


def format_table(result: EvalResult) -> str:
    rows = [("benchmark", result.benchmark), ("predictions", str(result.n_predictions))]
    if result.auc is not None:
        rows.append(("AUC", f"{result.auc:.4f}"))
    rows += [
        ("precision", f"{result.precision:.4f}"),
        ("recall", f"{result.recall:.4f}"),
        ("F1", f"{result.f1:.4f}"),
    ]
    if result.threshold is not None:
        rows.append(("best-F1 threshold", f"{result.threshold:.4f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def summary_line(result: EvalResult) -> str:
    """The JSON object ``--json`` prints last: auc (not for BenchIE), precision, recall, f1, n_predictions."""
    return json.dumps(result.summary())
