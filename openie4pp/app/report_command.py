"""``openie4pp report``: one self-contained HTML report of an annotation or a model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from openie4pp.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR",
                        help="an annotation folder (annotate/convert/merge output) or a trained model folder "
                        "(a train stage folder, or a run folder of stage*/ folders)")
    parser.add_argument("--out", metavar="HTML", help="where to write the report (default: DIR/report.html)")
    parser.add_argument("--sample", type=int, default=200,
                        help="accepted records and rejection lines shown (a deterministic spread; default "
                        "200)")
    parser.add_argument("--input", metavar="PATH",
                        help="project mode: the run's input, where the English sources are (default: the "
                        "path its manifest recorded)")


def main(args: argparse.Namespace) -> int:
    """Write the report and print its path; warnings (a torn last line) are one line each."""
    import sys
    import warnings

    folder = Path(args.folder)
    if args.sample < 0:
        raise UsageError(f"--sample {args.sample}: must be 0 or more")
    if args.input and not args.input.startswith("hf:") and not Path(args.input).exists():
        raise UsageError(f"--input {args.input}: no such file or folder")
    try:
        from openie4pp.report import SourceSentence, folder_kind, write_report
    except ImportError as error:  # jinja2 or matplotlib missing
        raise UsageError(f"the report needs the [report] extra ({error}): "
                         "pip install 'openie4pp[report]'") from None
    sources: dict[str, SourceSentence] = {}
    note = ""
    kind = folder_kind(folder)
    if kind == "annotation":
        from openie4pp.app.report_sources import project_sources

        sources, note = project_sources(folder, args.input)
    if args.input and not sources and not note:
        raise UsageError(f"--input {args.input}: only a project-mode annotation folder reads its input")
    with warnings.catch_warnings(record=True) as caught:  # what the default filters show, one line each
        result = write_report(folder, args.out, sample=args.sample, sources=sources, sources_note=note)
    for warning in caught:
        print(f"openie4pp report: warning: {' '.join(str(warning.message).split())}", file=sys.stderr)
    shown = (f": {result.records_shown} records and {result.rejections_shown} rejections shown"
             if result.kind == "annotation" else "")
    print(f"{result.kind} report: {result.path} ({result.bytes:,} bytes{shown})")
    return 0
