"""The recipe's configuration: built-in defaults <- a YAML file <- its ``stages.<N>`` <- overrides.

The defaults ARE ``train/configs/recipe.yaml`` (documented there, key by key), so the file a user
copies and the values the code falls back to cannot drift apart. The merged result is validated
by :class:`RecipeConfig` (pydantic, ``extra="forbid"``): an unknown key, a wrong type, ``nan`` or a
value out of range is a :class:`~openie4pp.errors.UsageError` naming the dotted key, before anything
is loaded; a typo must not silently train with a default, and ``max_steps=-5`` must not train 0
steps. :func:`load_config` returns that typed model, and the recipe reads it as such: a key read
under a wrong name is a type error for mypy, not a ``KeyError`` an hour into a run.

Overrides are typed by the key they set, not guessed from their text: a text key keeps the raw text
(``run_dir=1e5`` is the folder ``1e5``, ``mixed_precision=no`` is ``"no"``, not YAML's ``False``);
every other value is YAML (``data.train=[carb-dev]``, ``eval.limit=null``) and numbers are parsed by
the numeric field they go to, which refuses ``nan`` and ``inf``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from openie4pp import benchmarks
from openie4pp.errors import UsageError
from openie4pp.schema import canonical_lang

from .sources import check_source_spec
from .validation_errors import describe

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULTS: dict[str, Any] = yaml.safe_load((CONFIG_DIR / "recipe.yaml").read_text(encoding="utf-8"))
DEFAULTS.pop("stages", None)
FREE_FORM = {"model"}  # head settings: any Multi2OIEConfig field, checked against its signature

Text = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0)]


def canonical_languages(value: list[str] | None) -> list[str] | None:
    """Canonical BCP-47 tags (``EN`` -> ``en``), each once: two spellings must not be two experts."""
    if value is None:
        return None
    tags = [canonical_lang(code) for code in value]
    if twice := sorted({tag for tag in tags if tags.count(tag) > 1}):
        raise ValueError(f"lists {', '.join(twice)} more than once")
    return tags


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class DataConfig(_Section):
    train: list[str | dict[str, Any]] = Field(min_length=1)
    max_length: int = Field(ge=3)
    cache_dir: Text | None
    bucket_size: Count | None
    num_proc: Count | None
    max_rejected_fraction: Fraction
    language_temperature: float

    @field_validator("language_temperature")
    @classmethod
    def _temperature(cls, value: float) -> float:
        if not value >= 1.0:  # below 1 sharpens towards the majority language, can starve one to 0
            raise ValueError(
                f"must be a number >= 1 (1 = natural language proportions, 100 = nearly uniform), not {value}"
            )
        return value

    @field_validator("train", mode="before")
    @classmethod
    def _sources(cls, value: Any) -> Any:
        if isinstance(value, (str, Path, Mapping)):
            value = [value]  # one source needs no brackets
        if not isinstance(value, list):
            return value  # pydantic says "a valid list"
        checked = []
        for index, spec in enumerate(value):
            try:
                checked.append(check_source_spec(spec))
            except ValueError as error:
                problem = str(error)  # ".limit: ..." names a key inside the source
                where = f"[{index}]" if problem.startswith(".") else f"[{index}]: "
                raise ValueError(where + problem) from None
        return checked


class MoeConfig(_Section):
    n_experts: Count
    rank: Count
    alpha: Positive
    top_k: Count | None
    dropout: float = Field(ge=0.0, lt=1.0)
    languages: list[str] | None
    router_aux_weight: float = Field(ge=0.0)
    experts_tied: bool
    expert_epochs: Count

    @field_validator("languages")
    @classmethod
    def _canonical(cls, value: list[str] | None) -> list[str] | None:
        return canonical_languages(value)


class OptimConfig(_Section):
    lr: Positive
    head_lr: Positive | None = None
    weight_decay: float = Field(ge=0.0)
    betas: list[float] = Field(min_length=2, max_length=2)
    eps: Positive
    warmup_ratio: Fraction
    max_grad_norm: Positive

    @field_validator("betas")
    @classmethod
    def _betas(cls, value: list[float]) -> list[float]:
        if not all(0.0 <= beta < 1.0 for beta in value):
            raise ValueError("each beta must be in [0, 1)")
        return value


class EvalConfig(_Section):
    benchmark: Text | None
    every: int = Field(ge=0)
    metric: Literal["f1", "auc"]
    batch_size: Count
    limit: Count | None

    @field_validator("benchmark")
    @classmethod
    def _scorable(cls, value: str | None) -> str | None:
        """A benchmark with a scorer: the dev score picks the best checkpoint (OIE2016 dev has none)."""
        known = benchmarks.names(scorable=True)
        if value is not None and value not in known:
            raise ValueError(f"unknown or unscorable benchmark {value!r} (scorable: {', '.join(known)})")
        return value


class RecipeConfig(_Section):
    """Every key of ``train/configs/recipe.yaml`` with its type and range (the file documents them).

    ``output_dir``, ``init_from`` (stages 2-3) and ``data.cache_dir`` left ``null`` are derived from
    ``run_dir`` and ``stage`` on validation, so a validated config always has them; the one copy a
    user sees in ``training_args.yaml`` is the one the run used."""

    stage: Literal[1, 2, 3]
    run_dir: Text
    output_dir: Text | None
    init_from: Text | None
    encoder: Text
    languages: list[str] | None
    seed: int = Field(ge=0)
    data: DataConfig
    model: dict[str, Any]
    moe: MoeConfig
    batch_size: Count
    grad_accum: Count
    epochs: Count
    max_steps: Count | None
    halt_at_step: Count | None
    mixed_precision: Literal["no", "fp16", "bf16"]
    optim: OptimConfig
    eval: EvalConfig
    checkpoint_every: int = Field(ge=0)
    resume: bool
    overwrite: bool
    log_every: Count
    progress: bool

    @field_validator("languages")
    @classmethod
    def _canonical(cls, value: list[str] | None) -> list[str] | None:
        return canonical_languages(value)

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        return "no" if value is False else value  # `mixed_precision: no` in a YAML file

    @field_validator("model")
    @classmethod
    def _head_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = _head_setting_names()
        for key, setting in value.items():
            if allowed is not None and key not in allowed:
                raise ValueError(f".{key}: unknown head setting (allowed: {', '.join(sorted(allowed))})")
            if isinstance(setting, float) and not math.isfinite(setting):
                raise ValueError(f".{key}: must be a finite number, not {setting}")
        return value

    @model_validator(mode="after")
    def _one_way_to_reuse(self) -> RecipeConfig:
        if self.resume and self.overwrite:
            raise ValueError(
                "resume=true continues the stage's checkpoint, overwrite=true replaces it: choose one"
            )
        return self

    @model_validator(mode="after")
    def _derived_paths(self) -> RecipeConfig:
        run = Path(self.run_dir)
        self.output_dir = self.output_dir or str(run / f"stage{self.stage}")
        if self.stage > 1 and not self.init_from:
            self.init_from = str(run / f"stage{self.stage - 1}")
        self.data.cache_dir = self.data.cache_dir or str(run / "cache")
        return self

    @property
    def output_path(self) -> Path:
        """The stage's folder (``output_dir``, set on validation)."""
        return Path(self.output_dir or self.run_dir)

    @property
    def previous_stage_path(self) -> Path:
        """The model a stage 2 or 3 starts from (``init_from``, set on validation for those stages)."""
        if self.init_from is None:
            raise ValueError(f"stage {self.stage} starts from an encoder, not from a previous stage")
        return Path(self.init_from)


