"""Re-OIE2016 scorer, re-implementing how Multi2OIE and MT4CrossOIE score on the Re-OIE2016 JSON gold.

Both projects keep the gold as ``{sentence: [{"pred", "arg0".."arg3", "temp", "loc", "context", ...}]}``
(``Re-OIE2016.json``, ``-Spanish``, ``-Portuguese`` and their ``-Binary`` twins, which are the same
tuples with only ``arg0``/``arg1`` kept). Their ``Relabel_GoldReader``, which we follow, turns the
relation ``"<be>"`` into ``"[is]"``, deletes ``"<be> "`` elsewhere, and appends the non-empty slots in
the order arg0, arg1, arg2, arg3, **temp, loc** (``context`` is ignored; a missing arg0 shifts arg1
into first place). ``binary=True`` keeps only arg0/arg1 of the gold, so either file can be passed.

Two protocols, chosen by ``matcher`` (default: ``"lexical"`` for n-ary, ``"tuple"`` for binary):

``lexical`` -- Multi2OIE ``evaluate/evaluate.py`` (the OIE2016 benchmark) with ``Matcher.lexicalMatch``,
used by both projects for n-ary Re-OIE2016 (and by Multi2OIE for binary too). A prediction matches a
gold tuple when ``count / len(gold words) > 0.5``, where words are ``" ".join([relation, *args])``
split on single spaces and ``count`` counts *pairs* of equal gold/predicted words (so a repeated
word counts several times), case-sensitively. Per gold sentence (gold order), each gold tuple takes
the first not yet matched prediction (file order) that matches: it is a true positive at that
prediction's confidence; unmatched predictions are false positives. Predicted sentences not in the
gold are ignored. The curve is scikit-learn's ``precision_recall_curve`` over these labels (NaN and
infinite confidences become 0 first, as the original does) with recall scaled by
``matched / correct_total``. As the original does, a gold sentence *without any prediction* adds the
square of its tuple count to ``correct_total`` (its loop adds ``len(gold)`` once per gold tuple), so
recall's denominator is inflated by unpredicted multi-tuple sentences; ``details`` reports both.
Best F1 is Python's ``max`` by F1 over the points (thresholds ascending, first wins); AUC is
``sklearn.metrics.auc`` over all points including the closing (R=0, P=1).
Predictions need at least one argument: tab lines with fewer than four columns are skipped silently
by the original ``GeneralReader``, and we drop argument-less extractions of other inputs likewise.

``tuple`` -- MT4CrossOIE's ``test.py`` for ``*-Binary.json`` gold: its CaRB copy with
``binary_linient_tuple_match`` and no ``--binary`` rewrite (see :mod:`openie4pp.eval.carb`), the gold
read by ``Relabel_GoldReader``, predictions by its ``TabReader`` (which skips lines with fewer than
three columns). Its AUC differs from CaRB's: it keeps one point per distinct recall (the last
precision given for it) before the trapezoid. Both projects write binary predictions as relation plus
the first two arguments, so ``binary=True`` truncates predictions to two arguments in both protocols.

Sentence matching is CaRB's key (spaces, PTB escapes and ASCII punctuation removed), the same code in
both originals; non-ASCII punctuation (``¿``, ``¡``) is kept, as originally.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from openie4pp.eval.carb import CarbTuple, carb_curve, normalize_keys, normalize_sentence
from openie4pp.eval.curve import auc_trapezoid, best_f1_index, f1_scores, ranking_pr_curve
from openie4pp.eval.predictions import EvalInputError, Prediction, PredictionsInput, load_predictions
from openie4pp.eval.result import EvalResult

__all__ = ["read_reoie2016_gold", "score_reoie2016"]

_NARY_SLOTS = ("arg0", "arg1", "arg2", "arg3", "temp", "loc")
_BINARY_SLOTS = ("arg0", "arg1")
LEXICAL_THRESHOLD = 0.5


def _relabel(relation: str) -> str:
    return "[is]" if relation.strip() == "<be>" else relation.replace("<be> ", "")


def read_reoie2016_gold(path: str | os.PathLike[str], binary: bool = False) -> dict[str, list[CarbTuple]]:
    """Gold tuples by raw sentence, in file order, read as ``Relabel_GoldReader`` does (module doc)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"cannot read Re-OIE2016 gold: {exc}", p) from exc
    except json.JSONDecodeError as exc:
        raise EvalInputError(f"not valid JSON: {exc.msg} (column {exc.colno})", p, exc.lineno) from exc
    if not isinstance(data, dict) or not data:
        raise EvalInputError("expected a non-empty JSON object {sentence: [tuples]}", p)
    slots = _BINARY_SLOTS if binary else _NARY_SLOTS
    gold: dict[str, list[CarbTuple]] = {}
    for number, (sentence, tuples) in enumerate(data.items(), start=1):
        if not isinstance(tuples, list):
            raise EvalInputError(f"sentence {number} ({sentence[:40]!r}...): tuples are not a list", p)
        for index, t in enumerate(tuples):
            missing = [
                k for k in ("pred", *slots) if not isinstance(t, dict) or not isinstance(t.get(k), str)
            ]
            if missing:
                raise EvalInputError(
                    f"sentence {number} ({sentence[:40]!r}...), tuple {index}: missing/non-string {missing}",
                    p,
                )
            args = [t[slot] for slot in slots if t[slot] != ""]
            gold.setdefault(sentence, []).append(CarbTuple(_relabel(t["pred"]), args))
    return gold


