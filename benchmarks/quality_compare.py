"""MT4CrossOIE's comparison on this machine (``python benchmarks/quality.py --compare``).

From one multilingual encoder and one step budget per stage, three arms:

* **(a)** stages 1-2 on English gold only (OIE2016 dev + CaRB dev);
* **(b)** stages 1-2 on the same gold plus silver OpenIE4++ made by the embedded LLM
  (``annotate --endpoint local``, extract mode, the first ``--silver-per-lang`` sample sentences of
  each non-English language; resumable: a rerun reuses the annotator's shards and cache);
* **(c)** (b)'s stage-2 model plus stage 3: a mixture of ``--experts`` LoRA experts of rank
  ``--rank`` (the MT4CrossOIE code's 6 and 64) with learned routers, on the same data.

Every arm's final model is scored on CaRB test, Re-OIE2016 en/es/pt and BenchIE en/zh/de (n-ary).
The method's claim is that (b) and (c) beat (a) off English; the table reports what happens here,
with the training examples per language. Written as ``RUN_DIR/compare.json`` and ``compare.md``.
Nothing is selected on test data: every arm's last weights are scored.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

SILVER_LANGS = ("de", "es", "pt", "zh", "ar")
GOLD = ["oie2016-dev", "carb-dev"]


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--compare")
    group.add_argument("--steps", default="40,160,60", help="optimizer steps of stages 1,2,3 (every arm)")
    group.add_argument("--silver", default="auto",
                       help="silver shard folders (comma-separated), or 'auto': annotate the sample corpus "
                       "with the embedded LLM")
    group.add_argument("--silver-per-lang", type=int, default=8)
    group.add_argument("--experts", type=int, default=6)
    group.add_argument("--rank", type=int, default=64)
    group.add_argument("--temperature", type=float, default=1.0,
                       help="data.language_temperature of arms (b) and (c) (1: natural proportions)")


def make_silver(run_dir: Path, per_lang: int) -> list[str]:
    """Annotate the first ``per_lang`` sample sentences of each language in :data:`SILVER_LANGS`
    with the embedded model (the quickstart's settings); returns the shard folder."""
    from openie4pp.app.cli import main

    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    text = (resources.files("openie4pp") / "data" / "sample" / "extract.jsonl").read_text(encoding="utf-8")
    for line in text.splitlines():
        item = json.loads(line)
        by_lang[item["lang"]].append(item)
    folder = run_dir / "silver"
    folder.mkdir(parents=True, exist_ok=True)
    inputs = folder / "input.jsonl"
    content = "".join(json.dumps(item, ensure_ascii=False) + "\n"
                      for lang in SILVER_LANGS for item in by_lang[lang][:per_lang])
    if not inputs.is_file() or inputs.read_text(encoding="utf-8") != content:
        inputs.write_text(content, encoding="utf-8")
    out = folder / "extract"
    rc = main(["annotate", "--input", str(inputs), "--mode", "extract", "--out", str(out),
               "--endpoint", "local", "--concurrency", "1", "--max-tokens", "256", "--constrain", "spans",
               "--timeout", "300", "--canaries", "0"])
    if rc not in (0, 1):
        raise SystemExit(f"annotate failed (exit {rc}); rerun to resume")
    return [str(out)]


def compare(args: argparse.Namespace, score: Callable[..., dict[str, Any]]) -> None:
    from openie4pp.atomic import write_text_atomic
    from openie4pp.train.recipe import load_config, train

    run_dir = Path(args.run_dir)
    started = time.perf_counter()
    silver_started = time.perf_counter()
    silver = make_silver(run_dir, args.silver_per_lang) if args.silver == "auto" else args.silver.split(",")
    silver_s = time.perf_counter() - silver_started
    steps = dict(zip((1, 2, 3), (int(s) for s in args.steps.split(",")), strict=True))
    rates = dict(zip((1, 2, 3), args.lr.split(","), strict=True))
    common = [f"encoder={args.encoder}", f"data.max_length={args.max_length}",
              f"batch_size={args.batch_size}",
              "epochs=1000", "log_every=10", "progress=false", "overwrite=true", "checkpoint_every=0",
              "eval.benchmark=null", "model.arg_dim=256", "model.arg_ff_dim=512", *args.set]
    arms = {
        "a": ("English gold, stages 1-2", GOLD, [1, 2], []),
        "b": ("+ silver OpenIE4++, stages 1-2", GOLD + silver, [1, 2],
              [f"data.language_temperature={args.temperature}"]),
        "c": ("+ stage 3 (language experts)", GOLD + silver, [3],
              [f"data.language_temperature={args.temperature}", f"moe.n_experts={args.experts}",
               f"moe.rank={args.rank}", f"init_from={run_dir / 'b' / 'stage2'}"]),
    }
    rows: dict[str, Any] = {}
    for arm, (label, data, stages, extra) in arms.items():
        arm_dir = run_dir / arm
        arm_started = time.perf_counter()
        data_summary: dict[str, Any] = {}
        for stage in stages:
            overrides = [*common, f"run_dir={arm_dir}", f"data.train={json.dumps(data)}",
                         f"max_steps={steps[stage]}", f"optim.lr={rates[stage]}", *extra]
            if arm == "c":
                overrides.append(f"output_dir={arm_dir / 'stage3'}")
            data_summary = train(load_config(None, overrides, stage=stage)).data
        train_s = time.perf_counter() - arm_started
        model = arm_dir / f"stage{stages[-1]}"
        scores = score(model, 64, 128, args.eval_limit)
        rows[arm] = {"label": label, "model": str(model), "train_s": round(train_s, 1),
                     "steps": {s: steps[s] for s in ([1, 2] if arm != "c" else [1, 2, 3])},
                     "examples_per_lang": data_summary.get("examples_per_lang", {}),
                     "records": data_summary["records"], **scores}
        print(json.dumps({arm: rows[arm]}), flush=True)
    result = {"benchmark": "quality_compare", "encoder": args.encoder, "head": "arg_dim=256, arg_ff_dim=512",
              "silver": silver,
              "silver_s": round(silver_s, 1), "temperature": args.temperature, "experts": args.experts,
              "rank": args.rank, "batch_size": args.batch_size, "max_length": args.max_length,
              "lr": rates, "total_s": round(time.perf_counter() - started, 1), "arms": rows}
    write_text_atomic(run_dir / "compare.json", json.dumps(result, indent=1) + "\n")
    table = markdown(result)
    write_text_atomic(run_dir / "compare.md", table + "\n")
    print(table)
    print(json.dumps(result))


def markdown(result: dict[str, Any]) -> str:
    """F1 (AUC where the scorer has one: not BenchIE) per arm and benchmark, then the training
    examples per language. Arm (c)'s seconds are its stage 3 only, on top of (b)'s."""
    arms = result["arms"]
    benchmarks = [k for k, v in next(iter(arms.values())).items() if isinstance(v, dict) and "f1" in v]
    lines = ["| arm | " + " | ".join(benchmarks) + " | train s |",
             "|---|" + "---:|" * (len(benchmarks) + 1)]
    for arm, row in arms.items():
        cells = [f"{row[b]['f1']:.3f}" + (f" ({row[b]['auc']:.3f})" if row[b]["auc"] is not None else "")
                 for b in benchmarks]
        lines.append(f"| ({arm}) {row['label']} | " + " | ".join(cells) + f" | {row['train_s']:.0f} |")
    langs = sorted({lang for row in arms.values() for lang in row["examples_per_lang"]})
    lines += ["", "training examples (predicates) per language:", "",
              "| arm | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
    for arm, row in arms.items():
        counts = [str(row["examples_per_lang"].get(lang, 0)) for lang in langs]
        lines.append(f"| ({arm}) | " + " | ".join(counts) + " |")
    return "\n".join(lines)
