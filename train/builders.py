"""What one training stage is built from, each from the typed config: tokenizer, model, data, loader,
optimizer, scheduler, phases, and the dev evaluation.

Separate from the loop in :mod:`.recipe` so that tests (and a reader) can build any one part alone,
and so the loop reads as what it does rather than how each part is made.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch

from .batching import BucketBatchSampler, Collator
from .config import OptimConfig, RecipeConfig
from .data import LoadStats, build_dataset
from .embedded_encoder import resolve_encoder
from .preflight import hub_offline


def build_tokenizer(cfg: RecipeConfig) -> Any:
    from transformers import AutoTokenizer

    source = resolve_encoder(cfg.encoder) if cfg.stage == 1 else cfg.previous_stage_path
    return AutoTokenizer.from_pretrained(str(source), local_files_only=hub_offline())


def build_model(cfg: RecipeConfig, languages: list[str]) -> Any:
    """Stage 1: heads on ``encoder``; 2: the stage-1 model; 3: the stage-2 model + experts. Then set_stage."""
    from .model import Multi2OIEModel

    stage, moe = cfg.stage, cfg.moe
    if stage == 1:
        model = Multi2OIEModel.from_encoder(
            resolve_encoder(cfg.encoder), languages=languages, local_files_only=hub_offline(), **cfg.model
        )
    else:
        model = Multi2OIEModel.from_pretrained(str(cfg.previous_stage_path))
        model.config.languages = list(model.config.languages) + [
            lang for lang in languages if lang not in model.config.languages
        ]  # new languages get new ids; the old ids keep their meaning
    if stage == 3 and not model.config.moe:
        tied = moe.languages or (
            model.config.languages if moe.experts_tied or moe.router_aux_weight > 0 else None
        )
        model.add_moe(
            n_experts=len(tied) if tied else moe.n_experts,
            rank=moe.rank,
            alpha=moe.alpha,
            top_k=moe.top_k,
            languages=tied,
            router_aux_weight=moe.router_aux_weight,
            dropout=moe.dropout,
        )
    model.set_stage(stage)
    return model


def build_data(cfg: RecipeConfig, tokenizer: Any, accelerator: Any) -> tuple[Any, LoadStats]:
    """The encoded training set (built once by the main process, read from the cache by the others).
    Rejected lines are reported, one line per source; above ``data.max_rejected_fraction`` the run
    stops here, before training."""
    stats = LoadStats()
    with accelerator.main_process_first():
        dataset = build_dataset(
            cfg.data.train,
            tokenizer,
            max_length=cfg.data.max_length,
            cache_dir=cfg.data.cache_dir,
            num_proc=cfg.data.num_proc,
            stats=stats,
            max_rejected_fraction=cfg.data.max_rejected_fraction,
        )
    if accelerator.is_main_process:
        for line in stats.rejection_warnings():
            print(f"openie4pp train: warning: {line}", file=sys.stderr, flush=True)
    return dataset, stats


def build_loader(cfg: RecipeConfig, dataset: Any, tokenizer: Any, languages: Sequence[str]) -> Any:
    """Length-bucketed batches; ``data.language_temperature`` != 1 resamples each epoch's languages."""
    sampler = BucketBatchSampler(
        dataset["length"],
        cfg.batch_size,
        seed=cfg.seed,
        bucket_size=cfg.data.bucket_size,
        languages=list(dataset["lang"]),
        temperature=cfg.data.language_temperature,
    )
    collate = Collator(tokenizer.pad_token_id, languages, 8 if torch.cuda.is_available() else None)
    # Its own generator: starting an epoch's iterator draws a seed, which must not come from the
    # global RNG that dropout uses (a resumed run starts its iterator after restoring that RNG).
    generator = torch.Generator().manual_seed(cfg.seed)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, generator=generator
    )


def build_optimizer(optim: OptimConfig, model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only (what ``set_stage`` left with ``requires_grad``).

    ``optim.head_lr`` (default: ``lr``) is the task heads' own rate: they start from random weights
    while the encoder is pretrained, and a small encoder's short CPU run leaves them untrained at the
    encoder's rate (the argument head of a 168-step e5-small run still tagged every word ``O``)."""
    head_parameters = getattr(model, "head_parameters", list)
    heads = {id(p) for p in head_parameters()} if optim.head_lr else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in heads], "lr": optim.lr}]
    if heads:
        groups.append({"params": [p for p in trainable if id(p) in heads], "lr": optim.head_lr})
    betas = (optim.betas[0], optim.betas[1])
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=optim.lr, betas=betas, eps=optim.eps,
        weight_decay=optim.weight_decay,
    )


def build_scheduler(cfg: RecipeConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """Linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0 (Multi2OIE)."""
    warmup = int(cfg.optim.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def phases(cfg: RecipeConfig) -> list[tuple[str, int]]:
    """``(name, epochs)``: one phase, or for tied experts the per-language phase then the mixture."""
    if cfg.stage == 3 and cfg.moe.experts_tied:
        return [("experts", cfg.moe.expert_epochs), ("mixture", cfg.epochs)]
    return [("train", cfg.epochs)]


def dev_sentences(cfg: RecipeConfig) -> list[Any]:
    """The ``eval.benchmark`` sentences (the first ``eval.limit``), or none without a dev benchmark."""
    from .sources import load_records

    bench = cfg.eval.benchmark
    if not bench:
        return []
    return [r.sentence for r in load_records([{"benchmark": bench, "limit": cfg.eval.limit}])]


def dev_eval(cfg: RecipeConfig, acc: Any, model: Any, tokenizer: Any, sentences: list[Any]) -> dict[str, Any]:
    """Extract the dev sentences (split over processes), score on the main process, share the result."""
    from accelerate.utils import broadcast_object_list, gather_object

    from openie4pp.eval.run import evaluate

    from .extract import Extractor

    benchmark = cfg.eval.benchmark
    if benchmark is None:
        raise ValueError("dev_eval needs eval.benchmark")
    unwrapped = acc.unwrap_model(model)
    extractor = Extractor(
        unwrapped,
        tokenizer,
        device=acc.device,
        batch_size=cfg.eval.batch_size,
        max_length=cfg.data.max_length,
        name=cfg.output_path.name,
    )
    mine = extractor.records(sentences[acc.process_index :: acc.num_processes])
    lines = gather_object([r.model_dump_json() for r in mine])
    unwrapped.train()
    result: list[Any] = [None]
    if acc.is_main_process:
        path = cfg.output_path / "dev_predictions.jsonl"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        scored = evaluate(benchmark, path)
        result = [{**scored.summary(), "curve": scored.curve_points()}]  # the report draws the PR curve
    broadcast_object_list(result)
    return dict(result[0])
