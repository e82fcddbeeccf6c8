"""Exact-resume checkpoints and the ``from_pretrained`` model folder, with nothing pickled on disk.

A checkpoint holds the model (safetensors), the AdamW and scheduler states (``torch.save`` of plain
tensors and numbers, read back with ``weights_only=True``), every process's RNG states (safetensors +
JSON) and the recipe's data position (``trainer_state.json``). It is written to ``<path>.tmp`` and
renamed, so a crash while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import yaml


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    plain = {"python": [version, list(state), gauss], "numpy": [name, keys.tolist(), pos, has_gauss, cached]}
    return tensors, plain


def set_rng_state(tensors: dict[str, torch.Tensor], plain: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in tensors]
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    version, state, gauss = plain["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(
    acc: Any, model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any], path: Path
) -> None:
    """Write to ``path.tmp`` then rename: a crash while saving leaves the previous checkpoint intact."""
    from safetensors.torch import save_file, save_model

    tmp = path.with_name(path.name + ".tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    tensors, plain = rng_state()
    save_file(tensors, str(tmp / f"rng_{acc.process_index}.safetensors"))
    (tmp / f"rng_{acc.process_index}.json").write_text(json.dumps(plain))
    if acc.is_main_process:
        save_model(acc.unwrap_model(model), str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    acc.wait_for_everyone()
    if acc.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        tmp.rename(path)
    acc.wait_for_everyone()


def load_checkpoint(acc: Any, model: Any, path: Path) -> dict[str, Any]:
    """Model weights and RNG states now; optimizer/scheduler states are returned for their phase."""
    from safetensors.torch import load_file, load_model

    load_model(acc.unwrap_model(model), str(path / "model.safetensors"), device=str(acc.device))
    state: dict[str, Any] = json.loads((path / "trainer_state.json").read_text())
    state["_rng"] = (
        load_file(str(path / f"rng_{acc.process_index}.safetensors")),
        json.loads((path / f"rng_{acc.process_index}.json").read_text()),
    )
    state["_optimizer"] = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    state["_scheduler"] = torch.load(path / "scheduler.pt", weights_only=True)
    return state


def save_model_folder(acc: Any, model: Any, tokenizer: Any, cfg: dict[str, Any], out: Path) -> None:
    """A ``from_pretrained`` folder: config, safetensors, tokenizer, experts/ (PEFT), training_args.yaml."""
    if not acc.is_main_process:
        return
    unwrapped = acc.unwrap_model(model)
    out.mkdir(parents=True, exist_ok=True)
    unwrapped.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    if unwrapped.config.moe:
        unwrapped.save_experts(out / "experts")
    (out / "training_args.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
