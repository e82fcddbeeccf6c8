"""The ``openie4pp`` command line. Each subcommand is a thin shell over a library function,
imported lazily so that ``openie4pp validate`` does not pay for torch or matplotlib."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

Handler = Callable[[argparse.Namespace], int]


class _ArgumentError(Exception):
    """A command line argparse refused; :func:`main` prints it as one line (exit 2)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.message = prog, message


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the uninformative ``None`` and ``False``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, [], argparse.SUPPRESS) or not action.help:
            return action.help or ""
        return super()._get_help_string(action) or ""


class _Parser(argparse.ArgumentParser):
    """Defaults in ``--help``; a refused command line is one error line, not usage + error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(self.prog, message)


def _validate(args: argparse.Namespace) -> int:
    from openie4pp.errors import RunProblems, UsageError
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


def _convert(args: argparse.Namespace) -> int:
    from openie4pp.convert import Mode, convert_to_shards

    mode: Mode = "append" if args.append else "overwrite" if args.overwrite else "new"
    return convert_to_shards(
        args.format, Path(args.input), Path(args.out), lang=args.lang, dataset=args.dataset, mode=mode
    )


def _export(args: argparse.Namespace) -> int:
    from openie4pp.formats.spanoie_export import export_main

    return export_main(Path(args.input), Path(args.out), overwrite=args.overwrite)


def _eval(args: argparse.Namespace) -> int:
    import warnings

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


def _annotate(args: argparse.Namespace) -> int:
    from openie4pp.annotate.run import annotate_main

    return annotate_main(args)


def _merge(args: argparse.Namespace) -> int:
    from openie4pp.annotate.run import merge_main

    return merge_main(args)


def _train(args: argparse.Namespace) -> int:
    from openie4pp.train.recipe import load_config, train

    config = load_config(args.config, args.overrides, args.stage)
    metrics = train(config)
    if os.environ.get("RANK", "0") == "0":  # once, also under `accelerate launch`
        print(f"stage {config['stage']}: {metrics['steps']} steps -> {config['output_dir']}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from openie4pp.train.extract import extract_main

    return extract_main(args)


def _quickstart(args: argparse.Namespace) -> int:
    from openie4pp.quickstart import quickstart_main

    return quickstart_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="openie4pp",
        description="Cross-lingual Open Information Extraction.",
        epilog="Exit codes: 0 success; 1 the command ran and found problems; 2 usage or configuration "
        "error; 130 interrupted (rerun to continue). --debug (anywhere) shows tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    validate = sub.add_parser("validate", help="check OpenIE4++ shards or JSONL files (schema + grounding)")
    validate.add_argument("paths", nargs="+", help="shard folders or JSONL files")
    validate.add_argument("--json", action="store_true", help="also print the summary as one JSON line")
    validate.add_argument(
        "--rejected", metavar="FILE", help="write every problem as a rejection JSONL record (all of them)"
    )
    validate.add_argument(
        "--max-problems", type=int, default=1000,
        help="problems listed on screen (all are counted, and all go to --rejected)",
    )
    validate.set_defaults(handler=_validate)

    convert = sub.add_parser("convert", help="convert a benchmark file into OpenIE4++ shards")
    convert.add_argument(
        "--from",
        dest="format",
        required=True,
        choices=["carb", "re-oie2016", "oie2016-conll", "oie2016-tab", "benchie", "spanoie"],
        help="the benchmark file's format",
    )
    convert.add_argument("input", help="the benchmark file")
    convert.add_argument("--out", required=True, help="output shard folder")
    convert.add_argument("--lang", help="language code (default: inferred from the file name)")
    convert.add_argument(
        "--dataset", help="dataset name for ids and provenance (default: from the file name)"
    )
    existing = convert.add_mutually_exclusive_group()
    existing.add_argument(
        "--append", action="store_true",
        help="add to the dataset already in --out (records whose ids are there are skipped)",
    )
    existing.add_argument(
        "--overwrite", action="store_true",
        help="replace the dataset already in --out (its shards, rejected.jsonl, manifest and card only)",
    )
    convert.set_defaults(handler=_convert)

    export = sub.add_parser(
        "export", help="write OpenIE4++ shards as SpanOIE/Multi2OIE training files (structured_data.json, "
        "OpenIE4_train_LANG.json)"
    )
    export.add_argument("--to", dest="format", required=True, choices=["spanoie"], help="the output format")
    export.add_argument("input", metavar="DIR", help="OpenIE4++ shard folder (or one JSONL file of records)")
    export.add_argument(
        "out", metavar="OUT", help="output folder: structured_data.json (en), OpenIE4_train_LANG.json (other)"
    )
    export.add_argument(
        "--overwrite", action="store_true", help="replace the files of an earlier export already in OUT"
    )
    export.set_defaults(handler=_export)

    from openie4pp.eval.run import BENCHMARKS

    evaluate = sub.add_parser("eval", help="score predictions on CaRB, Re-OIE2016 or BenchIE")
    evaluate.add_argument(
        "--benchmark", required=True, choices=list(BENCHMARKS), help="the gold to score against"
    )
    evaluate.add_argument("--pred", required=True,
                          help="CaRB tab, BenchIE system format, OpenIE4++ JSONL, or a shard folder "
                          "(all its records)")
    evaluate.add_argument("--binary", action="store_true", help="binary (arg0, relation, arg1) scoring")
    evaluate.add_argument("--gold", help="gold file (default: found in the shared benchmarks folder)")
    evaluate.add_argument("--plot", metavar="PNG", help="draw the precision/recall curve")
    evaluate.add_argument("--json", action="store_true", help="print one JSON summary object last")
    evaluate.set_defaults(handler=_eval)

    from openie4pp.annotate.run import add_arguments

    annotate = sub.add_parser("annotate", help="two-stage LLM annotation into OpenIE4++ shards")
    add_arguments(annotate)
    annotate.set_defaults(handler=_annotate)

    merge = sub.add_parser(
        "merge", help="combine shard folders (e.g. from --shard runs), checking ids are unique"
    )
    merge.add_argument("inputs", nargs="+", help="shard folders")
    merge.add_argument("--out", required=True, help="the combined shard folder")
    merge.set_defaults(handler=_merge)

    train = sub.add_parser(
        "train", help="train a Multi2OIE tagger, MT4CrossOIE stage 1, 2 or 3 (one recipe, a stage switch)"
    )
    train.add_argument("--config", help="recipe YAML (default: train/configs/recipe.yaml values)")
    train.add_argument("--stage", type=int, choices=[1, 2, 3], help="overrides the config's stage")
    train.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config keys of train/configs/recipe.yaml, e.g. optim.lr=1e-4 data.max_length=64; a stage "
        "folder that already holds a run needs resume=true (continue) or overwrite=true (replace)",
    )
    train.set_defaults(handler=_train)

    from openie4pp.train.extract import add_arguments as add_extract_arguments

    extract = sub.add_parser(
        "extract", help="extract tuples with a trained tagger (JSONL records or CaRB tab)"
    )
    add_extract_arguments(extract)
    extract.set_defaults(handler=_extract)

    from openie4pp.quickstart import add_arguments as add_quickstart_arguments

    quickstart = sub.add_parser(
        "quickstart",
        help="the main job offline: annotate the sample corpus, validate, train 3 stages, extract, score",
    )
    add_quickstart_arguments(quickstart)
    quickstart.set_defaults(handler=_quickstart)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openie4pp")
    except PackageNotFoundError:  # a source tree that was not installed
        import openie4pp

        return getattr(openie4pp, "__version__", "unknown")


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's or ``kill``'s stop) ends a run like Ctrl-C: the same clean unwinding,
    the same exit code, a resumable folder."""
    raise KeyboardInterrupt


