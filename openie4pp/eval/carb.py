"""CaRB scorer: an independent, exact re-implementation of ``carb.py`` (dair-iitd/CaRB, EMNLP 2019).

We reproduce the original's numbers (REFERENCE.md: all 16 AUC/P/R/F1 values to 4+ decimals) and its
quirks, each marked "as the original does". Only the default configuration is implemented: the
``binary_linient_tuple_match`` matcher (CaRB's "tuple match", what ``carb.py`` uses when no
``--*Match`` flag is given), with or without ``--binary``.

Reading. Gold lines are ``sentence \\t relation \\t arg1 ...``; each line is ``strip()``-ed and split on
tabs, then the sentence, relation and every argument are stripped, and arguments containing
``"C: "`` (CaRB's context annotations) are dropped, as the current original ``GoldReader`` does (the
REFERENCE.md numbers need it). Predictions are read by :mod:`openie4pp.eval.predictions` with
``TabReader`` semantics (at least sentence, confidence, relation; fewer columns crash the original and
raise here). Duplicate lines stay separate predictions, as originally: each counts in precision's
denominator and may take another gold tuple in the one-to-one matching.

Sentences. Gold and predictions are matched on a *key*: the sentence with spaces removed, PTB
bracket escapes (``-LRB-`` ...) undone and ASCII punctuation removed. As the original does (it
rebuilds a dict from the keys), when several raw sentences share a key only the last raw sentence's
extractions survive; the dropped ones are counted in ``details["shadowed_predictions"]``. Predicted
sentences absent from the gold are not scored, but their confidences still become thresholds.

Matching (per gold/predicted pair, case-sensitive, whitespace tokens, no stop-word removal): both
tuples become ``(arg1, relation, rest-of-args-joined)``; the relation must share a token (multiset
overlap; a spare ``be`` in the prediction also matches any form of *be* in the gold relation), else
the pair scores (0, 0); then each gold argument slot adds its tokens to the recall denominator and,
if the prediction has that slot, the prediction's tokens to the precision denominator and the
overlap to both numerators; a gold slot the prediction lacks scores (0, 0). Precision and recall of
the pair are the ratios (0 for an empty denominator). When the gold relation contains (as a
substring) said/told/added/adds/says, the prediction is also tried with its arguments swapped and
the larger (precision, recall) pair, compared lexicographically, is kept.

Curve. Every distinct confidence is a threshold. At a threshold, per gold sentence, recall adds the
best recall of each gold tuple over the selected predictions (confidence >= threshold); precision
adds the scores of a greedy one-to-one matching (repeatedly the highest remaining precision, ties to
the lowest gold then prediction index) and counts every selected prediction in its denominator.
Precision is 1 at thresholds with no selected prediction; recall divides by all gold tuples. The
best-F1 point is ``np.nanargmax`` over thresholds; AUC is the trapezoid over the points in threshold
order plus (R=0, P=1) (``sklearn.metrics.auc``). No threshold at all scores 0 everywhere.

``--binary`` (``binary=True``) first rewrites gold and predictions alike: ``(r, a1, a2, a3...)``
becomes ``(a1, r, a2)`` plus one tuple per extra argument; as the original does (it appends the same
mutated object repeatedly), all ``n-1`` tuples of an ``n``-argument extraction end up equal to the
*last* one, ``(a1, r + " " + a2 [+ preposition], an)``, the preposition being ``an``'s first word
moved to the relation when it is one of CaRB's 28 prepositions.

Deviations, where the original has no defined behaviour: a NaN confidence is never selected (as
``NaN >= t`` is false in the original) and is not a threshold (the original's NaN thresholds sort
unpredictably); an empty extra argument under ``binary`` moves no preposition (the original raises
IndexError); blank gold lines are skipped (the original crashes). Garbage raises
:class:`~openie4pp.eval.predictions.EvalInputError` naming file and line.

Speed: token multisets are built once per tuple and the per-threshold matching reuses one score
matrix per sentence (the original re-scans Python lists), so 20,000 predictions score in under a
second on one core (``benchmarks/eval_speed.py``) while every sum is accumulated in the original's
order, which keeps results bit-for-bit comparable.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from openie4pp.eval.curve import auc_trapezoid, auc_unique_recall, best_f1_index, f1_scores
from openie4pp.eval.predictions import EvalInputError, Prediction, PredictionsInput, load_predictions
from openie4pp.eval.result import EvalResult

__all__ = [
    "CarbCurve",
    "CarbTuple",
    "binarize",
    "carb_curve",
    "normalize_sentence",
    "read_carb_gold",
    "score_carb",
]

PREPOSITIONS = frozenset(
    {
        *("above", "across", "against", "along", "among", "around", "at", "before", "behind", "below"),
        *("beneath", "beside", "between", "by", "for", "from", "in", "into", "near", "of", "off", "on"),
        *("to", "toward", "under", "upon", "with", "within"),
    }
)
SAID_VERBS = ("said", "told", "added", "adds", "says")
FORMS_OF_BE = ("be", "is", "am", "are", "was", "were", "been", "being")
_PUNCTUATION = re.compile("[" + re.escape(string.punctuation) + "]")
_PTB_ESCAPES = (
    ("(", "-LRB-"),
    (")", "-RRB-"),
    ("[", "-LSB-"),
    ("]", "-RSB-"),
    ("{", "-LCB-"),
    ("}", "-RCB-"),
)


@dataclass
class CarbTuple:
    """An extraction as CaRB sees it: relation, arguments in order, confidence (1 for gold)."""

    relation: str
    args: list[str]
    confidence: float = 1.0


def normalize_sentence(text: str) -> str:
    """The matching key: spaces removed, PTB escapes undone, ASCII punctuation removed (as the original)."""
    key = text.replace(" ", "")
    for bracket, escape in _PTB_ESCAPES:
        key = key.replace(escape, bracket)
    return _PUNCTUATION.sub("", key)


def read_carb_gold(path: str | os.PathLike[str]) -> dict[str, list[CarbTuple]]:
    """Gold tuples by stripped raw sentence, in file order (``GoldReader`` semantics, see module doc)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalInputError(f"cannot read CaRB gold: {exc}", p) from exc
    gold: dict[str, list[CarbTuple]] = {}
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        if not line.strip():
            continue
        columns = line.strip().split("\t")
        if len(columns) < 2:
            raise EvalInputError("expected at least 2 tab-separated columns (sentence, relation)", p, number)
        args = [a.strip() for a in columns[2:] if "C: " not in a]
        gold.setdefault(columns[0].strip(), []).append(CarbTuple(columns[1].strip(), args))
    if not gold:
        raise EvalInputError("CaRB gold file has no tuples", p)
    return gold


