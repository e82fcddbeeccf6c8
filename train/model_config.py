"""The tagger's config and output types: what a saved model's ``config.json`` and a forward return.

Kept apart from :mod:`.model` so that reading or writing a config (the training recipe's settings,
``from_pretrained``) does not need the network's code, and so the model module holds only the
network. ``config.moe`` is the mixture's settings dict (:class:`.moe_install.MoESettings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig
from transformers.utils import ModelOutput

__all__ = ["Multi2OIEConfig", "Multi2OIEOutput", "PredicateOutput"]


class Multi2OIEConfig(PretrainedConfig):
    """Head hyper-parameters (Multi2OIE's published values), the encoder's config dict and ``moe``."""

    model_type = "multi2oie"

    def __init__(
        self,
        encoder: dict[str, Any] | PretrainedConfig | None = None,
        n_pred_labels: int = 3,
        n_arg_labels: int = 9,
        arg_layers: int = 4,
        arg_heads: int = 8,
        arg_dim: int | None = None,
        arg_ff_dim: int = 2048,
        pos_emb_dim: int = 64,
        pred_dropout: float = 0.0,
        arg_dropout: float = 0.2,
        attn_dropout: float = 0.2,
        languages: Sequence[str] | None = None,
        moe: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(encoder, PretrainedConfig):
            encoder = encoder.to_dict()
        self.encoder = dict(encoder) if encoder is not None else None
        self.n_pred_labels, self.n_arg_labels = n_pred_labels, n_arg_labels
        self.arg_layers, self.arg_heads = arg_layers, arg_heads
        self.arg_dim, self.arg_ff_dim = arg_dim, arg_ff_dim
        self.pos_emb_dim = pos_emb_dim
        self.pred_dropout, self.arg_dropout, self.attn_dropout = pred_dropout, arg_dropout, attn_dropout
        self.languages = list(languages) if languages else []
        self.moe = dict(moe) if moe else None
        super().__init__(**kwargs)

    def encoder_config(self) -> PretrainedConfig:
        """The encoder's own config, rebuilt with ``AutoConfig.for_model``."""
        if not self.encoder:
            raise ValueError("Multi2OIEConfig.encoder is empty: use Multi2OIEModel.from_encoder")
        fields = dict(self.encoder)
        return AutoConfig.for_model(fields.pop("model_type"), **fields)


@dataclass
class Multi2OIEOutput(ModelOutput):
    """``loss`` = pred CE + arg CE (+ ``router_aux_weight`` · router CE); ``router_weights`` ``[L, B, E]``."""

    loss: torch.Tensor | None = None
    pred_loss: torch.Tensor | None = None
    arg_loss: torch.Tensor | None = None
    router_loss: torch.Tensor | None = None
    pred_logits: torch.Tensor | None = None
    arg_logits: torch.Tensor | None = None
    router_weights: torch.Tensor | None = None


@dataclass
class PredicateOutput(ModelOutput):
    """What extraction needs from one encoder pass: the states (for the argument module) and predicates."""

    encoder_states: torch.Tensor | None = None
    pred_logits: torch.Tensor | None = None
    pred_probs: torch.Tensor | None = None


AutoConfig.register("multi2oie", Multi2OIEConfig, exist_ok=True)
