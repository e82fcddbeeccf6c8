"""Where a mixture of LoRA experts lives: its settings in ``config.moe``, its layers in the encoder.

The one place that knows how a model records its mixture (:class:`MoESettings`, stored as a dict in
``model.config.moe`` so ``from_pretrained`` rebuilds it), how MoLoRA layers are put on and taken
off an encoder, and how an expert is named. Both the model-level operations (:mod:`.moe_lora`)
and the PEFT-format files (:mod:`.expert_files`) build on it, so neither imports the other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from .molora_layer import MoLoRALinear

__all__ = [
    "DEFAULT_TARGETS",
    "MoEHost",
    "MoESettings",
    "apply_molora",
    "expert_index",
    "install_moe",
    "molora_layers",
    "replace_module",
    "routing_vector",
    "settings_of",
    "strip_molora",
]

DEFAULT_TARGETS: tuple[str, ...] = ("query", "key", "value", "attention.output.dense", "intermediate.dense")
"""Module-name suffixes adapted in every layer; BERT, XLM-R and (BERT-style) MiniLM share them."""


@dataclass
class MoESettings:
    """What :func:`apply_molora` built; stored as ``config.moe`` so ``from_pretrained`` rebuilds it."""

    n_experts: int = 6
    rank: int = 16
    alpha: float = 16.0
    top_k: int | None = None
    targets: tuple[str, ...] = DEFAULT_TARGETS
    languages: list[str] | None = None
    """Expert ``i`` is tied to ``languages[i]`` (router supervision, language routing, names)."""
    router_aux_weight: float = 0.0
    dropout: float = 0.0
    modules: list[str] = field(default_factory=list)
    """Adapted module paths relative to the encoder (filled by :func:`apply_molora`)."""

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        if self.languages is not None:
            self.languages = list(self.languages)
            if len(self.languages) != self.n_experts or len(set(self.languages)) != self.n_experts:
                raise ValueError(f"need {self.n_experts} distinct expert languages, got {self.languages}")

    @property
    def names(self) -> list[str]:
        """Expert names: the tied languages, else ``expert0``, ``expert1``, ..."""
        return list(self.languages) if self.languages else [f"expert{i}" for i in range(self.n_experts)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["targets"] = list(self.targets)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoESettings:
        return cls(**d)


class MoEHost(Protocol):
    """A model with an ``encoder`` and a ``config.moe`` dict (``Multi2OIEModel``)."""

    @property
    def encoder(self) -> nn.Module: ...

    @property
    def config(self) -> Any: ...


def molora_layers(root: nn.Module) -> dict[str, MoLoRALinear]:
    """All MoLoRA layers under ``root``, by module path relative to it."""
    return {name: m for name, m in root.named_modules() if isinstance(m, MoLoRALinear)}


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` at the module path ``name`` under ``root`` (wrapping, unwrapping, merging)."""
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)


def apply_molora(root: nn.Module, settings: MoESettings) -> list[str]:
    """Wrap every ``nn.Linear`` whose path ends with ``.<target>`` in a MoLoRALinear; returns the paths."""
    if molora_layers(root):
        raise ValueError("the encoder already has MoLoRA layers")
    names = [
        name
        for name, m in root.named_modules()
        if isinstance(m, nn.Linear) and any(name == t or name.endswith("." + t) for t in settings.targets)
    ]
    if not names:
        raise ValueError(f"no nn.Linear module matches the targets {settings.targets}")
    for name in names:
        base = root.get_submodule(name)
        assert isinstance(base, nn.Linear)
        s = settings
        replace_module(root, name, MoLoRALinear(base, s.n_experts, s.rank, s.alpha, s.top_k, s.dropout))
    settings.modules = names
    return names


def strip_molora(root: nn.Module) -> nn.Module:
    """Put every MoLoRA layer's base Linear back (drops the experts); returns ``root``."""
    for name, layer in molora_layers(root).items():
        replace_module(root, name, layer.base_layer)
    return root


def settings_of(model: MoEHost) -> MoESettings:
    """The mixture's settings as recorded in ``model.config.moe``; an error when it has none."""
    moe = getattr(model.config, "moe", None)
    if not moe:
        raise ValueError("the model has no mixture of LoRA experts (call add_moe first)")
    return MoESettings.from_dict(moe)


def install_moe(model: MoEHost, settings: MoESettings) -> MoESettings:
    """Wrap ``model.encoder`` and record ``settings`` in ``model.config.moe``."""
    apply_molora(model.encoder, settings)
    model.config.moe = settings.to_dict()
    return settings


def expert_index(model: MoEHost, expert: str | int) -> int:
    """The index of an expert given by index, name or tied language."""
    names = settings_of(model).names
    if isinstance(expert, int):
        if not 0 <= expert < len(names):
            raise IndexError(f"expert {expert} out of range 0..{len(names) - 1}")
        return expert
    if expert not in names:
        raise KeyError(f"no expert {expert!r}; experts are {names}")
    return names.index(expert)


def routing_vector(model: MoEHost, weights: torch.Tensor | str | int | None) -> torch.Tensor | None:
    """``weights`` as an ``[E]`` vector: a tensor or None as given, an expert name / index one-hot."""
    if weights is None or isinstance(weights, torch.Tensor):
        return weights
    one_hot = torch.zeros(settings_of(model).n_experts)
    one_hot[expert_index(model, weights)] = 1.0
    return one_hot
