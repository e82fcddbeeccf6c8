"""The options of ``openie4pp extract`` and their checks, all run before the model is loaded: a
mistake must cost neither a model load nor a sentence, and must end as one line naming the option
(a :class:`~openie4pp.errors.UsageError`, exit 2)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openie4pp.errors import UsageError
from openie4pp.schema import canonical_lang

from .extract_io import INPUT_FORMATS, OUTPUT_FORMATS, resolve_input_format

DEFAULT_MAX_CHARS = 2000
"""``--max-chars``: far above any real sentence (CaRB's longest has 437 characters), far below
what exhausts memory (a 50 MB line once took 3.7 GB)."""


def _positive(value: int | None, option: str, allow_zero: bool = False, lowest: int | None = None) -> None:
    if value is None:
        return
    lowest = lowest if lowest is not None else 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise UsageError(f"{option} {value}: must be an integer >= {lowest}")


def _check_output(out: str | None, source: str) -> None:
    if out is None:
        return
    target = Path(out)
    if target.is_dir():
        raise UsageError(f"--out {out}: is a folder; give a file name")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is a file, not a folder")
            break
    if target.exists() and Path(source).exists() and target.resolve() == Path(source).resolve():
        raise UsageError(f"--out {out}: is the input file; writing would destroy it")


def check_model_folder(model: str) -> None:
    """Refuse a path that is not a folder written by ``openie4pp train``, before torch is loaded."""
    folder = Path(model)
    make = "make one with `openie4pp train --stage 1 run_dir=RUN ...` (the model is RUN/stage1)"
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "no such folder"
        raise UsageError(f"--model {model}: {what}; a trained model is a folder: {make}")
    config = folder / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8-sig")).get("model_type")
    except (OSError, ValueError, AttributeError):
        model_type = None
    if model_type != "multi2oie":
        raise UsageError(
            f"--model {model}: not a trained openie4pp model (no config.json of a multi2oie model); {make}"
        )
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        raise UsageError(f"--model {model}: has no model.safetensors (an unfinished training run?); {make}")


def resolve_device(requested: str | None) -> str:
    """The torch device to run on: ``None`` is CUDA when available, else the CPU; a device that this
    machine lacks is a :class:`UsageError` with the alternative."""
    import torch

    if requested is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"--device {requested!r}: {exc}; use cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {requested}: CUDA is not available on this machine (torch "
                f"{torch.__version__}); use --device cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA "
                "device(s), numbered from 0"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {requested}: MPS is not available on this machine; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {requested}: not supported; use cpu or cuda")
    return str(device)


def check_options(args: argparse.Namespace) -> str:
    """Every option checked before the model is loaded (a mistake costs no model loading and no
    sentence); returns the input format."""
    _positive(args.batch_size, "--batch-size")
    _positive(args.max_length, "--max-length", lowest=3)  # <s>, one sub-word, </s>: as data.max_length
    _positive(args.max_chars, "--max-chars")
    _positive(args.limit, "--limit", allow_zero=True)
    if args.format not in OUTPUT_FORMATS:
        raise UsageError(f"--format {args.format}: expected one of {', '.join(OUTPUT_FORMATS)}")
    try:
        args.lang = canonical_lang(args.lang)
    except ValueError as exc:
        raise UsageError(f"--lang: {exc}") from None
    input_format = resolve_input_format(args.input, args.input_format)
    _check_output(args.out, args.input)
    check_model_folder(args.model)
    return input_format


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder written by `openie4pp train`")
    parser.add_argument(
        "--input",
        required=True,
        help="sentences: a text file (one per line), JSONL ({text, lang?, id?} or records), a shard "
        "folder, or a benchmark name (carb-dev, re-oie2016-es...)",
    )
    parser.add_argument(
        "--input-format",
        choices=INPUT_FORMATS,
        default="auto",
        help="how to read --input; auto decides by what it is, never by its content: a folder is shards, "
        ".jsonl/.ndjson/.json is JSONL, .txt is text, a benchmark name is that benchmark; other "
        "extensions need this option",
    )
    parser.add_argument("--limit", type=int, help="the first N (>= 0) readable sentences only")
    parser.add_argument("--lang", default="en", help="BCP-47 language of input lines that do not say")
    parser.add_argument(
        "--pretokenized", action="store_true", help="split on whitespace only (keeps benchmark tokens)"
    )
    parser.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
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