def normalize_keys(by_sentence: dict[str, list[CarbTuple]]) -> tuple[dict[str, list[CarbTuple]], int]:
    """Re-key by :func:`normalize_sentence`; a later raw sentence replaces an earlier one with the same key.

    Returns the re-keyed dict and how many tuples were dropped that way (as the original's
    ``dict([(normalizeKey(k), v) ...])`` drops them).
    """
    out: dict[str, list[CarbTuple]] = {}
    dropped = 0
    for sentence, tuples in by_sentence.items():
        key = normalize_sentence(sentence)
        dropped += len(out.get(key, ()))
        out[key] = tuples
    return out, dropped


def _binarize_one(t: CarbTuple) -> list[CarbTuple]:
    if len(t.args) <= 2:
        return [CarbTuple(t.relation, t.args[:2], t.confidence)]
    words = t.args[-1].split()
    relation = t.relation + " " + t.args[1]
    if words and words[0].lower() in PREPOSITIONS:
        relation += " " + words[0]
        words = words[1:]
    last = CarbTuple(relation, [t.args[0], " ".join(words)], t.confidence)
    return [last] * (len(t.args) - 1)  # the original's n-1 appends of one mutated object


def binarize(by_key: dict[str, list[CarbTuple]]) -> dict[str, list[CarbTuple]]:
    """CaRB's ``--binary`` rewrite of every tuple (see the module docstring for its aliasing quirk)."""
    return {key: [b for t in tuples for b in _binarize_one(t)] for key, tuples in by_key.items()}


def _bag(text: str) -> tuple[dict[str, int], int]:
    words = text.split()
    return Counter(words), len(words)


