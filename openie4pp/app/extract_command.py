"""``openie4pp extract``: the command line of :func:`openie4pp.train.extract_job.extract_to_file`.

Only the standard library and :mod:`openie4pp.errors` are imported at the top: building the parser
(``openie4pp validate --help`` builds all of it) must not load torch. The choices and defaults
below repeat :class:`~openie4pp.train.extract_options.ExtractOptions`'s for that reason; a test
holds the two equal.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openie4pp.train.extract_options import ExtractOptions

INPUT_FORMATS = ("auto", "txt", "jsonl", "parquet", "records", "hf", "benchmark", "shards")
OUTPUT_FORMATS = ("jsonl", "carb-tab")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder written by `openie4pp train`")
    parser.add_argument(
        "--input",
        required=True,
        help="sentences: a text file (one per line), JSONL ({text, lang?, id?} or records), a shard "
        "folder, Parquet, hf:NAME[:split], or a benchmark name (carb-dev, re-oie2016-es...)",
    )
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="how to read --input; auto decides by what it is, never by its content: a folder is records "
        "(shards), .jsonl/.ndjson/.json is JSONL, .txt is text, .parquet a table, hf: a dataset, a "
        "benchmark name is that benchmark; other extensions need this option (shards: records)",
    )
    parser.add_argument("--limit", type=int, help="the first N (>= 0) readable sentences only")
    parser.add_argument("--lang", default="en", help="BCP-47 language of input lines that do not say")
    parser.add_argument(
        "--pretokenized", action="store_true", help="split on whitespace only (keeps benchmark tokens)"
    )
    parser.add_argument(
        "--max-chars",
        type=int,
        default=2000,
        help="longer sentences are skipped with a warning naming file:line, and counted (bounds the "
        "memory one line can take)",
    )
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default="jsonl",
        help="OpenIE4++ JSONL records, or CaRB's tab lines (control characters such as tab, newline "
        "and U+2028 in a cell become a space: the format cannot escape them)",
    )
    parser.add_argument(
        "--out",
        help="output file, stdout when not given; written as it goes, flushed after every batch, so an "
        "interrupted run keeps every finished sentence; a rerun overwrites it",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per model call")
    parser.add_argument(
        "--max-length",
        type=int,
        default=256,
        help="sub-words per sentence; longer sentences are truncated (their last words get no "
        "extraction); clamped to what the encoder can take",
    )
    parser.add_argument("--binary", action="store_true", help="keep only arg0 and arg1 (binary extractions)")
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N; when not given: cuda when available, else cpu"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar on stderr (it is off when not a terminal)"
    )


def options_from_args(args: argparse.Namespace) -> ExtractOptions:
    """The parsed command line as checked options (a :class:`~openie4pp.errors.UsageError` naming the
    first bad option otherwise); the paths are checked when the job starts."""
    from openie4pp.train.extract_options import ExtractOptions

    return ExtractOptions.build(
        model=args.model, input=args.input, input_format=args.input_format, limit=args.limit, lang=args.lang,
        pretokenized=args.pretokenized, max_chars=args.max_chars, format=args.format, out=args.out,
        batch_size=args.batch_size, max_length=args.max_length, binary=args.binary, device=args.device,
        progress=not args.no_progress,
    )


def main(args: argparse.Namespace) -> int:
    """Exit 0 with the summary line on stderr; a usage error (exit 2) before the model loads; no
    sentence read is exit 1 (:class:`~openie4pp.errors.RunProblems`)."""
    from openie4pp.train.extract_job import extract_to_file

    summary = extract_to_file(options_from_args(args))
    print(summary.line(), file=sys.stderr)
    return 0
