"""One extraction run as a library call: :func:`extract_to_file` streams an input through a trained
model into a file (or stdout) and says what it did in an :class:`ExtractSummary`.

Why a function apart from the command line: the quickstart runs the same job (and a user's script
can), and every caller must get the same checks before the model loads, the same streaming output
and the same refusal of an input that yields no sentence.

The output is written directly (no temporary file renamed at the end) and flushed after every
batch, so a kill or Ctrl-C keeps every sentence finished before it (a torn last line at most, which
the JSONL readers drop). Bad input lines are reported through ``warn``, counted and skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from openie4pp.errors import RunProblems, UsageError

from .extract import Extractor
from .extract_io import ReadStats, count_lines, iter_sentences, write_records
from .extract_options import ExtractOptions, resolve_device


@dataclass(frozen=True)
class ExtractSummary:
    """What one run did: sentences read and extractions written, input lines skipped (and why)."""

    sentences: int
    extractions: int
    skipped: int
    skipped_detail: str
    """``none skipped`` or ``3 skipped: 2 bad lines, 1 longer than --max-chars 2000``."""
    out: str | None
    """The output file; None: stdout."""

    def line(self) -> str:
        """The line ``openie4pp extract`` prints last (on stderr)."""
        where = f" -> {self.out}" if self.out else ""
        return f"{self.sentences} sentences, {self.extractions} extractions{where} ({self.skipped_detail})"


def warn_on_stderr(message: str) -> None:
    """A warning line that does not tear the progress bar."""
    from tqdm import tqdm

    tqdm.write(f"openie4pp extract: warning: {message}", file=sys.stderr)


def extract_to_file(
    options: ExtractOptions, *, warn: Callable[[str], None] = warn_on_stderr
) -> ExtractSummary:
    """Run ``options`` (see the module docstring): paths and device are checked before the model
    loads (:class:`UsageError`), and an input that yields no sentence is :class:`RunProblems`
    (an empty input is not a success) unless ``limit`` is 0."""
    from tqdm import tqdm

    input_format = options.check()
    device = resolve_device(options.device)
    extractor = _load(options, device)
    stats = ReadStats()
    sentences = iter_sentences(
        options.input,
        lang=options.lang,
        pretokenized=options.pretokenized,
        input_format=input_format,
        max_chars=options.max_chars,
        limit=options.limit,
        stats=stats,
        on_problem=lambda where, why: warn(f"{where}: {why} (skipped)"),
    )
    total = count_lines(options.input)
    if options.limit is not None:
        total = options.limit if total is None else min(total, options.limit)
    n_extractions, out = 0, None
    progress = tqdm(total=total, unit=" sentences", desc="extract", file=sys.stderr,
                    disable=not options.progress or not sys.stderr.isatty())
    try:
        with progress:
            for records in extractor.stream_records(sentences):
                if out is None:  # opened at the first result: a run that reads nothing leaves no file
                    out = _open_output(options.out)
                n_extractions += write_records(records, out, options.format)
                out.flush()
                progress.update(len(records))
    finally:
        if out is not None and out is not sys.stdout:
            out.close()
    skipped = stats.describe_skipped(options.max_chars)
    if stats.sentences == 0 and options.limit != 0:
        raise RunProblems(
            f"{options.input}: 0 sentences read ({skipped}); nothing extracted, no output written")
    if out is None and options.out:  # --limit 0: an empty result is what was asked for
        _open_output(options.out).close()
    return ExtractSummary(stats.sentences, n_extractions, stats.skipped, skipped, options.out)


def _load(options: ExtractOptions, device: str) -> Extractor:
    from safetensors import SafetensorError

    try:
        return Extractor.from_pretrained(options.model, device=device, batch_size=options.batch_size,
                                         max_length=options.max_length, binary=options.binary)
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        # a checked folder that does not load: damaged or incomplete files
        raise UsageError(
            f"--model {options.model}: cannot load it as a trained model ({type(exc).__name__}: {exc}); "
            "retrain it with `openie4pp train`"
        ) from exc


def _open_output(path: str | None) -> TextIO:
    if not path:
        return sys.stdout
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w", encoding="utf-8")
