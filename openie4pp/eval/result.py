"""The one result type every scorer returns, so ``openie4pp eval`` prints and serialises them alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    def summary(self) -> dict[str, Any]:
        """The JSON object ``openie4pp eval --json`` prints (no curve)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("curve", "details")}
        if self.auc is None:
            data.pop("auc")
        return data
