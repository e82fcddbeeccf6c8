"""What a trained model's report shows: training curves and evaluation PR curves, read from disk.

A stage folder (``train`` writes ``metrics.json`` and ``log.jsonl`` there) is one stage; a run
folder holding ``stage1/ stage2/ stage3/`` is reported stage after stage, the steps of each stage
counted from its own start (each stage is its own optimisation). The PR curves are the dev
evaluations recorded during training (``metrics.json``'s ``evals``, each with a thinned ``curve``)
plus any benchmark evaluations the caller passes (the quickstart's held-out scores).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOSS_PARTS = ("loss", "pred_loss", "arg_loss", "router_loss")


@dataclass(frozen=True)
class Evaluation:
    """One scored evaluation: the best-F1 point, the AUC and the curve's (recall, precision) points."""

    name: str
    precision: float | None
    recall: float | None
    f1: float | None
    auc: float | None
    curve: list[tuple[float, float]]

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> Evaluation:
        points = [(float(p[0]), float(p[1])) for p in data.get("curve") or () if len(p) >= 2]
        return cls(name, data.get("precision"), data.get("recall"), data.get("f1"), data.get("auc"), points)


@dataclass
class StageReport:
    name: str
    folder: Path
    metrics: dict[str, Any]
    log: list[dict[str, Any]]
    evaluations: list[Evaluation] = field(default_factory=list)

    def series(self, part: str) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of one loss part over the stage's log."""
        rows = [row for row in self.log if isinstance(row.get(part), (int, float))]
        return [int(row["step"]) for row in rows], [float(row[part]) for row in rows]

    @property
    def parts(self) -> list[str]:
        return [part for part in LOSS_PARTS if any(part in row for row in self.log)]

    @property
    def lr(self) -> tuple[list[int], list[float]]:
        return self.series("lr")


@dataclass
class TrainingReport:
    folder: Path
    stages: list[StageReport]
    benchmarks: list[Evaluation] = field(default_factory=list)


def is_model_folder(folder: Path) -> bool:
    """A stage folder (``metrics.json`` or ``log.jsonl``) or a run folder of stage folders."""
    return bool(_stage_folders(folder))


def _stage_folders(folder: Path) -> list[Path]:
    if (folder / "metrics.json").is_file() or (folder / "log.jsonl").is_file():
        return [folder]
    stages = [p for p in folder.iterdir() if p.is_dir() and re.fullmatch(r"stage\d+", p.name)
              and ((p / "metrics.json").is_file() or (p / "log.jsonl").is_file())] if folder.is_dir() else []
    return sorted(stages, key=lambda p: int(p.name[len("stage"):]))  # stage10 after stage2


def read_model_folder(folder: str | Path, benchmarks: Mapping[str, Mapping[str, Any]] | None = None
                      ) -> TrainingReport:
    """Read a stage or run folder; ``benchmarks``: name -> an evaluation's JSON (precision, recall,
    f1, auc, curve), drawn beside the dev evaluations."""
    root = Path(folder)
    stages = []
    for path in _stage_folders(root):
        metrics = _json(path / "metrics.json")
        log = _log(path / "log.jsonl")
        evaluations = [Evaluation.from_json(f"{path.name} dev, step {e.get('step')}", e)
                       for e in metrics.get("evals") or () if isinstance(e, dict)]
        stages.append(StageReport(path.name, path, metrics, log, evaluations))
    return TrainingReport(root, stages, [Evaluation.from_json(name, data)
                                         for name, data in sorted((benchmarks or {}).items())])


def _json(path: Path) -> dict[str, Any]:
    from openie4pp.report.annotation import read_json_object

    return read_json_object(path)


def _log(path: Path) -> list[dict[str, Any]]:
    """``log.jsonl``'s lines; a torn last line (a killed trainer) is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else ():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows
