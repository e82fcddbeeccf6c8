"""What ``openie4pp train`` checks before it loads anything, each failure one :class:`UsageError` line.

Why a separate pass: loading an encoder, a tokenizer or a dataset takes seconds to minutes and fails
deep inside a library (offline, a hub download retries for 50 s and then four chained tracebacks; a
stage-1 folder that is not there becomes "Repo id must be in the form..."). These checks look at
files only (and at the Hugging Face Hub once, for an encoder name that is not cached), in the order
cheapest first:

1. the previous stage's output (stages 2 and 3): a trained model folder, or the command to make it;
2. the data sources and the dev benchmark exist;
3. the output folder holds no finished or checkpointed stage, unless ``resume=true`` or
   ``overwrite=true`` says what to do with it;
4. the encoder (stage 1) is a model folder, a cached hub model, or reachable on the hub.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from openie4pp import benchmarks
from openie4pp.errors import UsageError

from .config import RecipeConfig
from .sources import DataSource

HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
"""What a Hugging Face Hub model id looks like (``name`` or ``owner/name``)."""
ENCODER_HINT = ("give encoder=PATH_OR_NAME (a local model folder, multilingual-e5-small (packaged), "
                "or a Hugging Face Hub model name)")
STAGE_FILES = ("metrics.json", "model.safetensors", "checkpoint/trainer_state.json")
"""Files that mark a stage folder as finished (the first two) or checkpointed (the last)."""
STALE = ("checkpoint", "checkpoint.tmp", "best", "experts", "metrics.json", "log.jsonl",
         "dev_predictions.jsonl", "report.html")  # fmt: skip
"""What ``overwrite=true`` removes: artefacts the new run would otherwise mix with its own."""


def hub_offline() -> bool:
    return any(
        os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


RESUME_KEYS = ("batch_size", "grad_accum", "seed", "data.max_length", "data.bucket_size",
               "data.language_temperature", "optim.lr", "optim.head_lr")
"""Keys a resumed run must keep: they fix the batch order, the optimizer's parameter groups and the
scheduler's rates, which a checkpoint restores as saved (a changed value would be ignored or crash)."""


def resume_guard(cfg: RecipeConfig) -> dict[str, Any]:
    """The :data:`RESUME_KEYS` values of ``cfg``, stored in every checkpoint's ``trainer_state.json``."""
    out = {}
    for key in RESUME_KEYS:
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = value
    return out


def check_resume_keys(cfg: RecipeConfig) -> None:
    """``resume=true`` with a value of :data:`RESUME_KEYS` other than the checkpoint's: refused."""
    path = cfg.output_path / "checkpoint" / "trainer_state.json"
    try:
        saved = json.loads(path.read_text()).get("resume_guard")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(saved, dict):
        return  # a checkpoint from before the guard
    changed = [f"{key}={now!r} (checkpoint: {saved[key]!r})" for key, now in resume_guard(cfg).items()
               if key in saved and saved[key] != now]
    if changed:
        raise UsageError(f"resume=true with settings other than the checkpoint's: {', '.join(changed)}; "
                         "a checkpoint restores its batch order and optimizer as saved: resume with the "
                         "same values, or overwrite=true to start the stage again")


def check_before_training(cfg: RecipeConfig) -> None:
    """Every check of the module docstring; raises :class:`UsageError` naming the key or folder."""
    if cfg.stage > 1:
        check_previous_stage(cfg)
    check_data_sources(cfg)
    check_output_folder(cfg)
    if cfg.resume and not cfg.overwrite:
        check_resume_keys(cfg)
    if cfg.stage == 1:
        check_encoder(cfg.encoder)


def _checkpoint_step(folder: Path) -> Any:
    try:
        return json.loads((folder / "checkpoint" / "trainer_state.json").read_text()).get("step", "?")
    except (OSError, ValueError, AttributeError):
        return "?"


