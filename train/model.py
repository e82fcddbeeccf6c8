"""Multi2OIE tagger over any Hugging Face encoder, with MT4CrossOIE's stage switches and LoRA mixture.

Architecture (Multi2OIE, ``shared/reference/method.md``): the encoder's states feed a predicate
head (dropout + Linear, labels ``P-B``/``P-I``/``O``) and, once per predicate, an argument module
whose input concatenates the states, the mean state over the predicate span (broadcast) and an
embedding of a 3-way marker (0 pad, 1 not predicate, 2 predicate), followed by N post-norm
``nn.TransformerEncoderLayer`` blocks and a dropout + Linear over the 9 argument labels.
``arg_dim=None`` keeps Multi2OIE's width ``2·hidden + pos_emb_dim`` (1600 for BERT-base: the
published 66 M head parameters); an int adds a Linear projection to that width first (needed when
``arg_heads`` does not divide the concatenated width, or to shrink the head).

The encoder is built with ``AutoModel`` from ``config.encoder`` (the encoder config's ``to_dict``),
so BERT, XLM-R, MiniLM... all work and ``save_pretrained`` / ``from_pretrained`` round-trip through
safetensors. The pooler is dropped where the encoder class allows it: it is unused, and unused
parameters would get no gradient in stage 2 (and upset DDP).

Stages (``set_stage``) follow MT4CrossOIE: 1 = word embeddings + heads, 2 = the rest of the encoder
+ heads, 3 = mixture-of-LoRA experts and routers + heads (``add_moe`` first; train/moe_lora.py).
The stage-3 methods (adding, routing, merging, saving experts; the router loss) come from
:class:`.model_moe.MixtureOfExpertsMixin`; the config and output types from :mod:`.model_config`.
Extraction encodes each sentence once (:meth:`Multi2OIEModel.predict_predicates`) and runs the
argument module for all its predicates in one batch (:meth:`Multi2OIEModel.predict_arguments`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

from . import moe_lora
from .model_config import Multi2OIEConfig, Multi2OIEOutput, PredicateOutput
from .model_moe import MixtureOfExpertsMixin
from .moe_lora import MoESettings

__all__ = ["Multi2OIEConfig", "Multi2OIEModel", "Multi2OIEOutput", "PredicateOutput"]

_LOAD_KWARGS = frozenset(
    {"local_files_only", "revision", "cache_dir", "token", "force_download", "subfolder", "trust_remote_code"}
)
"""Keyword arguments of ``from_encoder`` that go to the encoder's ``from_pretrained``."""


def _build_encoder(config: PretrainedConfig, name_or_path: str | None = None, **load: Any) -> PreTrainedModel:
    """An ``AutoModel`` without pooler where the class takes ``add_pooling_layer``."""
    for extra in ({"add_pooling_layer": False}, {}):
        try:
            if name_or_path is None:
                return AutoModel.from_config(config, **extra)
            return AutoModel.from_pretrained(name_or_path, **extra, **load)
        except TypeError:
            if not extra:
                raise
    raise AssertionError("unreachable")


