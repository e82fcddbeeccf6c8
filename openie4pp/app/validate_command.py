"""``openie4pp validate``: schema and grounding checks over shards or JSONL files, as a command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from openie4pp.errors import RunProblems, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="shard folders or JSONL files")
    parser.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    parser.add_argument(
        "--rejected", metavar="FILE", help="write every problem as a rejection JSONL record (all of them)"
    )
    parser.add_argument(
        "--max-problems", type=int, default=1000,
        help="problems listed on screen (all are counted, and all go to --rejected)",
    )


def main(args: argparse.Namespace) -> int:
    """Exit 0 when every record is valid and every folder complete, 1 otherwise."""
    from openie4pp.validate import format_summary, open_rejected_file, summary_json, validate_paths

    if args.max_problems < 0:
        raise UsageError(f"--max-problems {args.max_problems}: must be 0 or more")
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    with open_rejected_file(args.rejected, args.paths) as sink:
        summary = validate_paths(args.paths, max_kept_problems=args.max_problems, on_problem=sink)
    print(format_summary(summary))
    if args.json:
        print(summary_json(summary))
    if summary.verdict == "NO RECORDS":
        raise RunProblems(f"no records found in {', '.join(args.paths)}")
    for folder in summary.incomplete_folders:
        print(f"openie4pp validate: warning: {folder} is incomplete: its manifest.json says the run that "
              "wrote it did not complete; rerun that command to finish it", file=sys.stderr)
    return 0 if summary.ok else 1
