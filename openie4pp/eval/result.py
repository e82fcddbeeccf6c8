"""The one result type every scorer returns, so ``openie4pp eval`` prints and serialises them alike."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from typing import Any


class UnmatchedPredictionsWarning(UserWarning):
    """Some predictions name sentences that are not in the gold, so they are not scored at all."""


@dataclass
class EvalResult:
    """Scores as fractions in [0, 1] (not percentages).

    ``auc`` is None for BenchIE (it has no confidence curve); ``curve`` holds the
    precision/recall points (recall, precision, threshold) for plotting.
    """

    benchmark: str
    precision: float
    recall: float
    f1: float
    n_predictions: int
    auc: float | None = None
    threshold: float | None = None
    curve: list[tuple[float, float, float]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    gold_sentences: int = 0
    prediction_sentences: int = 0
    """Distinct sentences the predictions cover (records without extractions included)."""
    gold_sentences_without_predictions: int = 0
    prediction_sentences_not_in_gold: int = 0
    """Not scored at all: usually predictions made for another benchmark, split or id scheme."""

    @property
    def matched_sentences(self) -> int:
        return self.prediction_sentences - self.prediction_sentences_not_in_gold

    def set_coverage(self, gold: Collection[str], predicted: Collection[str]) -> None:
        """Count which sentences the gold and the predictions share (both as matching keys)."""
        gold_keys, predicted_keys = set(gold), set(predicted)
        self.gold_sentences = len(gold_keys)
        self.prediction_sentences = len(predicted_keys)
        self.gold_sentences_without_predictions = len(gold_keys - predicted_keys)
        self.prediction_sentences_not_in_gold = len(predicted_keys - gold_keys)

    def curve_points(self, limit: int = 200) -> list[list[float]]:
        """The curve as at most ``limit`` ``[recall, precision]`` points, evenly thinned along it
        (its ends kept): enough to draw it in a report, small enough for a metrics file."""
        points = sorted((float(r), float(p)) for r, p, _ in self.curve)
        if len(points) > limit > 1:
            step = (len(points) - 1) / (limit - 1)
            points = [points[round(i * step)] for i in range(limit)]
        return [[round(r, 5), round(p, 5)] for r, p in points]

    def summary(self) -> dict[str, Any]:
        """The JSON object ``openie4pp eval --json`` prints (no curve)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("curve", "details")}
        if self.auc is None:
            data.pop("auc")
        return data
