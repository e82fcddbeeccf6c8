"""The quickstart's steps: each takes its command line as the CLI parsed it, calls the library
function behind that command, prints what the command would print, and returns the typed result
as JSON (what ``quickstart.json`` keeps, so a reused step still has its numbers).

A step whose result the chain cannot go on from raises :class:`StepFailed`; the library's own errors
(:class:`~openie4pp.errors.OpenIE4ppError`, ``OSError``) propagate and stop the chain the same way.
Heavy libraries are imported inside the steps, so importing this module costs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from openie4pp.app import (
    annotate_command,
    convert_command,
    eval_command,
    extract_command,
    train_command,
    validate_command,
)
from openie4pp.app.parsing import Parser, command_parser

StepRunner = Callable[[argparse.Namespace], dict[str, Any]]
"""Runs one step from its parsed command line; returns the step's result as JSON."""


class StepFailed(RuntimeError):
    """A step ended without the result the next ones need; the chain stops, resumable."""


def annotate(args: argparse.Namespace) -> dict[str, Any]:
    """Both LLM stages into a shard folder. "Found problems" (nothing accepted, unfinished items:
    the command's exit 1) is expected from the small embedded model and does not stop the chain."""
    from openie4pp.annotate.runner import run_annotation

    result = run_annotation(annotate_command.config_from_args(args), progress=not args.no_progress)
    print(result.line)
    if result.problem:
        print(f"(found problems: {result.problem})")
    return {"line": result.line, "problem": result.problem, "summary": as_json(result.summary),
            "canaries": {lang: score.as_dict() for lang, score in result.canaries.items()}}


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """The silver shards must be valid and complete for training to read them."""
    from openie4pp.validate import format_summary, validate_paths

    summary = validate_paths(args.paths, max_kept_problems=args.max_problems)
    print(format_summary(summary))
    if not summary.ok:
        raise StepFailed(f"{' '.join(args.paths)}: {summary.verdict}")
    return summary.as_dict()


def convert(args: argparse.Namespace) -> dict[str, Any]:
    """A benchmark file into shards; a row the converter rejects stops the chain, as ``convert``'s
    exit status 1 would (the gold the quickstart converts has none)."""
    from openie4pp.convert import convert_to_shards

    result = convert_to_shards(args.format, Path(args.input), Path(args.out), lang=args.lang,
                               dataset=args.dataset, mode=convert_command.mode_of(args))
    print(result.line())
    if not result.ok:
        raise StepFailed(result.line())
    return result.as_dict()


def train(args: argparse.Namespace) -> dict[str, Any]:
    """One training stage; the metrics the trainer also writes to ``metrics.json``."""
    from openie4pp.train.config import load_config
    from openie4pp.train.recipe import train as train_stage

    config = load_config(args.config, args.overrides, args.stage)
    metrics = train_stage(config)
    print(f"stage {config.stage}: {metrics.steps} steps -> {config.output_dir}")
    return as_json(metrics)


def extract(args: argparse.Namespace) -> dict[str, Any]:
    """The trained tagger over sentences (a JSONL file or a benchmark's), into a records file."""
    from openie4pp.train.extract_job import extract_to_file

    summary = extract_to_file(extract_command.options_from_args(args))
    print(summary.line())
    return as_json(summary)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Score one benchmark and draw its PR curve; warnings (predictions not in the gold) go to
    stderr as one line each, like ``openie4pp eval``'s."""
    from openie4pp.eval.curve import plot_pr
    from openie4pp.eval.result import UnmatchedPredictionsWarning
    from openie4pp.eval.run import check_plot_target, evaluate, format_table

    plot = check_plot_target(args.plot)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnmatchedPredictionsWarning)
        result = evaluate(args.benchmark, Path(args.pred), binary=args.binary)
    for warning in caught:
        print(f"openie4pp eval: warning: {' '.join(str(warning.message).split())}", file=sys.stderr)
    print(format_table(result))
    print(f"PR curve: {plot_pr(result, plot)}")
    return {**result.summary(), "curve": result.curve_points()}  # the model report draws it


STEPS: dict[str, tuple[ModuleType, StepRunner]] = {
    "annotate": (annotate_command, annotate),
    "validate": (validate_command, validate),
    "convert": (convert_command, convert),
    "train": (train_command, train),
    "extract": (extract_command, extract),
    "eval": (eval_command, evaluate),
}
"""Per command the quickstart chains: the module whose arguments parse its step, the step."""


def parser_for(command: str) -> Parser:
    """``openie4pp COMMAND``'s own parser: a step's command line reads exactly as the CLI reads it."""
    return command_parser(command, STEPS[command][0])


def as_json(value: Any) -> Any:
    """A typed result (a pydantic model, a dataclass, a mapping of them) as plain JSON values."""
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_json(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [as_json(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value
