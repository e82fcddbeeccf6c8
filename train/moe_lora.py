"""Mixture of LoRA experts with per-sentence routers (MT4CrossOIE stage 3), for any HF encoder.

Every adapted ``nn.Linear`` (query, key, value, attention-output dense, intermediate dense) becomes
a :class:`~.molora_layer.MoLoRALinear`: ``y = W x + scaling · Σ_e w_e · B_e A_e x`` with its *own*
router on the [CLS] vector of its input (the layer, its batched experts and its top-K rule are
described in :mod:`.molora_layer`). The mixture is split by job:

* :mod:`.molora_layer`: the layer itself (tensor math on one Linear);
* :mod:`.moe_install`: the settings in ``config.moe``, putting layers on / off an encoder, expert names;
* :mod:`.expert_files`: experts saved as plain PEFT LoRA adapters, routers beside them;
* this module: changing a model's mixture (merging under fixed routing, freezing, adding an
  expert), and the one import point for all of the above: every name is importable from here.

PEFT evaluation (peft 0.21)
---------------------------
PEFT cannot carry this mixture, so the layer is our own:

* **LoRA with several adapters** activates one adapter set per forward (``set_adapter``) or merges
  them with *fixed* weights (``add_weighted_adapter``); the mixed-batch ``adapter_names=`` call
  picks one named adapter per sample, for inference only. None has a learned, input-dependent
  router or a soft mixture that trains jointly with the experts.
* **Poly / MHR** mixes LoRA "skills" with learned logits indexed by ``task_ids``
  (``module_logits[task_ids]``): routing by a given task id, not from the input, so an input of
  unknown language cannot be routed and there is no per-layer router on the [CLS] state.
* **X-LoRA** learns a classifier over *frozen, pre-trained* LoRA adapters, computes per-token
  scalings from the hidden states of a *second* forward pass and targets causal LMs
  (``task_type="CAUSAL_LM"``, ``generate`` hooks); MT4CrossOIE trains experts and per-sentence
  routers jointly in one pass of an encoder.
* **Arrow** (``LoraConfig(arrow_config=...)``) routes tokens training-free from the SVD of the
  LoRA weights: no learned router, no router supervision by language.

What PEFT *does* give is a portable format: :func:`save_experts` writes every expert as a plain
PEFT LoRA adapter, so ``PeftModel.from_pretrained(encoder, out_dir / "de")`` reproduces our model
under fixed one-hot routing on the German expert (tested); see :mod:`.expert_files`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from .expert_files import ADAPTER_WEIGHTS, EXPERTS_FILE, ROUTER_FILE, load_adapter, load_experts, save_experts
from .moe_install import (
    DEFAULT_TARGETS,
    MoEHost,
    MoESettings,
    apply_molora,
    expert_index,
    install_moe,
    molora_layers,
    replace_module,
    routing_vector,
    settings_of,
    strip_molora,
)
from .molora_layer import MoLoRALinear, top_k_renormalise

__all__ = [
    "ADAPTER_WEIGHTS",
    "DEFAULT_TARGETS",
    "EXPERTS_FILE",
    "ROUTER_FILE",
    "MoEHost",
    "MoESettings",
    "MoLoRALinear",
    "add_expert",
    "apply_molora",
    "expert_index",
    "freeze_experts",
    "install_moe",
    "load_experts",
    "merge_fixed_routing",
    "molora_layers",
    "routing_vector",
    "save_experts",
    "strip_molora",
    "top_k_renormalise",
]


def merge_fixed_routing(model: MoEHost, weights: torch.Tensor | str | int | None = None) -> MoEHost:
    """Fold ``W + scaling Σ_e w_e B_e A_e`` into plain Linears (in place) and drop ``config.moe``.

    ``weights``: ``[E]``, an expert name / index (one-hot), or None for each layer's fixed routing.
    """
    vector = routing_vector(model, weights)
    for name, layer in molora_layers(model.encoder).items():
        replace_module(model.encoder, name, layer.merged(vector))
    model.config.moe = None
    return model


def freeze_experts(model: MoEHost, keep: Iterable[str | int], *, routers: bool = True) -> None:
    """Make only the experts in ``keep`` trainable (and the routers if ``routers``).

    Call after ``set_stage(3)``, which makes every expert trainable; build the optimizer after.
    """
    kept = {expert_index(model, k) for k in keep}
    for layer in molora_layers(model.encoder).values():
        for e in range(layer.n_experts):
            layer.lora_A[e].requires_grad_(e in kept)
            layer.lora_B[e].requires_grad_(e in kept)
        layer.router.weight.requires_grad_(routers)


def add_expert(model: MoEHost, language: str, from_dir: str | Path | None = None) -> int:
    """Append an expert tied to ``language`` to every layer (router rows grow by one); returns its index.

    Existing experts and router rows are untouched, so outputs under fixed routing on an old
    expert stay identical. ``from_dir``: a PEFT LoRA adapter (e.g. from :func:`save_experts`) to
    start from; otherwise B = 0 and the new expert contributes nothing until trained.
    """
    settings = settings_of(model)
    if settings.languages is None:
        raise ValueError("add_expert needs experts tied to languages (add_moe(languages=...))")
    if language in settings.languages:
        raise ValueError(f"there already is an expert for {language!r}")
    layers = molora_layers(model.encoder)
    index = -1
    for layer in layers.values():
        index = layer.add_expert()
    settings.n_experts += 1
    settings.languages.append(language)
    if from_dir is not None:
        load_adapter(layers, index, Path(from_dir), settings)
    model.config.moe = settings.to_dict()
    return index
