"""Precision/recall curve arithmetic shared by the scorers, and the PR-curve plot.

The originals compute their curves differently, so only the pieces they really share live here:

* the area under the curve is scikit-learn's ``metrics.auc``: the trapezoid rule over the points
  *in the order given*, its sign fixed by whether recall rises or falls (:func:`auc_trapezoid`);
  MT4CrossOIE's CaRB copy first keeps one point per recall value (:func:`auc_unique_recall`);
* F1 is ``2PR / (P + R)``, NaN where ``P + R == 0`` (numpy's 0/0), and which point is "best"
  depends on how each original skipped those NaNs (:func:`best_f1_index`);
* the OIE2016-style ranking curve of Re-OIE2016 is scikit-learn's ``precision_recall_curve``
  (:func:`ranking_pr_curve`).

CaRB's own threshold sweep (a one-to-one matching per confidence threshold) is CaRB-specific and
lives in :mod:`openie4pp.eval.carb`. No scikit-learn dependency: we re-derive what it computes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from openie4pp.eval.result import EvalResult

__all__ = ["auc_trapezoid", "auc_unique_recall", "best_f1_index", "f1_scores", "plot_pr", "ranking_pr_curve"]


def auc_trapezoid(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Area under ``y(x)`` by the trapezoid rule, as ``sklearn.metrics.auc`` computes it.

    Points are used in the given order; ``x`` must be monotonic (either way) and the area is
    returned positive. A curve of fewer than two points has no area (sklearn raises; callers that
    can hit this handle it first).
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.size < 2:
        raise ValueError(f"at least 2 points are needed to compute an area, got {xs.size}")
    dx = np.diff(xs)
    direction = 1.0
    if np.any(dx < 0):
        if not np.all(dx <= 0):
            raise ValueError("x is neither increasing nor decreasing")
        direction = -1.0
    # np.trapezoid's formula, term by term, so the floating-point result is the same.
    return float(direction * (dx * (ys[1:] + ys[:-1]) / 2.0).sum())


def auc_unique_recall(recall: Sequence[float], precision: Sequence[float]) -> float:
    """MT4CrossOIE's CaRB AUC: per distinct recall the *last* precision given, sorted by recall, trapezoid.

    This is ``{rec: prec for rec, prec in zip(...)}`` followed by sorting the items, which drops the
    vertical steps of the curve that the original CaRB keeps (so the two AUCs differ slightly).
    """
    by_recall: dict[float, float] = {}
    for r, p in zip(recall, precision, strict=True):
        by_recall[float(r)] = float(p)
    items = sorted(by_recall.items())
    if len(items) < 2:
        return 0.0
    return auc_trapezoid([r for r, _ in items], [p for _, p in items])


def f1_scores(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """``2PR/(P+R)`` element-wise, evaluated as ``(2*P)*R/(P+R)``; NaN where ``P + R == 0``."""
    p = np.asarray(precision, dtype=float)
    r = np.asarray(recall, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * p * r / (p + r)


def best_f1_index(f1: np.ndarray, nan_policy: Literal["skip", "python-max"]) -> int | None:
    """Index of the best F1, ties going to the first index; None when the original reports no point.

    ``skip`` is ``np.nanargmax`` (CaRB): NaNs are ignored and an all-NaN (or empty) curve has no
    best point. ``python-max`` is Python's ``max(..., key=f1)`` (OIE2016/Re-OIE2016): a NaN can
    never replace the current best, but a NaN in first place is never replaced either.
    """
    values = np.asarray(f1, dtype=float)
    if values.size == 0:
        return None
    if nan_policy == "skip":
        if np.all(np.isnan(values)):
            return None
        return int(np.nanargmax(values))
    best = 0
    for index in range(1, values.size):
        if values[index] > values[best]:  # False whenever either side is NaN, as in max()
            best = index
    return best


def ranking_pr_curve(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``sklearn.metrics.precision_recall_curve`` for 0/1 labels: (precision, recall, thresholds).

    One point per distinct score, thresholds ascending, then the closing point (P=1, R=0) without a
    threshold. Recall is ``tp / tp_total`` (all ones if there is no positive, as sklearn >= 1.1 does).
    Older sklearn also dropped the points below the first one reaching full recall; those points
    share that recall and have lower precision, so neither the AUC nor the best F1 depends on it.
    """
    y = np.asarray(labels, dtype=float)
    s = np.asarray(scores, dtype=float)
    if y.size == 0:
        return np.array([1.0]), np.array([0.0]), np.array([])
    order = np.argsort(s, kind="mergesort")[::-1]
    s = s[order]
    y = y[order]
    distinct = np.where(np.diff(s))[0]
    ends = np.r_[distinct, y.size - 1]
    tps = np.cumsum(y)[ends]
    fps = 1 + ends - tps
    precision = tps / (tps + fps)
    recall = np.ones_like(tps) if tps[-1] == 0 else tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], s[ends][::-1]


def plot_pr(result: EvalResult, path: str | os.PathLike[str]) -> Path:
    """Draw ``result.curve`` (recall on x, precision on y) as a PNG at ``path`` and return the path.

    Uses matplotlib's Agg canvas directly (no pyplot, no global backend switch), so it works headless
    and does not disturb a caller's own matplotlib setup. The best-F1 point is marked.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(path)
    figure = Figure(figsize=(5.0, 4.0), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    points = sorted(result.curve, key=lambda point: point[0])
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], drawstyle="default", linewidth=1.5)
    ax.plot(
        [result.recall], [result.precision], marker="o", linestyle="none", label=f"best F1 {result.f1:.3f}"
    )
    auc = "" if result.auc is None or math.isnan(result.auc) else f"  AUC {result.auc:.3f}"
    ax.set_title(f"{result.benchmark}{auc}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return out
