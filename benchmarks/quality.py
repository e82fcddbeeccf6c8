"""Extraction quality after MT4CrossOIE stages 1 -> 2 (-> 3), and the paper's comparison (``--compare``).

The encoder (default: the packaged multilingual-e5-small, see ``openie4pp.train.embedded_encoder``)
is tuned on OIE2016 dev (CoNLL) + CaRB dev with ``openie4pp train`` (the same recipe and config keys
as the command line), then each stage's model extracts the CaRB test, Re-OIE2016 en/es/pt and BenchIE
en/zh/de sentences, scored with our scorers. ``--compare`` runs the method's claim instead (see
:mod:`quality_compare`). Defaults fit about 20 minutes on 2 CPU cores; ``--epochs``, ``--batch-size``,
``--max-length``, ``--encoder`` scale it up (e.g. ``--encoder bert-base-multilingual-cased`` on a
GPU). Nothing here selects on test data: there is no dev selection at all (the dev sets are the
training data), each stage's last weights are scored. Prints one JSON object.

    python benchmarks/quality.py [--run-dir runs/quality] [--stages 1,2,3] [--epochs 2,8,2]
                                 [--lr 5e-4,1e-4,1e-3] [--batch-size 32] [--max-length 64]

These are small-data numbers (about 2,000 training predicates instead of Multi2OIE's bootstrapped
OpenIE4 corpus; a 4-bit-derived small encoder instead of mBERT-base): a test of the whole pipeline,
not a replication of the published scores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from quality_compare import add_compare_arguments, compare

from openie4pp.benchmarks import names
from openie4pp.eval.run import evaluate
from openie4pp.train.extract import Extractor, read_sentences, write_records
from openie4pp.train.recipe import load_config, train

BENCHMARKS = tuple(names("test", scorable=True))  # the held-out ones, every language with a gold
STAGE3_VARIANTS = {
    "plain": [],
    "tied": ["moe.experts_tied=true"],
    "aux": ["moe.experts_tied=true", "moe.router_aux_weight=0.1"],
}


def score(model_dir: Path, batch_size: int, max_length: int, limit: int | None,
          benchmarks: tuple[str, ...] = BENCHMARKS) -> dict[str, Any]:
    """F1 / AUC (and P, R) of one model on each benchmark; n-ary scoring."""
    extractor = Extractor.from_pretrained(model_dir, batch_size=batch_size, max_length=max_length)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in benchmarks:
            sentences = read_sentences(name, limit=limit)
            start = time.perf_counter()
            records = extractor.records(sentences)
            seconds = time.perf_counter() - start
            path = Path(tmp) / f"{name}.jsonl"
            with path.open("w", encoding="utf-8") as handle:
                write_records(records, handle)
            result = evaluate(name, path)
            out[name] = {
                "f1": round(result.f1, 4),
                "auc": round(result.auc, 4) if result.auc is not None else None,
                "precision": round(result.precision, 4),
                "recall": round(result.recall, 4),
                "extractions": result.n_predictions,
                "sentences_per_s": round(len(sentences) / seconds, 1),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", default="runs/quality")
    parser.add_argument("--encoder", default="multilingual-e5-small",
                        help="a model folder, a hub name, or multilingual-e5-small (packaged, the default)")
    parser.add_argument("--compare", action="store_true",
                        help="the paper's comparison: (a) gold en, (b) + silver, (c) + stage-3 experts")
    parser.add_argument("--stages", default="1,2,3")
    parser.add_argument("--epochs", default="2,8,2", help="epochs of stages 1,2,3")
    parser.add_argument("--lr", default="5e-4,1e-4,1e-3", help="learning rates of stages 1,2,3")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--train", default="oie2016-dev,carb-dev", help="training sources (names or paths)")
    parser.add_argument("--eval-limit", type=int, default=None, help="score the first N sentences only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--published-head",
        action="store_true",
        help="Multi2OIE's argument head (width 2*hidden+64, feed-forward 2048); default: a 256-wide head "
        "with feed-forward 512, about 12x cheaper per predicate, so the CPU run fits in ~20 minutes",
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more recipe overrides")
    parser.add_argument(
        "--stage3-variants",
        default="plain",
        help="stage-3 mixtures to compare, each from the same stage-2 model: plain (learned routers), "
        "tied (expert i trained alone on language i first), aux (tied + router supervised by the "
        "sentence's language)",
    )
    parser.add_argument(
        "--stage3-train",
        default=None,
        help="stage-3 training sources (default: --train); give several languages for the variants to differ",
    )
    add_compare_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compare:
        compare(args, score)
        return

    stages = [int(s) for s in args.stages.split(",")]
    epochs = dict(zip((1, 2, 3), args.epochs.split(","), strict=True))
    rates = dict(zip((1, 2, 3), args.lr.split(","), strict=True))
    encoder = args.encoder
    results: dict[str, Any] = {}
    started = time.perf_counter()
    runs = [(stage, "") for stage in stages if stage != 3]
    if 3 in stages:
        runs += [(3, variant) for variant in args.stage3_variants.split(",")]
    for stage, variant in runs:
        train_sources = (args.stage3_train if stage == 3 and args.stage3_train else args.train).split(",")
        overrides = [
            f"encoder={encoder}",
            f"run_dir={args.run_dir}",
            f"data.train={json.dumps(train_sources)}",
            f"data.max_length={args.max_length}",
            f"batch_size={args.batch_size}",
            f"epochs={epochs[stage]}",
            f"optim.lr={rates[stage]}",
            "log_every=10",
            "progress=false",
            "overwrite=true",  # a benchmark run retrains every stage from scratch
            *([] if args.published_head else ["model.arg_dim=256", "model.arg_ff_dim=512"]),
            *args.set,
            *STAGE3_VARIANTS.get(variant, []),
        ]
        name = f"stage{stage}" + (f"-{variant}" if variant else "")
        model_dir = Path(args.run_dir) / name
        if variant:
            overrides += [f"output_dir={model_dir}", f"init_from={Path(args.run_dir) / 'stage2'}"]
        stage_start = time.perf_counter()
        metrics = train(load_config(None, overrides, stage=stage))
        train_s = time.perf_counter() - stage_start
        log = [json.loads(line) for line in (model_dir / "log.jsonl").read_text().splitlines()]
        results[name] = {
            "train": train_sources,
            "steps": metrics.steps,
            "examples": metrics.examples,
            "train_s": round(train_s, 1),
            "first_loss": round(log[0]["loss"], 4),
            "last_loss": round(log[-1]["loss"], 4),
            **score(model_dir, 64, 128, args.eval_limit),
        }
        print(json.dumps({name: results[name]}), flush=True)
    print(
        json.dumps(
            {
                "benchmark": "quality",
                "encoder": encoder,
                "train": args.train.split(","),
                "epochs": epochs,
                "lr": rates,
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "head": "published" if args.published_head else "arg_dim=256, arg_ff_dim=512",
                "threads": torch.get_num_threads(),
                "total_s": round(time.perf_counter() - started, 1),
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