def _head_setting_names() -> set[str] | None:
    """The Multi2OIEConfig fields a ``model.*`` key may set (None when torch is not installed)."""
    import inspect

    try:
        from .model import Multi2OIEConfig
    except ImportError:
        return None
    return set(inspect.signature(Multi2OIEConfig.__init__).parameters) - {
        "self", "encoder", "languages", "moe", "kwargs",
    }  # fmt: skip


# -- overrides -----------------------------------------------------------------------------------


def _annotation(dotted: list[str]) -> Any:
    """The type a dotted key has in :class:`RecipeConfig` (``None`` for free-form or unknown keys)."""
    model: type[BaseModel] | None = RecipeConfig
    annotation = None
    for part in dotted:
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return annotation


def _is_text(annotation: Any) -> bool:
    """``str``, a ``Literal`` of strings, or either with ``None``."""
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    options = tuple(a for a in options if a is not type(None))

    def text(option: Any) -> bool:
        literal = get_origin(option) is Literal and all(isinstance(v, str) for v in get_args(option))
        return option is str or literal

    return bool(options) and all(text(option) for option in options)


def _override_value(key: str, raw: str) -> Any:
    annotation = _annotation(key.split("."))
    if annotation is not None and _is_text(annotation):
        nullable = type(None) in get_args(annotation)
        return None if nullable and raw in ("", "null", "~") else raw
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or " ".join(str(error).split())
        raise UsageError(f"config: override {key}={raw}: not a YAML value ({problem})") from None
    if annotation is None and isinstance(value, str) and key.split(".")[0] in FREE_FORM:
        # head settings have no declared type here, and YAML 1.1 reads 1e-5 as text
        with contextlib.suppress(ValueError):
            value = float(value)
    return value


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``a.b=value`` pairs -> nested dict, each value typed by its key (see the module docstring)."""
    out: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"config: override {item!r} is not KEY=VALUE (e.g. optim.lr=1e-4)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UsageError(f"config: override {item!r} sets inside {part!r}, which has a value")
        node[leaf] = _override_value(key, raw)
    return out


# -- loading --------------------------------------------------------------------------------------


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge(base[key], value)
        else:
            base[key] = value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A recipe YAML file as a mapping; a missing or broken file is a one-line ``UsageError``."""
    file = Path(path)
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {file}: no such file (see train/configs/recipe.yaml)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as error:
        raise UsageError(f"--config {file}: cannot be read ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"--config {where}: invalid YAML: {problem}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"--config {file}: must be a mapping of config keys, not {type(loaded).__name__}")
    return loaded