def _language(path: str | os.PathLike[str]) -> str:
    name = Path(path).name.lower()
    return "es" if "spanish" in name else "pt" if "portuguese" in name else "en"


def _group(predictions: list[Prediction], max_args: int | None) -> dict[str, list[CarbTuple]]:
    grouped: dict[str, list[CarbTuple]] = {}
    for p in predictions:
        args = list(p.args if max_args is None else p.args[:max_args])
        grouped.setdefault(p.sentence, []).append(CarbTuple(p.relation, args, p.confidence))
    return grouped


def _words(t: CarbTuple) -> Counter[str]:
    return Counter(" ".join([t.relation, *t.args]).split(" "))


def _lexical_labels(
    gold: dict[str, list[CarbTuple]], predicted: dict[str, list[CarbTuple]]
) -> tuple[list[int], list[float], dict[str, int]]:
    """The OIE2016 matching loop: 0/1 labels and confidences, plus its counters."""
    labels: list[int] = []
    scores: list[float] = []
    correct_total = unmatched = unpredicted = 0
    for key, gold_tuples in gold.items():
        preds = predicted.get(key)
        if not preds:
            unpredicted += 1
            correct_total += len(gold_tuples) ** 2  # as the original does: len(gold) per gold tuple
            unmatched += len(gold_tuples) ** 2
            continue
        pred_words = [_words(e) for e in preds]
        taken = [False] * len(preds)
        for g in gold_tuples:
            correct_total += 1
            gold_words = _words(g)
            gold_len = sum(gold_words.values())
            for j, words in enumerate(pred_words):
                if taken[j]:
                    continue
                pairs = sum(count * words.get(w, 0) for w, count in gold_words.items())
                if pairs / gold_len > LEXICAL_THRESHOLD:
                    labels.append(1)
                    scores.append(preds[j].confidence)
                    taken[j] = True
                    break
            else:
                unmatched += 1
        for j, e in enumerate(preds):
            if not taken[j]:
                labels.append(0)
                scores.append(e.confidence)
    counts = {
        "correct_total": correct_total,
        "unmatched": unmatched,
        "matched": correct_total - unmatched,
        "sentences_without_predictions": unpredicted,
    }
    return labels, scores, counts