class Multi2OIEModel(MixtureOfExpertsMixin, PreTrainedModel):
    """Multi2OIE predicate + argument tagger; see the module docstring."""

    config_class = Multi2OIEConfig
    config: Multi2OIEConfig
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True

    def __init__(self, config: Multi2OIEConfig) -> None:
        super().__init__(config)
        self.encoder: PreTrainedModel = _build_encoder(config.encoder_config())
        hidden = self.encoder.config.hidden_size
        self.pred_dropout = nn.Dropout(config.pred_dropout)
        self.pred_classifier = nn.Linear(hidden, config.n_pred_labels)
        self.pos_emb = nn.Embedding(3, config.pos_emb_dim, padding_idx=0)
        arg_in = 2 * hidden + config.pos_emb_dim
        width = config.arg_dim or arg_in
        self.arg_proj: nn.Module = nn.Linear(arg_in, width) if config.arg_dim else nn.Identity()
        block = nn.TransformerEncoderLayer(
            width, config.arg_heads, config.arg_ff_dim, config.attn_dropout, batch_first=True
        )
        self.arg_module = nn.TransformerEncoder(block, config.arg_layers, enable_nested_tensor=False)
        self.arg_dropout = nn.Dropout(config.arg_dropout)
        self.arg_classifier = nn.Linear(width, config.n_arg_labels)
        self.language_routing = False
        if config.moe:
            moe_lora.install_moe(self, MoESettings.from_dict(config.moe))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """PyTorch's default init for the heads, as in Multi2OIE (the encoder inits itself)."""
        if isinstance(module, nn.MultiheadAttention):
            module._reset_parameters()
        elif isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
            module.reset_parameters()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_encoder(
        cls, encoder: str | Path | PretrainedConfig, *, languages: Sequence[str], **kwargs: Any
    ) -> Multi2OIEModel:
        """A new tagger on a pretrained encoder (name or path; ``local_files_only``, ``revision``,
        ``cache_dir``, ``token``... are passed to ``from_pretrained``) or on a randomly initialised
        encoder (a config object). Other keyword arguments are head settings of Multi2OIEConfig."""
        load = {k: kwargs.pop(k) for k in list(kwargs) if k in _LOAD_KWARGS}
        allowed = set(inspect.signature(Multi2OIEConfig.__init__).parameters)
        allowed -= {"self", "encoder", "languages", "moe", "kwargs"}
        if unknown := set(kwargs) - allowed:
            raise TypeError(f"unknown head settings {sorted(unknown)}; allowed: {sorted(allowed)}")
        if isinstance(encoder, PretrainedConfig):
            return cls(Multi2OIEConfig(encoder=encoder, languages=languages, **kwargs))
        pretrained = _build_encoder(None, str(encoder), **load)  # type: ignore[arg-type]
        model = cls(Multi2OIEConfig(encoder=pretrained.config, languages=languages, **kwargs))
        model.encoder = pretrained
        return model

    # -- parameter groups and stages ----------------------------------------------------------

    def word_embedding_parameters(self) -> list[nn.Parameter]:
        """Exactly the encoder's word-embedding matrix."""
        weight = self.encoder.get_input_embeddings().weight
        assert isinstance(weight, nn.Parameter)
        return [weight]

    def moe_parameters(self) -> list[nn.Parameter]:
        """Every expert's A and B and every router."""
        layers = self.moe_layers().values()
        return [p for m in layers for p in (*m.lora_A, *m.lora_B, m.router.weight)]

    def encoder_parameters_except_word_embeddings(self) -> list[nn.Parameter]:
        """Encoder parameters other than the word embeddings and the MoE experts/routers."""
        skip = {id(p) for p in (*self.word_embedding_parameters(), *self.moe_parameters())}
        return [p for p in self.encoder.parameters() if id(p) not in skip]

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("encoder.")]

    def set_stage(self, stage: int) -> None:
        """requires_grad for MT4CrossOIE stage 1, 2 or 3 (heads always train; MoE only in stage 3)."""
        groups = {
            1: self.word_embedding_parameters,
            2: self.encoder_parameters_except_word_embeddings,
            3: self.moe_parameters,
        }
        if stage not in groups:
            raise ValueError(f"stage must be 1, 2 or 3, not {stage!r}")
        if stage == 3 and not self.config.moe:
            raise ValueError("stage 3 trains the mixture of LoRA experts: call add_moe first")
        self.requires_grad_(False)
        for p in (*groups[stage](), *self.head_parameters()):
            p.requires_grad_(True)

    # -- forward -------------------------------------------------------------------------------

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        lang_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Encoder states ``[B, T, H]``; with language routing, each sentence uses its language's expert."""
        self._route_sentences(lang_ids)
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    def predict_predicates(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        lang_ids: torch.Tensor | None = None,
    ) -> PredicateOutput:
        """One encoder pass: states for :meth:`predict_arguments`, predicate logits and probabilities."""
        states = self.encode(input_ids, attention_mask, token_type_ids, lang_ids)
        logits = self.pred_classifier(self.pred_dropout(states))
        return PredicateOutput(encoder_states=states, pred_logits=logits, pred_probs=logits.softmax(-1))

    def predict_arguments(
        self,
        encoder_states: torch.Tensor,
        attention_mask: torch.Tensor,
        pred_mask: torch.Tensor,
        sentence_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Argument logits ``[N, T, n_arg_labels]`` for ``N`` predicates (``pred_mask`` ``[N, T]``).

        Row ``i`` of ``pred_mask`` belongs to sentence ``sentence_index[i]`` of ``encoder_states``
        ``[B, T, H]``; without ``sentence_index``, B must equal N or be 1 (one sentence, all its
        predicates), so a sentence is encoded once whatever its number of predicates.
        """
        if sentence_index is not None:
            encoder_states, attention_mask = encoder_states[sentence_index], attention_mask[sentence_index]
        elif encoder_states.shape[0] == 1 and pred_mask.shape[0] != 1:
            encoder_states = encoder_states.expand(pred_mask.shape[0], -1, -1)
            attention_mask = attention_mask.expand(pred_mask.shape[0], -1)
        if encoder_states.shape[0] != pred_mask.shape[0]:
            raise ValueError(f"{pred_mask.shape[0]} predicates for {encoder_states.shape[0]} sentences")
        present = attention_mask.bool()
        on_pred = pred_mask.bool() & present
        weights = on_pred.to(encoder_states.dtype)
        span_mean = (encoder_states * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp(min=1.0)
        marker = torch.where(present, 1 + on_pred.long(), torch.zeros_like(pred_mask, dtype=torch.long))
        features = torch.cat(
            [encoder_states, span_mean[:, None, :].expand_as(encoder_states), self.pos_emb(marker)], dim=-1
        )
        hidden = self.arg_module(self.arg_proj(features), src_key_padding_mask=~present)
        return self.arg_classifier(self.arg_dropout(hidden))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        pred_mask: torch.Tensor | None = None,
        pred_labels: torch.Tensor | None = None,
        arg_labels: torch.Tensor | None = None,
        lang_ids: torch.Tensor | None = None,
        router_labels: torch.Tensor | None = None,
    ) -> Multi2OIEOutput:
        """Predicate logits always; argument logits when ``pred_mask`` (1 on the example's predicate)
        is given; losses for the labels given (-100 ignored). ``router_labels`` ``[B]`` (expert ids)
        override the experts derived from ``lang_ids`` for the router loss, which joins ``loss`` with
        weight ``moe.router_aux_weight`` when that is > 0 and the routing is learned."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        states = self.encode(input_ids, attention_mask, token_type_ids, lang_ids)
        pred_logits = self.pred_classifier(self.pred_dropout(states))
        arg_logits = None
        if pred_mask is not None:
            arg_logits = self.predict_arguments(states, attention_mask, pred_mask)
        elif arg_labels is not None:
            raise ValueError("arg_labels need the pred_mask of the example's predicate")
        pred_loss = arg_loss = None
        if pred_labels is not None:
            pred_loss = F.cross_entropy(pred_logits.flatten(0, 1), pred_labels.flatten(), ignore_index=-100)
        if arg_labels is not None and arg_logits is not None:
            arg_loss = F.cross_entropy(arg_logits.flatten(0, 1), arg_labels.flatten(), ignore_index=-100)
        router_loss, router_weights = self._router_outputs(lang_ids, router_labels)
        parts = [x for x in (pred_loss, arg_loss) if x is not None]
        aux = float((self.config.moe or {}).get("router_aux_weight", 0.0))
        if router_loss is not None and aux > 0:
            parts.append(aux * router_loss)
        loss = torch.stack(parts).sum() if parts else None
        return Multi2OIEOutput(
            loss=loss, pred_loss=pred_loss, arg_loss=arg_loss, router_loss=router_loss,
            pred_logits=pred_logits, arg_logits=arg_logits, router_weights=router_weights,
        )  # fmt: skip


AutoModel.register(Multi2OIEConfig, Multi2OIEModel, exist_ok=True)
