"""``openie4pp merge``: shard folders (e.g. from ``annotate --shard i/N`` runs) combined into one."""

from __future__ import annotations

import argparse
import json

from openie4pp.errors import EXIT_OK, EXIT_PROBLEMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="shard folders")
    parser.add_argument("--out", required=True, help="the combined shard folder")


def main(args: argparse.Namespace) -> int:
    """Print the counts as JSON; exit 1 when an id occurred twice or a record was unreadable."""
    from openie4pp.merge import merge_folders

    result = merge_folders(args.inputs, args.out, command=getattr(args, "command_line", None))
    print(json.dumps(result.as_dict()))
    return EXIT_OK if result.ok else EXIT_PROBLEMS
