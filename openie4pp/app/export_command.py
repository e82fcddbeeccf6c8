"""``openie4pp export --to spanoie``: shards as SpanOIE/Multi2OIE training files, as a command."""

from __future__ import annotations

import argparse
from pathlib import Path

from openie4pp.errors import EXIT_OK, EXIT_PROBLEMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="format", required=True, choices=["spanoie"], help="the output format")
    parser.add_argument("input", metavar="DIR", help="OpenIE4++ shard folder (or one JSONL file of records)")
    parser.add_argument(
        "out", metavar="OUT", help="output folder: structured_data.json (en), OpenIE4_train_LANG.json (other)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier export already in OUT"
    )


def main(args: argparse.Namespace) -> int:
    """Export, print the one-line summary; 0 when every record was written, 1 when some were
    skipped or none was written."""
    from openie4pp.formats.spanoie_export import export_spanoie

    src, out = Path(args.input), Path(args.out)
    stats = export_spanoie(src, out, overwrite=args.overwrite)
    print(stats.summary(src, out))
    return EXIT_OK if stats.records and not stats.skipped else EXIT_PROBLEMS