def _overlap(a: dict[str, int], b: dict[str, int]) -> int:
    """Multiset intersection size: what the original's remove-as-you-match loop counts."""
    if len(a) > len(b):
        a, b = b, a
    n = 0
    for word, count in a.items():
        other = b.get(word)
        if other:
            n += count if count < other else other
    return n


@dataclass
class _Side:
    """Token bags of one tuple after the matcher's ``(arg1, rest-joined)`` regrouping."""

    rel: dict[str, int]
    rel_len: int
    args: list[tuple[dict[str, int], int]]
    be: int = 0
    be_form: bool = False
    said: bool = False
    swapped: list[tuple[dict[str, int], int]] = field(default_factory=list)

    @classmethod
    def of(cls, t: CarbTuple) -> _Side:
        rel, rel_len = _bag(t.relation)
        args = (
            [_bag(t.args[0]), _bag(" ".join(t.args[1:]))] if len(t.args) >= 2 else [_bag(a) for a in t.args]
        )
        return cls(
            rel,
            rel_len,
            args,
            be=rel.get("be", 0),
            be_form=any(form in rel for form in FORMS_OF_BE),
            said=any(verb in t.relation for verb in SAID_VERBS),
            swapped=args[::-1] if len(args) == 2 else args,
        )


def _lenient(gold: _Side, pred: _Side, pred_args: list[tuple[dict[str, int], int]]) -> tuple[float, float]:
    """``linient_tuple_match`` on pre-tokenised sides: (precision, recall) of one pair."""
    matched = _overlap(gold.rel, pred.rel)
    if pred.be > gold.rel.get("be", 0) and gold.be_form:  # a spare predicted "be" matches is/was/...
        matched += 1
    if matched == 0:
        return (0, 0)
    p_num = r_num = matched
    p_den, r_den = pred.rel_len, gold.rel_len
    for i, (gold_bag, gold_len) in enumerate(gold.args):
        r_den += gold_len
        if len(pred_args) <= i:
            return (0, 0)
        pred_bag, pred_len = pred_args[i]
        p_den += pred_len
        k = _overlap(gold_bag, pred_bag)
        p_num += k
        r_num += k
    return (p_num / p_den if p_den else 0, r_num / r_den if r_den else 0)


