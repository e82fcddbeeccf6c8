"""The ``openie4pp`` command line: one parser, one error policy, one subcommand per command module.

Each subcommand lives in its own module of :mod:`openie4pp.app` exporting ``add_arguments(parser)``
and ``main(args) -> int``. Those modules import only the standard library and
:mod:`openie4pp.errors` at their top, and the library they drive inside ``main``: building the
parser for ``openie4pp validate --help`` must load neither torch, nor numpy, nor the annotator.

What this module owns is the policy every command shares: a refused command line is one error line
(exit 2), every failure one ``openie4pp CMD: error: ...`` line with the exit code of
:mod:`openie4pp.errors`, SIGTERM unwinds like Ctrl-C (exit 130), library warnings reach stderr as
one line each, and ``--debug`` (anywhere) re-raises for the traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

from openie4pp.app import (
    annotate_command,
    convert_command,
    eval_command,
    export_command,
    extract_command,
    merge_command,
    push_command,
    quickstart_command,
    report_command,
    train_command,
    validate_command,
)
from openie4pp.app.parsing import ArgumentError, Parser
from openie4pp.errors import EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_USAGE, OpenIE4ppError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]

COMMANDS: tuple[tuple[str, ModuleType, str], ...] = (
    ("validate", validate_command, "check OpenIE4++ shards or JSONL files (schema + grounding)"),
    ("convert", convert_command, "convert a benchmark file into OpenIE4++ shards"),
    ("export", export_command, "write OpenIE4++ shards as SpanOIE/Multi2OIE training files "
     "(structured_data.json, OpenIE4_train_LANG.json)"),
    ("eval", eval_command, "score predictions on CaRB, Re-OIE2016 or BenchIE"),
    ("annotate", annotate_command, "two-stage LLM annotation into OpenIE4++ shards"),
    ("merge", merge_command, "combine shard folders (e.g. from --shard runs), checking ids are unique"),
    ("train", train_command,
     "train a Multi2OIE tagger, MT4CrossOIE stage 1, 2 or 3 (one recipe, a stage switch)"),
    ("extract", extract_command, "extract tuples with a trained tagger (JSONL records or CaRB tab)"),
    ("push", push_command, "upload a finished shard folder to the Hugging Face Hub as a dataset repo"),
    ("report", report_command, "a self-contained HTML report of an annotation or a trained model folder"),
    ("quickstart", quickstart_command,
     "the main job offline: annotate the sample corpus, validate, train 3 stages, extract, score"),
)
"""Subcommand, its module in :mod:`openie4pp.app`, its line in ``openie4pp --help``."""


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each subcommand's ``handler`` default is its module's ``main``."""
    parser = Parser(
        prog="openie4pp",
        description="Cross-lingual Open Information Extraction.",
        epilog="Exit codes: 0 success; 1 the command ran and found problems; 2 usage or configuration "
        "error; 130 interrupted (rerun to continue). --debug (anywhere) shows tracebacks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, module, help_text in COMMANDS:
        command = sub.add_parser(name, help=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.main)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except ArgumentError as error:
        print(f"{error.prog}: error: {' '.join(error.message.split())} (see {error.prog} --help)",
              file=sys.stderr)
        return EXIT_USAGE
    handler: Handler = args.handler
    args.command_line = ["openie4pp", *argv]  # what made an output: manifests and dataset cards record it
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
