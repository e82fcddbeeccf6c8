"""Experts on disk in PEFT's own format: one plain LoRA adapter per expert, plus the routers.

PEFT cannot carry a routed mixture (see :mod:`.moe_lora`), but its LoRA format is portable:
:func:`save_experts` writes every expert as ``out_dir/<name>/`` (``adapter_config.json`` +
``adapter_model.safetensors`` with PEFT's key names), so ``PeftModel.from_pretrained(encoder,
out_dir / "de")`` reproduces our model under fixed one-hot routing on the German expert (tested);
the routers go to ``router.safetensors`` and the expert list to ``experts.json``. The file layout
is kept here, apart from the mixture's arithmetic, because saved experts must keep loading.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .moe_install import MoEHost, MoESettings, install_moe, molora_layers, settings_of
from .molora_layer import MoLoRALinear

__all__ = ["ADAPTER_WEIGHTS", "EXPERTS_FILE", "ROUTER_FILE", "load_adapter", "load_experts", "save_experts"]

EXPERTS_FILE = "experts.json"
ROUTER_FILE = "router.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PEFT_PREFIX = "base_model.model."
"""What PeftModel puts before the base model's module paths in an adapter's tensor names."""
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def load_adapter(layers: dict[str, MoLoRALinear], e: int, adapter_dir: Path, settings: MoESettings) -> None:
    """Copy a PEFT LoRA adapter's A/B weights into expert ``e`` of every layer."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("r") != settings.rank or float(config.get("lora_alpha", -1)) != float(settings.alpha):
        raise ValueError(
            f"{adapter_dir}: r={config.get('r')}, lora_alpha={config.get('lora_alpha')} do not match "
            f"this mixture's rank={settings.rank}, alpha={settings.alpha}"
        )
    tensors = load_file(str(adapter_dir / ADAPTER_WEIGHTS))
    with torch.no_grad():
        for path, layer in layers.items():
            for part, params in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B)):
                key = f"{_PEFT_PREFIX}{path}.{part}.weight"
                if key not in tensors:
                    raise KeyError(f"{adapter_dir / ADAPTER_WEIGHTS} has no {key}")
                params[e].copy_(tensors[key])


def save_experts(model: MoEHost, out_dir: str | Path) -> Path:
    """Write each expert as a PEFT LoRA adapter ``out_dir/<name>/``, the routers and ``experts.json``."""
    from peft import LoraConfig  # optional dependency, only needed here

    settings = settings_of(model)
    layers = molora_layers(model.encoder)
    out = Path(out_dir)
    base_name = (getattr(model.config, "encoder", None) or {}).get("_name_or_path") or None
    alpha: Any = int(settings.alpha) if float(settings.alpha).is_integer() else settings.alpha
    for e, name in enumerate(settings.names):
        if not _SAFE_NAME.match(name):
            raise ValueError(f"expert name {name!r} is not a safe directory name")
        expert_dir = out / name
        expert_dir.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for path, layer in layers.items():
            tensors[f"{_PEFT_PREFIX}{path}.lora_A.weight"] = layer.lora_A[e].detach().cpu().contiguous()
            tensors[f"{_PEFT_PREFIX}{path}.lora_B.weight"] = layer.lora_B[e].detach().cpu().contiguous()
        save_file(tensors, str(expert_dir / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        LoraConfig(
            r=settings.rank, lora_alpha=alpha, lora_dropout=settings.dropout, target_modules=sorted(layers),
            bias="none", base_model_name_or_path=base_name,
        ).save_pretrained(str(expert_dir))  # fmt: skip
    routers = {
        f"{path}.router.weight": m.router.weight.detach().cpu().contiguous() for path, m in layers.items()
    }
    save_file(routers, str(out / ROUTER_FILE), metadata={"format": "pt"})
    tied = settings.languages is not None
    experts = [{"name": n, "language": n if tied else None, "dir": n} for n in settings.names]
    meta = {"experts": experts, "settings": settings.to_dict(), "base_model_name_or_path": base_name}
    (out / EXPERTS_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return out


def load_experts(model: MoEHost, in_dir: str | Path) -> MoEHost:
    """Restore what :func:`save_experts` wrote; adds the MoE to a model that has none."""
    src = Path(in_dir)
    meta = json.loads((src / EXPERTS_FILE).read_text())
    saved = MoESettings.from_dict(meta["settings"])
    if getattr(model.config, "moe", None):
        current = settings_of(model)
        fit = ("n_experts", "rank", "alpha", "languages", "modules")
        if any(getattr(current, f) != getattr(saved, f) for f in fit):
            raise ValueError(f"{src}: experts do not fit this model's mixture ({current} vs {saved})")
    else:
        install_moe(model, MoESettings.from_dict({**saved.to_dict(), "modules": []}))
    layers = molora_layers(model.encoder)
    for e, entry in enumerate(meta["experts"]):
        load_adapter(layers, e, src / entry["dir"], saved)
    routers = load_file(str(src / ROUTER_FILE))
    with torch.no_grad():
        for path, layer in layers.items():
            layer.router.weight.copy_(routers[f"{path}.router.weight"])
    return model