def _pair_scores(golds: Sequence[_Side], preds: Sequence[_Side]) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall matrices (gold x prediction) of ``binary_linient_tuple_match``."""
    prec = np.zeros((len(golds), len(preds)))
    rec = np.zeros((len(golds), len(preds)))
    for i, g in enumerate(golds):
        for j, e in enumerate(preds):
            score = _lenient(g, e, e.args)
            if g.said:
                score = max(score, _lenient(g, e, e.swapped))
            prec[i, j], rec[i, j] = score
    return prec, rec


def _greedy_precision(prec: np.ndarray) -> float:
    """Sum of the greedy one-to-one matching's precisions, picking in the original's order."""
    m = prec.copy()
    n_cols = m.shape[1]
    total = 0.0
    for _ in range(min(m.shape)):
        i, j = divmod(int(m.argmax()), n_cols)  # first maximum in row-major order
        total += float(m[i, j])
        m[i, :] = -1.0
        m[:, j] = -1.0
    return total


@dataclass
class CarbCurve:
    """Per threshold (ascending): precision, recall; plus what went into them."""

    thresholds: list[float]
    precision: np.ndarray
    recall: np.ndarray
    n_gold: int
    n_scored: int = 0

    def best(self) -> tuple[float, float, float, float | None]:
        """(precision, recall, F1, threshold) at the best F1 (``np.nanargmax``), or zeros."""
        index = best_f1_index(f1_scores(self.precision, self.recall), "skip")
        if index is None:
            return 0.0, 0.0, 0.0, None
        p, r = float(self.precision[index]), float(self.recall[index])
        return p, r, float(f1_scores(np.array([p]), np.array([r]))[0]), self.thresholds[index]

    def auc(self, variant: Literal["carb", "unique-recall"] = "carb") -> float:
        """CaRB's AUC (all points in threshold order, then R=0/P=1) or MT4CrossOIE's unique-recall one."""
        if not self.thresholds:
            return 0.0
        recall = [*self.recall.tolist(), 0.0]
        precision = [*self.precision.tolist(), 1.0]
        if variant == "unique-recall":
            return auc_unique_recall(recall, precision)
        return auc_trapezoid(recall, precision)

    def points(self) -> list[tuple[float, float, float]]:
        return [
            (float(r), float(p), t)
            for r, p, t in zip(self.recall, self.precision, self.thresholds, strict=True)
        ]


def carb_curve(gold: dict[str, list[CarbTuple]], predicted: dict[str, list[CarbTuple]]) -> CarbCurve:
    """The original ``Benchmark.compare`` sweep on already keyed (and, if wanted, binarised) tuples."""
    thresholds = sorted(
        {t.confidence for ts in predicted.values() for t in ts if not math.isnan(t.confidence)}
    )
    position = {c: k for k, c in enumerate(thresholds)}
    p_num = np.zeros(len(thresholds))
    p_den = np.zeros(len(thresholds))
    r_num = np.zeros(len(thresholds))
    n_gold = n_scored = 0
    for key, gold_tuples in gold.items():
        n_gold += len(gold_tuples)
        preds = predicted.get(key, [])
        if not preds:
            continue
        n_scored += len(preds)
        prec, rec = _pair_scores([_Side.of(t) for t in gold_tuples], [_Side.of(t) for t in preds])
        confidences = np.array([t.confidence for t in preds])
        start = 0
        for level in sorted({c for c in confidences.tolist() if not math.isnan(c)}):
            selected = confidences >= level
            recall_sum = 0.0
            for best in rec[:, selected].max(axis=1).tolist():  # summed in gold order, as the original
                recall_sum += best
            end = position[level] + 1
            p_num[start:end] += _greedy_precision(prec[:, selected])
            p_den[start:end] += int(selected.sum())
            r_num[start:end] += recall_sum
            start = end
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(p_den > 0, p_num / p_den, 1.0)
    recall = r_num / n_gold if n_gold else np.zeros(len(thresholds))
    return CarbCurve(thresholds, precision, recall, n_gold, n_scored)


def _group(predictions: Sequence[Prediction]) -> dict[str, list[CarbTuple]]:
    grouped: dict[str, list[CarbTuple]] = {}
    for p in predictions:
        grouped.setdefault(p.sentence, []).append(CarbTuple(p.relation, list(p.args), p.confidence))
    return grouped


def score_carb(
    gold_path: str | os.PathLike[str], predictions: PredictionsInput, binary: bool = False
) -> EvalResult:
    """Score predictions against CaRB gold exactly as the original ``carb.py`` does (see module doc).

    ``predictions`` is a tab file (``sentence \\t confidence \\t relation \\t args...``), an OpenIE4++
    JSONL file (detected), or an in-memory list of :class:`~openie4pp.eval.predictions.Prediction`,
    :class:`~openie4pp.schema.Record` or ``(sentence, confidence, relation, args)`` tuples.
    ``binary`` is the original's ``--binary``. Scores are fractions, not rounded (the original prints
    3 decimals).
    """
    loaded = load_predictions(predictions, min_columns=3)
    gold, _ = normalize_keys(read_carb_gold(gold_path))
    predicted, shadowed = normalize_keys(_group(loaded.predictions))
    if binary:
        gold, predicted = binarize(gold), binarize(predicted)
    curve = carb_curve(gold, predicted)
    precision, recall, f1, threshold = curve.best()
    n_nan = sum(math.isnan(p.confidence) for p in loaded.predictions)
    result = EvalResult(
        benchmark="carb-binary" if binary else "carb",
        precision=precision,
        recall=recall,
        f1=f1,
        n_predictions=len(loaded.predictions),
        auc=curve.auc(),
        threshold=threshold,
        curve=curve.points(),
        details={
            "mode": "binary" if binary else "n-ary",
            "matcher": "binary_linient_tuple_match",
            "gold": str(gold_path),
            "predictions": loaded.source,
            "format": loaded.format,
            "gold_sentences": len(gold),
            "gold_tuples": curve.n_gold,
            "predicted_sentences": len(predicted),
            "scored_predictions": curve.n_scored,
            "unscored_predictions": sum(len(ts) for k, ts in predicted.items() if k not in gold),
            "shadowed_predictions": shadowed,
            "nan_confidences": n_nan,
            "thresholds": len(curve.thresholds),
        },
    )
    result.set_coverage(gold, [normalize_sentence(text) for text in loaded.sentences])
    return result
