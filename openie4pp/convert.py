"""A benchmark file into OpenIE4++ shards (``openie4pp convert``), with a count of what happened.

Converters never raise on a bad row; their rejections go to ``DIR/rejected.jsonl`` so the
counts of the :class:`ConversionResult` add up to the input. BenchIE records carry one triple
per fact synset; scoring reads the synsets (every acceptable variant of every fact) from the gold
file itself.

An output folder that already holds a dataset is refused unless the user says what to do with it:
``append`` adds to it (records whose sentence ids are already there are skipped, and the summary
says how many), ``overwrite`` first removes the dataset's own files (shards, ``rejected.jsonl``,
``manifest.json``, its card, an old version's BenchIE sidecar) and nothing else. Silently appending is
how CaRB dev and test once ended up in one dataset.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openie4pp.errors import InputFileError, UsageError
from openie4pp.formats.registry import ConversionStats, convert
from openie4pp.schema import Rejection, canonical_lang
from openie4pp.shards import CARD, MANIFEST, REJECTED, ShardWriter, folder_locked, shard_files

BENCHIE_SYNSETS = "benchie-gold.jsonl"
"""The BenchIE synsets sidecar that earlier versions wrote beside the records and nothing read (the
scorer reads the gold file itself): no longer written, still part of an old folder's dataset."""
_CARD_MARK = "# OpenIE4++ dataset"  # the heading of the card ShardWriter writes (openie4pp.hf)

Mode = Literal["new", "append", "overwrite"]


def dataset_files(out_dir: Path) -> list[Path]:
    """The files of the dataset in ``out_dir``: what ``--overwrite`` removes, and what makes a plain
    convert refuse the folder. A ``README.md`` counts only when it is the card we wrote."""
    found = [shard for shards in shard_files(out_dir).values() for shard in shards]
    found += [out_dir / name for name in (REJECTED, MANIFEST, BENCHIE_SYNSETS) if (out_dir / name).is_file()]
    card = out_dir / CARD
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if card.is_file() and _CARD_MARK in card.read_text(encoding="utf-8"):
            found.append(card)
    return found


def remove_dataset(out_dir: Path) -> int:
    """Remove the dataset files of ``out_dir`` (see :func:`dataset_files`) and the language folders
    left empty; a user's own files stay. Returns how many files were removed."""
    with folder_locked(out_dir):
        files = dataset_files(out_dir)
        for path in files:
            path.unlink(missing_ok=True)
        for lang_dir in {path.parent for path in files if path.parent != out_dir}:
            with contextlib.suppress(OSError):
                lang_dir.rmdir()  # only when empty
    return len(files)


def _check_out(out_dir: Path, mode: Mode) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file; give a folder for the shards")
    if mode == "new" and out_dir.is_dir() and dataset_files(out_dir):
        records = ""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
            manifest = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
            records = f" ({int(manifest['records'])} records)"
        raise UsageError(
            f"--out {out_dir} already holds a dataset{records}; pass --append to add to it (records whose "
            "ids are there already are skipped) or --overwrite to replace it"
        )


@dataclass(frozen=True)
class ConversionResult:
    """What one conversion did: the rows the converter read (``converted``) and what reached the
    shards (``written``; fewer records when appending skipped ids already there)."""

    input_path: Path
    out_dir: Path
    written: ConversionStats
    converted: ConversionStats

    @property
    def ok(self) -> bool:
        """Every row became a record: the converter rejected nothing."""
        return not self.converted.total_rejections

    @property
    def duplicates_skipped(self) -> int:
        return self.converted.records - self.written.records

    def as_dict(self) -> dict[str, Any]:
        """What was *written* (records, extractions, elements), what was skipped, every rejection."""
        data: dict[str, Any] = {"out": str(self.out_dir), **self.written.as_dict()}
        data["rejections"] = dict(sorted(self.converted.rejections.items()))
        data["records_converted"] = self.converted.records
        data["duplicates_skipped"] = self.duplicates_skipped
        return data

    def line(self) -> str:
        """The one line a person reads: every row of the input is in one of its numbers."""
        written, skipped = self.written, self.duplicates_skipped
        duplicates = (f", {skipped} duplicates skipped (their ids are in {self.out_dir} already)"
                      if skipped else "")
        rejected = ", ".join(f"{reason}={n}" for reason, n in sorted(self.converted.rejections.items()))
        return (
            f"{self.input_path} -> {self.out_dir}: {written.records} records written "
            f"({written.empty_records} without extractions){duplicates}, {written.extractions} extractions, "
            f"{written.grounded_elements} grounded / {written.ungrounded_elements} ungrounded elements, "
            f"rejections: {rejected or 'none'}"
        )


def card_for(input_path: Path, dataset: str | None, license: str | None) -> dict[str, Any]:
    """The ``card`` part of a conversion's build config: the licence (``license``, else the
    benchmark's own when ``input_path`` is a benchmark of the registry, else none on record) and the
    source its licence entry names (the benchmark, else ``dataset`` or the file's name)."""
    from openie4pp.benchmarks import for_file
    from openie4pp.dataset_card import hub_license

    bench = for_file(input_path)
    source = f"gold: {bench.name if bench is not None else dataset or input_path.name}"
    if license is not None:
        try:
            chosen = hub_license(license)
        except ValueError as exc:
            raise UsageError(f"--license {license!r}: {exc}") from None
        if chosen == "other" and (bench is None or bench.license.id != "other"):
            raise UsageError("--license other: the licence has no name or link on record; give one of "
                             "the Hub's licence ids")
        if bench is None or chosen != bench.license.id:
            return {"license": chosen, "source": source}
    if bench is None:
        return {"source": source}
    return {**bench.license.as_dict(), "source": source}


def convert_to_shards(
    format_name: str,
    input_path: Path,
    out_dir: Path,
    *,
    lang: str | None = None,
    dataset: str | None = None,
    mode: Mode = "new",
    license: str | None = None,
    command: Sequence[str] | None = None,
) -> ConversionResult:
    """Convert ``input_path`` (read as ``format_name``) into shards in ``out_dir``; prints nothing.

    ``mode`` says what to do with a dataset already in ``out_dir`` (module docstring). Every
    option is checked before anything is written. ``license`` (a Hub licence id) overrides the
    benchmark's own (:func:`card_for`); ``command`` is the command line, for the manifest and card.
    """
    if input_path.is_dir():
        raise InputFileError(f"{input_path} is a folder; give the benchmark file to convert")
    if not input_path.is_file():
        raise InputFileError(f"{input_path}: no such file")
    if lang is not None:
        try:
            lang = canonical_lang(lang)
        except ValueError as exc:
            raise UsageError(f"--lang: {exc}") from None
    card = card_for(input_path, dataset, license)
    _check_out(out_dir, mode)
    if mode == "overwrite" and out_dir.is_dir():
        remove_dataset(out_dir)
    converted, written = ConversionStats(), ConversionStats()
    build_config = {
        "step": "convert",
        "format": format_name,
        "input": str(input_path),
        "lang": lang,
        "dataset": dataset,
        "mode": mode,
        "card": {**card, **({"command": list(command)} if command else {})},
    }
    with ShardWriter(out_dir, resume=mode == "append", build_config=build_config) as writer:
        for item in converted.track(convert(format_name, input_path, lang, dataset)):
            if isinstance(item, Rejection):
                writer.reject(item)  # an identical rejection from an earlier run is kept once
            elif writer.write(item):
                written.add(item)
    return ConversionResult(input_path, out_dir, written, converted)
