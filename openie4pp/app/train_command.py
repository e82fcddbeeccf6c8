"""``openie4pp train``: one stage of the recipe, as a command."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="recipe YAML (default: train/configs/recipe.yaml values)")
    parser.add_argument("--stage", type=int, choices=[1, 2, 3], help="overrides the config's stage")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config keys of train/configs/recipe.yaml, e.g. optim.lr=1e-4 data.max_length=64; a stage "
        "folder that already holds a run needs resume=true (continue) or overwrite=true (replace)",
    )


def main(args: argparse.Namespace) -> int:
    from openie4pp.train.config import load_config
    from openie4pp.train.recipe import train

    config = load_config(args.config, args.overrides, args.stage)
    metrics = train(config)
    if os.environ.get("RANK", "0") == "0":  # once, also under `accelerate launch`
        print(f"stage {config.stage}: {metrics.steps} steps -> {config.output_dir}")
    return 0
