"""``openie4pp eval``: one entry point over the three scorers, with gold found in the shared data.

Which benchmarks there are, where their gold lies and which scorer grades them is the registry's
(:mod:`openie4pp.benchmarks`): ``carb-dev``, ``carb-test`` (CaRB tuple match),
``re-oie2016-{en,es,pt}`` (Multi2OIE's lexical match; ``--binary`` scores the binary gold with its
protocol), ``benchie-{en,zh,de}``. A benchmark without a scorer (``oie2016-dev``, training data
only) cannot be scored.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from openie4pp.benchmarks import BENCHMARKS, Benchmark, names
from openie4pp.eval.result import EvalResult, UnmatchedPredictionsWarning


def evaluate(name: str, predictions: Path, *, binary: bool = False, gold: Path | None = None) -> EvalResult:
    """Score ``predictions`` on benchmark ``name``; ``gold`` overrides where the gold is read from.

    Predictions that do not fit the benchmark score like a bad system (F1 0, precision 1), which
    is how a wrong ``--benchmark`` or a 0-based id scheme went unnoticed. So the result counts the
    sentences on each side without a partner, an :class:`UnmatchedPredictionsWarning` says when
    some predictions are not scored at all, and :class:`~openie4pp.errors.RunProblems` is raised
    when the file holds no prediction or none of its sentences is in the gold.
    """
    from openie4pp.errors import RunProblems, UsageError

    if name not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r} (known: {', '.join(names(scorable=True))})")
    benchmark = BENCHMARKS[name]
    if benchmark.scorer is None:
        raise UsageError(f"--benchmark {name}: has no scorer (it is training data); score against one of "
                         f"{', '.join(names(scorable=True))}")
    if predictions.is_dir():
        from openie4pp.shards import shard_files

        if not shard_files(predictions):
            raise UsageError(f"--pred {predictions} is a folder without shards; give the prediction file "
                             "or an OpenIE4++ shard folder")
        return _evaluate_folder(name, predictions, binary=binary, gold=gold)
    if not predictions.is_file():
        raise FileNotFoundError(f"{predictions}: no such prediction file")
    if binary and benchmark.scorer == "benchie":
        raise UsageError("BenchIE scores triples; --binary does not apply")
    gold = gold or benchmark.gold_path(binary)
    with warnings.catch_warnings():  # the scorers' own notes on unmatched ids: summed up below
        warnings.simplefilter("ignore", UnmatchedPredictionsWarning)
        result = _score(benchmark, gold, predictions, binary)
    result.benchmark = name + ("-binary" if binary else "")
    if result.prediction_sentences == 0:
        raise RunProblems(f"{predictions}: no predictions in the file; nothing to score")
    hint = f" {result.details['hint']}" if result.details.get("hint") else ""
    if result.matched_sentences == 0:
        raise RunProblems(
            f"none of the {result.prediction_sentences} prediction sentences of {predictions} is in the "
            f"gold of {result.benchmark} ({result.gold_sentences} gold sentences, {gold}): wrong "
            f"--benchmark or --gold, or predictions for other sentences?{hint}"
        )
    if result.prediction_sentences_not_in_gold:
        warnings.warn(
            f"{result.prediction_sentences_not_in_gold} of {result.prediction_sentences} prediction "
            f"sentences are not in the gold of {result.benchmark} ({gold}) and are not scored.{hint}",
            UnmatchedPredictionsWarning,
            stacklevel=2,
        )
    return result


def _evaluate_folder(name: str, folder: Path, *, binary: bool, gold: Path | None) -> EvalResult:
    """A shard folder (an annotation run over a benchmark's sentences, ``annotate`` as an OIE
    system) scored as one prediction file: its records, every language, in shard order."""
    import tempfile

    from openie4pp.errors import OpenIE4ppError
    from openie4pp.schema import Record
    from openie4pp.shards import iter_records

    unreadable = 0
    with tempfile.TemporaryDirectory(prefix="openie4pp-eval-") as tmp:
        joined = Path(tmp) / f"{folder.name}.jsonl"
        with joined.open("w", encoding="utf-8") as handle:
            for item in iter_records(folder):
                if isinstance(item, Record):
                    handle.write(item.model_dump_json() + "\n")
                else:
                    unreadable += 1
        if unreadable:
            warnings.warn(f"{folder}: {unreadable} shard lines are not valid records and are not scored "
                          f"(openie4pp validate {folder} lists them)", UnmatchedPredictionsWarning,
                          stacklevel=3)
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UnmatchedPredictionsWarning)
                return evaluate(name, joined, binary=binary, gold=gold)
        except OpenIE4ppError as error:  # name the folder the user gave, not the temporary file
            raise type(error)(str(error).replace(str(joined), str(folder))) from None
        finally:
            for w in caught:
                warnings.warn(str(w.message).replace(str(joined), str(folder)), w.category, stacklevel=3)


def _score(benchmark: Benchmark, gold: Path, predictions: Path, binary: bool) -> EvalResult:
    if benchmark.scorer == "carb":
        from openie4pp.eval.carb import score_carb

        return score_carb(gold, predictions, binary=binary)
    if benchmark.scorer == "re-oie2016":
        from openie4pp.eval.reoie2016 import score_reoie2016

        return score_reoie2016(gold, predictions, binary=binary)
    from openie4pp.eval.benchie import score_benchie

    return score_benchie(gold, predictions, benchmark.lang)


def check_plot_target(path: str | Path) -> Path:
    """The ``--plot`` PNG path, checked before scoring: a folder or a place where no file can be
    made is a usage error, not a failure after the work is done."""
    from openie4pp.errors import UsageError

    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--plot {path} is a folder; give the path of a PNG file to write")
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"--plot {path}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK):
        raise UsageError(f"--plot {path}: {parent} is not writable")
    return target


def format_table(result: EvalResult) -> str:
    rows = [
        ("benchmark", result.benchmark),
        ("predictions", str(result.n_predictions)),
        ("gold sentences without predictions",
         f"{result.gold_sentences_without_predictions} of {result.gold_sentences}"),
        ("prediction sentences not in gold",
         f"{result.prediction_sentences_not_in_gold} of {result.prediction_sentences}"),
    ]
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
    """The JSON object ``--json`` prints last: auc (not for BenchIE), precision, recall, f1,
    n_predictions, and the sentence counts (``gold_sentences``, ``prediction_sentences``,
    ``gold_sentences_without_predictions``, ``prediction_sentences_not_in_gold``)."""
    return json.dumps(result.summary())
