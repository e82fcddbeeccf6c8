"""``openie4pp quickstart``: the whole chain offline (:mod:`openie4pp.app.quickstart`), as a command."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openie4pp.app.quickstart import QuickstartOptions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="runs/quickstart", help="where every artefact goes")
    parser.add_argument(
        "--limit", type=int, default=1,
        help="sample sentences annotated per language (and English ones projected into each target "
        "language); each costs about 20 s (extract) or 30 s (project) with the embedded model on two cores",
    )
    parser.add_argument(
        "--endpoint", default="local", help="'local' (embedded llama.cpp) or an OpenAI-compatible base URL"
    )
    parser.add_argument("--model", help="model name for --endpoint URL (or a GGUF for local)")
    parser.add_argument(
        "--concurrency", type=int, help="items in flight while annotating (default: 1 for local, else 8)"
    )
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length cap per LLM request")
    parser.add_argument("--constrain", default="spans", choices=["none", "spans"],
                        help="span-constrained decoding while annotating (see annotate --help)")
    parser.add_argument("--canaries", type=int, default=1,
                        help="gold canary sentences per language in the extract-mode annotation, scored "
                        "in the summary (0: none)")
    parser.add_argument("--project-canaries", type=int, default=0,
                        help="gold canaries per target language in the project-mode annotation")
    parser.add_argument("--encoder", help="encoder for training: a model folder or hub name "
                        "(default: the packaged multilingual-e5-small)")
    parser.add_argument(
        "--eval-limit", type=int,
        help="score the first N sentences of each benchmark only "
        "(a smoke run: recall is then not comparable with published numbers)",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE",
        help="more training overrides, e.g. max_steps=5 (see train/configs/recipe.yaml)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete WORKDIR first")


def options_from_args(args: argparse.Namespace) -> QuickstartOptions:
    """The parsed command line as options (the defaults above repeat :class:`QuickstartOptions`'s,
    so that ``--help`` costs no import; a test holds the two equal)."""
    from openie4pp.app.quickstart import QuickstartOptions

    return QuickstartOptions(
        workdir=Path(args.workdir), limit=args.limit, endpoint=args.endpoint, model=args.model,
        concurrency=args.concurrency, max_tokens=args.max_tokens, constrain=args.constrain,
        canaries=args.canaries, project_canaries=args.project_canaries, encoder=args.encoder,
        eval_limit=args.eval_limit, set=tuple(args.set), fresh=args.fresh,
    )


def main(args: argparse.Namespace) -> int:
    """Run the chain and print its summary; exit 1 when a step failed (rerun to resume)."""
    from openie4pp.app.quickstart import run_quickstart
    from openie4pp.app.quickstart_report import format_summary

    started = time.perf_counter()
    result = run_quickstart(options_from_args(args))
    print(format_summary(result))
    if result.failure is not None:
        print(f"\nquickstart: {result.failure}", file=sys.stderr)
        return 1
    print(f"\nquickstart finished in {time.perf_counter() - started:.0f} s; everything is under "
          f"{result.workdir}")
    return 0
