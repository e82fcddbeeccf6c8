"""``openie4pp train``: ONE torchtune-style recipe for the three MT4CrossOIE stages, on HF Accelerate.

Read top to bottom: :class:`TrainRecipe` (``setup`` / ``train`` / ``finish``), a plain loop over
parts made by the ``build_*`` functions of :mod:`.builders`. The typed config (:mod:`.config`,
:class:`RecipeConfig`) is documented in ``train/configs/recipe.yaml``; checkpoints are
:mod:`.checkpoint`; :func:`train` returns :class:`TrainMetrics`, what ``metrics.json`` holds.
Each stage writes a ``from_pretrained`` folder: config.json, model.safetensors, tokenizer, experts/
(stage 3, PEFT LoRA format), training_args.yaml, metrics.json, plus log.jsonl (step, loss parts,
lr, time; an epoch's first line also its examples per language), checkpoint/ and, with a dev
benchmark, best/ (the folder itself is then the best dev model).

* **Checks first.** :mod:`.preflight` looks at files before anything loads (the previous stage's
  model, the data, a finished stage in the way, the encoder); rejected training lines are reported
  per source and above ``data.max_rejected_fraction`` stop the run before training.
* **Stages.** 1 initialises from ``encoder``; 2 from ``init_from`` (default ``{run_dir}/stage1``);
  3 from ``{run_dir}/stage2`` plus :meth:`Multi2OIEModel.add_moe`. ``set_stage`` decides what
  trains, and the optimizer only ever receives parameters with ``requires_grad``.
* **Tied experts (stage 3, optional).** With ``moe.experts_tied: true`` the experts are tied one per
  language and a first phase of ``moe.expert_epochs`` routes every sentence to its language's expert
  (``set_language_routing``): each expert trains on its own language only, done for all languages in
  the same mixed batches rather than one language after the other. The mixture (learned routers)
  then trains for ``epochs``. ``moe.router_aux_weight > 0`` adds router supervision by language.
* **Multi-process** through Accelerate, no code change: ``accelerate launch --num_processes 2 -m
  openie4pp.app.cli train ...`` on GPUs; on CPU ``ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu
  --num_processes 2 ...`` (gloo; ``--cpu`` alone starts a single process). ``batch_size`` is per
  process; dev extraction is split over the processes and gathered. The scheduler is stepped by the
  loop once per optimizer step (a *prepared* scheduler would step once per process and step).
  bf16/fp16 autocast (``mixed_precision``) is used on CUDA only.
* **Exact resume.** A checkpoint holds the model (safetensors), the AdamW and scheduler states
  (``torch.save``, read back with ``weights_only=True``), every process's RNG states (safetensors +
  JSON) and the data position (phase, epoch, batches consumed; batch order is a pure function of
  seed and epoch). ``resume: true`` continues from it; the log is cut back to the checkpoint's step.
  Nothing is pickled on disk. (With several processes and an epoch that does not split evenly,
  Accelerate pads the last round from the first batches it sees, which after a mid-epoch resume are
  other batches than in an uninterrupted run: exactness holds for one process or even splits.)
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from .batching import BucketBatchSampler
from .builders import (
    build_data,
    build_loader,
    build_model,
    build_optimizer,
    build_scheduler,
    build_tokenizer,
    dev_eval,
    dev_sentences,
    phases,
)
from .checkpoint import load_checkpoint, save_checkpoint, save_model_folder, set_rng_state
from .config import RecipeConfig, load_config, parse_overrides
from .preflight import check_before_training, clear_stale_artefacts, resume_guard

__all__ = [
    "RecipeConfig", "TrainMetrics", "TrainRecipe", "build_model", "build_optimizer", "load_config",
    "parse_overrides", "save_model_folder", "train",
]  # fmt: skip


class TrainMetrics(BaseModel):
    """What :func:`train` returns and ``metrics.json`` holds, key for key and in this order."""

    model_config = ConfigDict(extra="forbid")

    halted: bool
    best: float | None
    """The best dev score (``eval.metric``), None without a dev benchmark."""
    best_step: int | None
    evals: list[dict[str, Any]]
    stage: int
    steps: int
    """Optimizer steps taken in this stage (all phases)."""
    examples: int
    languages: list[str]
    processes: int
    trainable_parameters: int
    elapsed_s: float
    data: dict[str, Any]
    """:meth:`LoadStats.summary`: records, examples, rejected lines per source..."""


# -- the recipe ----------------------------------------------------------------------------------


class TrainRecipe:
    """One stage: :meth:`setup` builds everything, :meth:`train` runs the phases, :meth:`finish`
    writes the model folder and ``metrics.json``. ``state`` is the resumable part."""

    def __init__(self, cfg: RecipeConfig) -> None:
        from accelerate import Accelerator, DistributedDataParallelKwargs

        check_before_training(cfg)  # before anything is loaded: every process, the same files
        self.cfg = cfg
        self.out = cfg.output_path
        self.tied = cfg.stage == 3 and cfg.moe.experts_tied
        self.acc = Accelerator(
            mixed_precision=cfg.mixed_precision if torch.cuda.is_available() else "no",
            gradient_accumulation_steps=cfg.grad_accum,
            rng_types=[],  # batch order comes from the sampler's own seeded generator
            # the per-language phase leaves the routers out of the graph
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=self.tied)],
        )
        self.state: dict[str, Any] = {
            "phase": 0, "epoch": 0, "batch": 0, "step": 0, "phase_step": 0,
            "best": None, "best_step": None, "evals": [], "halted": False,
            "resume_guard": resume_guard(cfg),
        }  # fmt: skip
        self.resumed: dict[str, Any] | None = None
        self.counted: set[tuple[str, int]] = set()  # (phase, epoch) whose language counts are logged
        self.started = time.time()

    def setup(self) -> None:
        from accelerate.utils import set_seed

        cfg, acc = self.cfg, self.acc
        set_seed(cfg.seed)
        if acc.is_main_process:
            if cfg.overwrite:
                clear_stale_artefacts(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        self.tokenizer = build_tokenizer(cfg)
        self.dataset, self.stats = build_data(cfg, self.tokenizer, acc)
        model = build_model(cfg, cfg.languages or sorted(set(self.dataset["lang"])))
        loader = build_loader(cfg, self.dataset, self.tokenizer, model.config.languages)
        self.sampler: BucketBatchSampler = loader.batch_sampler
        self.model, self.loader = acc.prepare(model, loader)
        self.unwrapped = acc.unwrap_model(self.model)
        self.dev = dev_sentences(cfg)
        self.log_path = self.out / "log.jsonl"
        checkpoint = self.out / "checkpoint"
        if cfg.resume and (checkpoint / "trainer_state.json").is_file():
            self.resumed = load_checkpoint(acc, self.model, checkpoint)
            self.state.update({k: v for k, v in self.resumed.items() if not k.startswith("_")})
            if acc.is_main_process and self.log_path.is_file():
                self._cut_log()
        elif acc.is_main_process:
            self.log_path.write_text("")

    def _cut_log(self) -> None:
        """Drop what was logged after the checkpoint's step; an epoch whose first line is kept keeps
        its language counts (they are not logged twice)."""
        rows = [(line, json.loads(line)) for line in self.log_path.read_text().splitlines()]
        kept = [(line, row) for line, row in rows if row["step"] <= self.state["step"]]
        self.log_path.write_text("".join(line + "\n" for line, _ in kept))
        self.counted = {(row["phase"], row["epoch"]) for _, row in kept if "languages" in row}

    def train(self) -> None:
        cfg, acc, state = self.cfg, self.acc, self.state
        local = math.ceil(self.sampler.num_batches() / acc.num_processes)
        per_epoch = math.ceil(local / cfg.grad_accum)
        for index, (phase, epochs) in enumerate(phases(cfg)):
            if index < state["phase"]:
                continue
            if self.tied:
                self.unwrapped.set_language_routing(phase == "experts")
            total = epochs * per_epoch if cfg.max_steps is None else min(epochs * per_epoch, cfg.max_steps)
            self.optimizer = acc.prepare(build_optimizer(cfg.optim, self.unwrapped))
            self.scheduler = build_scheduler(cfg, self.optimizer, total)
            if self.resumed and index == state["phase"]:
                self.optimizer.load_state_dict(self.resumed["_optimizer"])
                self.scheduler.load_state_dict(self.resumed["_scheduler"])
                set_rng_state(*self.resumed["_rng"])
            else:
                state.update(phase=index, epoch=0, batch=0, phase_step=0)
            self._run_phase(phase, epochs, total)
            if state["halted"]:
                return
            if self.dev and not any(e["step"] == state["step"] for e in state["evals"]):
                self._evaluate()  # every phase ends with a score
            state.update(epoch=epochs, batch=0)
        if self.tied:
            self.unwrapped.set_language_routing(False)

    def _run_phase(self, phase: str, epochs: int, total: int) -> None:
        from tqdm.auto import tqdm

        cfg, acc, state, model = self.cfg, self.acc, self.state, self.model
        shown = cfg.progress and acc.is_main_process
        bar = tqdm(
            total=total, initial=state["phase_step"], desc=f"stage {cfg.stage} {phase}", disable=not shown
        )
        window: list[list[float]] = []
        model.train()
        while state["epoch"] < epochs and state["phase_step"] < total:
            self.sampler.resume_at(state["epoch"], state["batch"] * acc.num_processes)
            self.loader.set_epoch(state["epoch"])
            for batch in self.loader:
                with acc.accumulate(model):
                    output = model(**batch)
                    acc.backward(output.loss)
                    if acc.sync_gradients:
                        acc.clip_grad_norm_(model.parameters(), cfg.optim.max_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad()
                state["batch"] += 1
                parts = (output.loss, output.pred_loss, output.arg_loss, output.router_loss)
                window.append([math.nan if p is None else p.detach().float().item() for p in parts])
                if not acc.sync_gradients:
                    continue
                if not acc.optimizer_step_was_skipped:
                    self.scheduler.step()
                state["step"] += 1
                state["phase_step"] += 1
                bar.update(1)
                step = state["step"]
                if step % cfg.log_every == 0 or state["phase_step"] == total:
                    bar.set_postfix(loss=f"{self._log(window, phase):.4f}")
                    window = []
                if self.dev and cfg.eval.every and step % cfg.eval.every == 0:
                    self._evaluate()
                halt = cfg.halt_at_step is not None and step >= cfg.halt_at_step
                if halt or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                    self._checkpoint()
                state["halted"] = halt
                if halt or state["phase_step"] >= total:
                    break
            else:  # the epoch ran to its end
                state.update(epoch=state["epoch"] + 1, batch=0)
                if self.dev and not cfg.eval.every:
                    self._evaluate()
                if not cfg.checkpoint_every:
                    self._checkpoint()
            if state["halted"]:
                break
        bar.close()

    def _log(self, window: list[list[float]], phase: str) -> float:
        """Mean loss parts since the last line, averaged over processes, appended to log.jsonl. The
        first line of each (phase, epoch) also has ``languages`` (examples per language the epoch
        draws) and ``temperature``: extra keys on a loss line, so every line keeps ``step`` and
        ``loss``, a resume's cut by step keeps or drops them with their line, and a resumed epoch
        whose first line was kept does not repeat them."""
        acc = self.acc
        mean = acc.gather(torch.tensor(window, device=acc.device).mean(0)[None]).mean(0).tolist()
        names = ("loss", "pred_loss", "arg_loss", "router_loss")
        row: dict[str, Any] = {k: v for k, v in zip(names, mean, strict=True) if not math.isnan(v)}
        row.update(
            step=self.state["step"],
            phase=phase,
            epoch=self.state["epoch"],
            lr=self.scheduler.get_last_lr()[0],
            elapsed_s=round(time.time() - self.started, 3),
        )
        if (phase, self.state["epoch"]) not in self.counted:  # an epoch's first line: what it samples
            self.counted.add((phase, self.state["epoch"]))
            row.update(languages=self.sampler.language_counts(), temperature=self.sampler.temperature)
        if acc.is_main_process:
            with self.log_path.open("a") as log:
                log.write(json.dumps(row) + "\n")
        return float(row["loss"])

    def _checkpoint(self) -> None:
        save_checkpoint(
            self.acc, self.model, self.optimizer, self.scheduler, self.state, self.out / "checkpoint"
        )

    def _evaluate(self) -> None:
        """Score on the dev benchmark; ``best/`` keeps the best model so far (ties: the later one)."""
        result = dev_eval(self.cfg, self.acc, self.model, self.tokenizer, self.dev)
        value, state = result.get(self.cfg.eval.metric), self.state
        state["evals"].append({"step": state["step"], **result})
        if value is not None and (state["best"] is None or value >= state["best"]):
            state["best"], state["best_step"] = value, state["step"]
            self._save_model_folder(self.out / "best")
        self.acc.wait_for_everyone()

    def _save_model_folder(self, folder: Path) -> None:
        save_model_folder(self.acc, self.model, self.tokenizer, self.cfg.model_dump(), folder)

    def finish(self) -> TrainMetrics:
        """The stage's model folder (best dev checkpoint when scored, else the last weights) and metrics."""
        acc, state, model = self.acc, self.state, self.unwrapped
        metrics = TrainMetrics(
            halted=state["halted"],
            best=state["best"],
            best_step=state["best_step"],
            evals=state["evals"],
            stage=self.cfg.stage,
            steps=state["step"],
            examples=len(self.dataset),
            languages=list(model.config.languages),
            processes=acc.num_processes,
            trainable_parameters=sum(p.numel() for p in model.parameters() if p.requires_grad),
            elapsed_s=round(time.time() - self.started, 3),
            data=self.stats.summary(),
        )
        if not state["halted"]:
            if state["best"] is not None and (self.out / "best").is_dir():
                if acc.is_main_process:
                    shutil.copytree(self.out / "best", self.out, dirs_exist_ok=True)
            else:
                self._save_model_folder(self.out)
        if acc.is_main_process:
            (self.out / "metrics.json").write_text(json.dumps(metrics.model_dump(), indent=1) + "\n")
        acc.wait_for_everyone()
        acc.end_training()
        return metrics


def train(cfg: RecipeConfig) -> TrainMetrics:
    """Run one stage as configured (:func:`load_config`); returns the metrics also written to
    ``metrics.json``."""
    recipe = TrainRecipe(cfg)
    recipe.setup()
    recipe.train()
    return recipe.finish()
