"""The recipe's configuration: built-in defaults <- a YAML file <- its ``stages.<N>`` <- overrides.

The defaults ARE ``train/configs/recipe.yaml`` (documented there, key by key), so the file a user
copies and the values the code falls back to cannot drift apart. Unknown keys are errors: a typo must
not silently train with a default.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULTS: dict[str, Any] = yaml.safe_load((CONFIG_DIR / "recipe.yaml").read_text(encoding="utf-8"))
DEFAULTS.pop("stages", None)
FREE_FORM = {"model"}  # head settings: any Multi2OIEConfig field, checked by Multi2OIEModel.from_encoder



def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> None:
    for key, value in update.items():
        if key not in base and where.rstrip(".") not in FREE_FORM:
            raise ValueError(f"unknown config key {where}{key!r}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge(base[key], value, f"{where}{key}.")
        else:
            base[key] = value


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``a.b=value`` pairs -> nested dict; values are YAML (``1e-4`` is read as a number too)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value")
        value = yaml.safe_load(raw) if raw else None
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), stage: int | None = None
) -> dict[str, Any]:
    """Defaults <- file <- file's ``stages.<stage>`` <- overrides; derived paths filled in."""
    cfg = copy.deepcopy(DEFAULTS)
    file = yaml.safe_load(Path(path).read_text(encoding="utf-8")) if path else {}
    stages = (file or {}).pop("stages", None) or {}
    _merge(cfg, file or {})
    cli = parse_overrides(overrides)
    stage = int(stage or cli.get("stage") or cfg["stage"])
    if stage not in (1, 2, 3):
        raise ValueError(f"stage must be 1, 2 or 3, not {stage}")
    _merge(cfg, stages.get(stage) or stages.get(str(stage)) or {})
    _merge(cfg, cli)
    cfg["stage"] = stage
    run = Path(cfg["run_dir"])
    cfg["output_dir"] = str(cfg["output_dir"] or run / f"stage{stage}")
    if stage > 1 and not cfg["init_from"]:
        cfg["init_from"] = str(run / f"stage{stage - 1}")
    cfg["data"]["cache_dir"] = cfg["data"]["cache_dir"] or str(run / "cache")
    for key in ("lr", "weight_decay", "eps", "warmup_ratio", "max_grad_norm"):
        cfg["optim"][key] = float(cfg["optim"][key])
    return cfg