def _stage_blocks(file: dict[str, Any], where: str) -> dict[int, dict[str, Any]]:
    blocks = file.pop("stages", None) or {}
    if not isinstance(blocks, dict):
        raise UsageError(f"config: stages in {where}: must map 1, 2, 3 to config keys")
    out: dict[int, dict[str, Any]] = {}
    for key, block in blocks.items():
        if str(key) not in ("1", "2", "3") or not isinstance(block or {}, dict):
            raise UsageError(f"config: stages.{key} in {where}: stages are 1, 2 and 3, each a mapping")
        out[int(key)] = block or {}
    return out


def load_config(
    path: str | Path | None, overrides: Sequence[str] = (), stage: int | None = None
) -> RecipeConfig:
    """Defaults <- file <- file's ``stages.<stage>`` <- overrides, validated (a wrong key, type or
    range is a :class:`UsageError` naming its dotted path); derived paths filled in."""
    cfg = copy.deepcopy(DEFAULTS)
    file = read_config_file(path) if path else {}
    stages = _stage_blocks(file, str(path))
    _merge(cfg, file)
    cli = parse_overrides(overrides)
    chosen = stage or cli.get("stage") or cfg["stage"]
    if chosen not in (1, 2, 3):
        raise UsageError(f"config: stage: must be 1, 2 or 3 (got {chosen!r})")
    _merge(cfg, stages.get(int(chosen), {}))
    _merge(cfg, cli)
    cfg["stage"] = int(chosen)
    try:
        return RecipeConfig.model_validate(cfg)
    except ValidationError as error:
        raise UsageError(f"config: {describe(error)}") from None
