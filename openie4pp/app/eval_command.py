"""``openie4pp eval``: score predictions against a registered benchmark, as a command."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from openie4pp.benchmarks import names  # the registry: standard library only

    parser.add_argument("--benchmark", required=True, choices=names(scorable=True),
                        help="the gold to score against")
    parser.add_argument("--pred", required=True,
                        help="CaRB tab, BenchIE system format, OpenIE4++ JSONL, or a shard folder "
                        "(all its records)")
    parser.add_argument("--binary", action="store_true", help="binary (arg0, relation, arg1) scoring")
    parser.add_argument("--gold", help="gold file (default: found in the shared benchmarks folder)")
    parser.add_argument("--plot", metavar="PNG", help="draw the precision/recall curve")
    parser.add_argument("--json", action="store_true", help="print one JSON summary object last")


def main(args: argparse.Namespace) -> int:
    """Print the score table (and the PNG's path, and the JSON summary when asked); warnings about
    unscored predictions go to stderr, one line each."""
    from openie4pp.eval.result import UnmatchedPredictionsWarning
    from openie4pp.eval.run import check_plot_target, evaluate, format_table, summary_line

    plot = check_plot_target(args.plot) if args.plot else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnmatchedPredictionsWarning)
        result = evaluate(
            args.benchmark, Path(args.pred), binary=args.binary, gold=Path(args.gold) if args.gold else None
        )
    for warning in caught:  # each as one line, like the errors
        print(f"openie4pp eval: warning: {' '.join(str(warning.message).split())}", file=sys.stderr)
    print(format_table(result))
    if plot is not None:
        from openie4pp.eval.curve import plot_pr

        print(f"PR curve: {plot_pr(result, plot)}")
    if args.json:
        print(summary_line(result))
    return 0
