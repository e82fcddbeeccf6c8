"""The tagger's stage-3 side: its mixture of LoRA experts, how sentences are routed, the router loss.

A mixin of :class:`.model.Multi2OIEModel`, not a sub-module: the experts live inside the encoder's
own Linears (:mod:`.moe_lora`), so a separate ``nn.Module`` would change no parameter name but
would add nothing either, and the saved state-dict keys must stay exactly as they are. Keeping
these methods here leaves :mod:`.model` with the tagger itself (encoder, heads, stages, forward).

Routing, in order of precedence: language routing (each sentence to its language's expert, from
``lang_ids``), fixed routing (one ``[E]`` vector for every sentence), else the learned routers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from . import moe_lora
from .moe_lora import DEFAULT_TARGETS, MoESettings, MoLoRALinear

__all__ = ["MixtureOfExpertsMixin"]

_Model = TypeVar("_Model", bound="MixtureOfExpertsMixin")


class MixtureOfExpertsMixin:
    """Stage-3 methods for a model with an ``encoder``, a ``config`` and a ``language_routing`` flag."""

    encoder: PreTrainedModel
    config: Any
    language_routing: bool

    def add_moe(
        self,
        n_experts: int = 6,
        rank: int = 16,
        alpha: float = 16.0,
        top_k: int | None = None,
        targets: Sequence[str] = DEFAULT_TARGETS,
        languages: Sequence[str] | None = None,
        router_aux_weight: float = 0.0,
        dropout: float = 0.0,
    ) -> MoESettings:
        """Wrap the target Linears of every encoder layer in MoLoRALinear (outputs unchanged: B = 0)."""
        tied = list(languages) if languages else None
        settings = MoESettings(
            n_experts, rank, alpha, top_k, tuple(targets), tied, router_aux_weight, dropout
        )
        return moe_lora.install_moe(self, settings)

    def moe_layers(self) -> dict[str, MoLoRALinear]:
        return moe_lora.molora_layers(self.encoder)

    # -- routing --------------------------------------------------------------------------------

    def set_fixed_routing(self, weights: torch.Tensor | str | int | None) -> None:
        """Route all sentences by ``weights`` ``[E]`` or one-hot on an expert name / index; None: learned."""
        vector = moe_lora.routing_vector(self, weights) if weights is not None else None
        for layer in self.moe_layers().values():
            layer.set_fixed_routing(vector)
        if vector is not None:
            self.set_language_routing(False)

    def set_language_routing(self, enabled: bool = True) -> None:
        """Route each sentence to its language's expert (one-hot from ``lang_ids``), e.g. to train
        tied experts on mixed-language batches; takes precedence over fixed routing."""
        if enabled and not (self.config.moe or {}).get("languages"):
            raise ValueError("language routing needs experts tied to languages (add_moe(languages=...))")
        self.language_routing = enabled
        if not enabled:
            for layer in self.moe_layers().values():
                layer.sample_weights = None

    def _lang_to_expert(self, lang_ids: torch.Tensor) -> torch.Tensor | None:
        """Expert per sentence from ``lang_ids`` (index into config.languages; negative: unknown);
        -100 where the language has no expert. None when experts are not tied to languages."""
        tied = (self.config.moe or {}).get("languages")
        if not tied:
            return None
        if not self.config.languages:
            raise ValueError("lang_ids index config.languages, which is empty")
        table = [tied.index(lang) if lang in tied else -100 for lang in self.config.languages]
        experts = torch.tensor(table, dtype=torch.long, device=lang_ids.device)[lang_ids.clamp(min=0)]
        return torch.where(lang_ids >= 0, experts, -100)  # -1 must not wrap round to the last language

    def _route_sentences(self, lang_ids: torch.Tensor | None) -> None:
        """Before an encoder pass: per-sentence one-hot weights under language routing, else none."""
        layers = list(self.moe_layers().values())
        sample = None
        if self.language_routing and layers:
            if lang_ids is None:
                raise ValueError("language routing needs lang_ids")
            experts = self._lang_to_expert(lang_ids)
            if experts is None or bool((experts < 0).any()):
                raise ValueError("language routing: a sentence's language has no expert")
            sample = F.one_hot(experts, layers[0].n_experts).float()
        # Set on every call and left in place, so that gradient checkpointing's recomputation in
        # backward routes exactly as the forward did.
        for layer in layers:
            layer.sample_weights = sample

    # -- changing the mixture -----------------------------------------------------------------------

    def merge_moe(self: _Model, weights: torch.Tensor | str | int | None = None) -> _Model:
        """Fold the experts into plain Linears under fixed routing (see moe_lora.merge_fixed_routing)."""
        self.set_language_routing(False)
        moe_lora.merge_fixed_routing(self, weights)
        return self

    def base_encoder(self) -> PreTrainedModel:
        """A copy of the encoder without experts (the base a PEFT adapter from save_experts fits)."""
        return moe_lora.strip_molora(copy.deepcopy(self.encoder))  # type: ignore[return-value]

    def add_expert(self, language: str, from_dir: str | Path | None = None) -> int:
        return moe_lora.add_expert(self, language, from_dir)

    def freeze_experts(self, keep: Iterable[str | int], *, routers: bool = True) -> None:
        moe_lora.freeze_experts(self, keep, routers=routers)

    def save_experts(self, out_dir: str | Path) -> Path:
        return moe_lora.save_experts(self, out_dir)

    def load_experts(self: _Model, in_dir: str | Path) -> _Model:
        moe_lora.load_experts(self, in_dir)
        return self

    # -- router loss -------------------------------------------------------------------------------

    def _router_loss(self, lang_ids: torch.Tensor | None, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Mean over layers of CE(router logits, ``labels`` or the expert of the sentence's language)."""
        if labels is None and lang_ids is not None:
            labels = self._lang_to_expert(lang_ids)
        layers = self.moe_layers().values()
        logits = [m.last_router_logits for m in layers if m.last_router_logits is not None]
        if labels is None or not logits or not bool((labels != -100).any()):
            return None
        stacked = torch.stack(logits)  # [L, B, E]
        return F.cross_entropy(stacked.flatten(0, 1), labels.repeat(len(logits)), ignore_index=-100)

    def _router_outputs(
        self, lang_ids: torch.Tensor | None, router_labels: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """After a forward: the router loss and the weights every layer used ``[L, B, E]`` (None, None
        without a mixture)."""
        layers = self.moe_layers()
        if not layers:
            return None, None
        router_loss = self._router_loss(lang_ids, router_labels)
        router_weights = torch.stack([m.last_router_weights for m in layers.values()])  # type: ignore[misc]
        return router_loss, router_weights