def _configure_logging(command: str, debug: bool) -> None:
    """Library warnings (an endpoint benched, a retry) reach stderr as ``openie4pp CMD: warning: ...``
    lines; ``--debug`` shows everything down to DEBUG. Only when the caller configured nothing."""
    import logging

    root = logging.getLogger()
    if root.handlers:
        return
    class _Lower(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return f"openie4pp {command}: {record.levelname.lower()}: {record.getMessage()}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Lower())
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    if not debug:  # third-party chatter (httpx, urllib3, datasets) stays out of the user's way
        for name in ("httpx", "httpcore", "urllib3", "datasets", "filelock", "asyncio"):
            logging.getLogger(name).setLevel(logging.ERROR)


def _error_line(command: str, error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the message
    return f"openie4pp {command}: error: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; every failure is one line on stderr and a documented exit code
    (:mod:`openie4pp.errors`); ``--debug`` re-raises instead, for the traceback."""
    from openie4pp.errors import EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_USAGE, OpenIE4ppError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except _ArgumentError as error:
        print(f"{error.prog}: error: {' '.join(error.message.split())} (see {error.prog} --help)",
              file=sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.handler
    _configure_logging(args.command, debug)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return handler(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"openie4pp {args.command}: interrupted; what was finished is kept, rerun the same command "
              "to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OpenIE4ppError as error:
        if debug:
            raise
        print(_error_line(args.command, error), file=sys.stderr)
        return error.exit_code
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError,
            FileExistsError) as error:  # a path the user gave
        if debug:
            raise
        print(_error_line(args.command, error), file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # the disk is full, a device failed: the run stopped, what it wrote is kept
        if debug:
            raise
        print(_error_line(args.command, error), file=sys.stderr)
        return EXIT_PROBLEMS
    except Exception as error:  # a bug: still one line, with the way to the traceback
        if debug:
            raise
        print(f"openie4pp {args.command}: internal error: {type(error).__name__}: "
              f"{' '.join(str(error).split())[:500]} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_PROBLEMS
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