def _score_lexical(
    gold: dict[str, list[CarbTuple]], predicted: dict[str, list[CarbTuple]]
) -> tuple[float, float, float, float, float | None, list[tuple[float, float, float]], dict[str, Any]]:
    labels, scores, counts = _lexical_labels(gold, predicted)
    details: dict[str, Any] = dict(counts)
    if not labels:
        return 0.0, 0.0, 0.0, 0.0, None, [], details
    # as the original does: NaN and +-inf confidences count as 0
    clean = [s if math.isfinite(s) else 0.0 for s in scores]
    details["non_finite_confidences"] = sum(not math.isfinite(s) for s in scores)
    precision, recall, thresholds = ranking_pr_curve(labels, clean)
    recall = recall * ((counts["correct_total"] - counts["unmatched"]) / float(counts["correct_total"]))
    auc = auc_trapezoid(recall, precision)
    f1 = f1_scores(precision[:-1], recall[:-1])
    best = best_f1_index(f1, "python-max")
    curve = [
        (float(r), float(p), float(t))
        for r, p, t in zip(recall[:-1], precision[:-1], thresholds, strict=True)
    ]
    if best is None or math.isnan(f1[best]):
        return auc, 0.0, 0.0, 0.0, None, curve, details
    return (
        auc,
        float(precision[best]),
        float(recall[best]),
        float(f1[best]),
        float(thresholds[best]),
        curve,
        details,
    )


def score_reoie2016(
    gold_path: str | os.PathLike[str],
    predictions: PredictionsInput,
    binary: bool = False,
    *,
    matcher: Literal["lexical", "tuple"] | None = None,
) -> EvalResult:
    """Score predictions on a Re-OIE2016 JSON gold as Multi2OIE / MT4CrossOIE do (see module doc).

    ``predictions`` is a tab file, an OpenIE4++ JSONL file or an in-memory list (as for
    :func:`~openie4pp.eval.carb.score_carb`). ``binary`` scores the binary variant (gold arg0/arg1,
    predictions cut to two arguments); ``matcher`` defaults to ``"lexical"`` for n-ary and ``"tuple"``
    (MT4CrossOIE) for binary, and ``"lexical"`` with ``binary=True`` gives Multi2OIE's binary protocol.
    """
    protocol = matcher or ("tuple" if binary else "lexical")
    if protocol not in ("lexical", "tuple"):
        raise ValueError(f"unknown matcher {matcher!r} (expected 'lexical' or 'tuple')")
    min_columns = 4 if protocol == "lexical" else 3
    loaded = load_predictions(predictions, min_columns=min_columns, skip_short=True)
    kept = loaded.predictions
    dropped_no_args = 0
    if protocol == "lexical":
        kept = [p for p in kept if p.args]
        dropped_no_args = len(loaded.predictions) - len(kept)
    gold, _ = normalize_keys(read_reoie2016_gold(gold_path, binary=binary))
    predicted, shadowed = normalize_keys(_group(kept, 2 if binary else None))

    details: dict[str, Any] = {
        "mode": "binary" if binary else "n-ary",
        "matcher": "lexicalMatch" if protocol == "lexical" else "binary_linient_tuple_match",
        "gold": str(gold_path),
        "predictions": loaded.source,
        "format": loaded.format,
        "gold_sentences": len(gold),
        "gold_tuples": sum(len(ts) for ts in gold.values()),
        "predicted_sentences": len(predicted),
        "unscored_predictions": sum(len(ts) for k, ts in predicted.items() if k not in gold),
        "shadowed_predictions": shadowed,
        "skipped_lines": loaded.skipped_lines,
        "dropped_without_arguments": dropped_no_args,
    }
    if protocol == "lexical":
        auc, precision, recall, f1, threshold, points, extra = _score_lexical(gold, predicted)
        details.update(extra)
    else:
        curve = carb_curve(gold, predicted)
        precision, recall, f1, threshold = curve.best()
        auc, points = curve.auc("unique-recall"), curve.points()
        details["thresholds"] = len(curve.thresholds)
        details["nan_confidences"] = int(sum(math.isnan(p.confidence) for p in kept))
    result = EvalResult(
        benchmark=f"re-oie2016-{_language(gold_path)}" + ("-binary" if binary else ""),
        precision=precision,
        recall=recall,
        f1=f1,
        n_predictions=len(kept),
        auc=auc,
        threshold=threshold,
        curve=points,
        details=details,
    )
    result.set_coverage(gold, [normalize_sentence(text) for text in loaded.sentences])
    return result