def check_previous_stage(cfg: RecipeConfig) -> None:
    folder, previous, run = cfg.previous_stage_path, cfg.stage - 1, cfg.run_dir
    weights = ("model.safetensors", "model.safetensors.index.json")  # the index: a sharded save
    if (folder / "config.json").is_file() and any((folder / name).is_file() for name in weights):
        return
    command = f"`openie4pp train --stage {previous} run_dir={run} ...` (that stage's --config and options)"
    if (folder / "checkpoint" / "trainer_state.json").is_file():
        raise UsageError(
            f"stage {previous} at {folder} did not finish (checkpoint at step {_checkpoint_step(folder)}): "
            f"continue it with resume=true first: {command}"
        )
    raise UsageError(
        f"stage {previous} output not found at {folder} (no config.json and model.safetensors): run "
        f"{command} first, or point init_from=PATH at a trained model folder"
    )


def check_data_sources(cfg: RecipeConfig) -> None:
    named: list[tuple[str, str | dict[str, Any]]] = [
        (f"data.train[{i}]", spec) for i, spec in enumerate(cfg.data.train)
    ]
    if cfg.eval.benchmark:
        named.append(("eval.benchmark", {"benchmark": cfg.eval.benchmark}))
    for key, spec in named:
        try:
            source = DataSource.parse(spec)
        except FileNotFoundError as error:  # the benchmarks folder
            raise UsageError(f"{key}: {error}") from None
        if not source.path.exists():
            hint = f"a benchmark name ({', '.join(benchmarks.names())}), a shard folder or a JSONL file"
            raise UsageError(f"{key}: {source.path} not found (a data source is {hint})")


def check_output_folder(cfg: RecipeConfig) -> None:
    out = cfg.output_path
    present = [name for name in STAGE_FILES if (out / name).is_file()]
    if not present or cfg.overwrite:
        return
    checkpointed = "checkpoint/trainer_state.json" in present
    if cfg.resume and checkpointed:
        return
    what = "a finished" if {"metrics.json", "model.safetensors"} & set(present) else "a checkpointed"
    if cfg.resume:
        raise UsageError(
            f"{out} holds {what} stage ({', '.join(present)}) but no checkpoint to resume from: "
            "add overwrite=true to replace it, or choose another output_dir/run_dir"
        )
    choices = (
        "add resume=true to continue from its checkpoint, or overwrite=true to replace it"
        if checkpointed
        else "add overwrite=true to replace it (it has no checkpoint for resume=true)"
    )
    raise UsageError(
        f"{out} already holds {what} stage {cfg.stage} ({', '.join(present)}): {choices}, "
        "or choose another output_dir/run_dir"
    )


def clear_stale_artefacts(out: Path) -> None:
    """``overwrite=true``: remove the old run's artefacts (never anything else in the folder)."""
    for name in STALE:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def check_encoder(name: str) -> None:
    """A local model folder, a packaged encoder (its packages installed), a model in the Hugging Face
    cache, or one the hub has (asked once)."""
    from .embedded_encoder import check_installed, is_embedded

    if is_embedded(name):
        check_installed(name)
        return
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(f"encoder={name}: {path} is not a model folder (no config.json); {ENCODER_HINT}")
        return
    if not HUB_NAME.fullmatch(name):
        raise UsageError(f"encoder={name}: no such folder, and not a hub model name; {ENCODER_HINT}")
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
    except Exception:  # a name the hub library refuses: not cached, and model_info below says why
        cached = None
    if isinstance(cached, str):
        return
    missing = f"the encoder model {name!r} is not a local folder and not in the Hugging Face cache"
    if hub_offline():
        raise UsageError(
            f"{missing}, and the hub cannot be reached (HF_HUB_OFFLINE is set): download it once online, "
            f"or {ENCODER_HINT}"
        )
    try:
        huggingface_hub.model_info(name, timeout=10)
    except RepositoryNotFoundError:
        raise UsageError(
            f"encoder={name}: no such model on the Hugging Face Hub (or it needs a token: HF_TOKEN); "
            f"{ENCODER_HINT}"
        ) from None
    except Exception as error:  # no network, DNS, proxy, timeout, a hub error page
        reason = " ".join(str(error).split())[:120]
        raise UsageError(
            f"{missing}, and the hub cannot be reached ({type(error).__name__}: {reason}; no network? "
            f"with HF_HUB_OFFLINE=1 only the cache is used): {ENCODER_HINT}"
        ) from None
