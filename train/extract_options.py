"""The options of ``openie4pp extract`` as one typed value, and their checks, all run before the
model is loaded: a mistake must cost neither a model load nor a sentence, and must end as one line
naming the option (a :class:`~openie4pp.errors.UsageError`, exit 2).

:class:`ExtractOptions` is what the command line, the quickstart and a library caller hand to
:func:`openie4pp.train.extract_job.extract_to_file`: its values are checked when it is built
(:meth:`ExtractOptions.build`), the paths when :meth:`ExtractOptions.check` runs (the job runs it
first), the device last (it needs torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from openie4pp.errors import UsageError
from openie4pp.schema import canonical_lang
from openie4pp.sources import resolve_format

from .extract_io import FORMAT_ALIASES, INPUT_FORMATS, OUTPUT_FORMATS

DEFAULT_MAX_CHARS = 2000
"""``--max-chars``: far above any real sentence (CaRB's longest has 437 characters), far below
what exhausts memory (a 50 MB line once took 3.7 GB)."""


def _positive(value: Any, option: str, lowest: int = 1) -> Any:
    if value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{option} {value}: must be an integer >= {lowest}")
    return value


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


class ExtractOptions(BaseModel):
    """Everything one extraction run needs; field ``x_y`` is the option ``--x-y``. The fields come
    in the order the checks report them (the first mistake is the one named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = 32
    """Sentences per model call."""
    max_length: int = 256
    """Sub-words per sentence (at least ``<s>``, one sub-word, ``</s>``); clamped to the encoder's."""
    max_chars: int | None = DEFAULT_MAX_CHARS
    """Longer sentences are skipped and counted; None: no bound."""
    limit: int | None = None
    """The first N readable sentences only; None: all."""
    format: str = "jsonl"
    """Output format, one of :data:`~.extract_io.OUTPUT_FORMATS`."""
    lang: str = "en"
    """The language of input lines that do not say (made canonical)."""
    model: str
    """A model folder written by ``openie4pp train``."""
    input: str
    """A file, a shard folder, ``hf:NAME[:split]`` or a benchmark name (:mod:`openie4pp.sources`)."""
    input_format: str = "auto"
    pretokenized: bool = False
    out: str | None = None
    """The output file; None: stdout."""
    binary: bool = False
    device: str | None = None
    """cpu, cuda or cuda:N; None: CUDA when available, else the CPU."""
    progress: bool = True
    """A progress bar on stderr (only ever shown on a terminal)."""

    @field_validator("batch_size", "max_chars", mode="before")
    @classmethod
    def _at_least_one(cls, value: Any, info: ValidationInfo) -> Any:
        return _positive(value, _option(info.field_name or ""))

    @field_validator("max_length", mode="before")
    @classmethod
    def _room_for_a_word(cls, value: Any) -> Any:
        return _positive(value, "--max-length", lowest=3)  # <s>, one sub-word, </s>: as data.max_length

    @field_validator("limit", mode="before")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        return _positive(value, "--limit", lowest=0)

    @field_validator("format")
    @classmethod
    def _output_format(cls, value: str) -> str:
        if value not in OUTPUT_FORMATS:
            raise ValueError(f"--format {value}: expected one of {', '.join(OUTPUT_FORMATS)}")
        return value

    @field_validator("input_format")
    @classmethod
    def _input_format(cls, value: str) -> str:
        if value not in INPUT_FORMATS:
            raise ValueError(f"--input-format {value!r}: expected one of {', '.join(INPUT_FORMATS)}")
        return FORMAT_ALIASES.get(value, value)

    @field_validator("lang")
    @classmethod
    def _canonical_lang(cls, value: str) -> str:
        try:
            return canonical_lang(value)
        except ValueError as exc:
            raise ValueError(f"--lang: {exc}") from None

    @classmethod
    def build(cls, **values: Any) -> ExtractOptions:
        """The options from ``values``, or a :class:`UsageError` naming the first bad one."""
        try:
            return cls(**values)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            if first["type"] != "value_error":  # a type pydantic refused: name the option
                where = ".".join(str(part) for part in first["loc"])
                message = f"{_option(where)}: {message}"
            raise UsageError(message) from None

    def check(self) -> str:
        """The paths checked (input, output, model folder), touching only file metadata; returns the
        format the input is read in."""
        input_format = resolve_format(self.input, self.input_format)
        _check_output(self.out, self.input)
        check_model_folder(self.model)
        return input_format


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
