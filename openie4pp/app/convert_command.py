"""``openie4pp convert``: a benchmark file into OpenIE4++ shards, as a command."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openie4pp.convert import Mode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from openie4pp.formats.registry import FORMATS  # the registry imports its converters lazily

    parser.add_argument("--from", dest="format", required=True, choices=list(FORMATS),
                        help="the benchmark file's format")
    parser.add_argument("input", help="the benchmark file")
    parser.add_argument("--out", required=True, help="output shard folder")
    parser.add_argument("--lang", help="language code (default: inferred from the file name)")
    parser.add_argument("--dataset", help="dataset name for ids and provenance (default: from the file name)")
    parser.add_argument(
        "--license", metavar="HUB_ID",
        help="the data's licence for the dataset card (a Hugging Face Hub id such as mit or cc-by-4.0); "
        "default: the benchmark's own (CaRB, OIE2016, Re-OIE2016: mit; BenchIE: its research-only "
        "licence), unknown for another file",
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--append", action="store_true",
        help="add to the dataset already in --out (records whose ids are there are skipped)",
    )
    existing.add_argument(
        "--overwrite", action="store_true",
        help="replace the dataset already in --out (its shards, rejected.jsonl, manifest and card only)",
    )


def mode_of(args: argparse.Namespace) -> Mode:
    """What to do with a dataset already in ``--out``: ``new`` (refuse it), ``append``, ``overwrite``."""
    return "append" if args.append else "overwrite" if args.overwrite else "new"


def main(args: argparse.Namespace) -> int:
    """Print the summary line and its JSON; exit 0 when every row became a record, 1 otherwise."""
    from openie4pp.convert import ConversionResult, convert_to_shards

    result: ConversionResult = convert_to_shards(
        args.format, Path(args.input), Path(args.out), lang=args.lang, dataset=args.dataset,
        mode=mode_of(args), license=args.license, command=getattr(args, "command_line", None),
    )
    print(result.line())
    print(json.dumps(result.as_dict()))
    return 0 if result.ok else 1
