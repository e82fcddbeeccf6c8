"""``openie4pp convert``: a benchmark file into OpenIE4++ shards, with a summary of what happened.

Converters never raise on a bad row; their rejections go to ``DIR/rejected.jsonl`` so the
numbers printed add up to the input. BenchIE gold keeps its fact synsets (every acceptable
variant of every fact) in ``DIR/benchie-gold.jsonl`` beside the records, which only carry one
triple per synset; it lies outside every ``<lang>/`` folder, so shard readers, ``validate`` and
``load_dataset`` (whose card names ``<lang>/shard-*.jsonl``) never take it for records.

An output folder that already holds a dataset is refused unless the user says what to do with it:
``append`` adds to it (records whose sentence ids are already there are skipped, and the summary
says how many), ``overwrite`` first removes the dataset's own files (shards, ``rejected.jsonl``,
``manifest.json``, its card, the BenchIE sidecar) and nothing else. Silently appending is how CaRB
dev and test once ended up in one dataset.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Literal

from openie4pp.errors import InputFileError, UsageError
from openie4pp.formats.registry import ConversionStats, convert
from openie4pp.paths import write_text_atomic
from openie4pp.schema import Rejection, canonical_lang
from openie4pp.shards import CARD, MANIFEST, REJECTED, ShardWriter, folder_locked, shard_files

BENCHIE_SYNSETS = "benchie-gold.jsonl"
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


def _write_synsets(input_path: Path, lang: str | None, out_dir: Path, append: bool) -> int:
    """Write (or, appending, extend) the BenchIE synsets sidecar; returns the sentences added.

    Appending keeps the sentences already there and adds those whose ``(lang, sent_id)`` is new, so
    a repeated ``--append`` does not duplicate them and a second language joins the first."""
    from openie4pp.formats.benchie import BenchIESentence, parse_benchie, read_benchie_jsonl

    path = out_dir / BENCHIE_SYNSETS
    lines: list[str] = []
    known: set[tuple[str, str]] = set()
    if append and path.is_file():
        for old in read_benchie_jsonl(path):
            if isinstance(old, BenchIESentence):
                lines.append(old.model_dump_json())
                known.add((old.lang, old.sent_id))
    added = 0
    for sentence in parse_benchie(input_path, lang):
        if isinstance(sentence, Rejection) or (sentence.lang, sentence.sent_id) in known:
            continue
        known.add((sentence.lang, sentence.sent_id))
        lines.append(sentence.model_dump_json())
        added += 1
    write_text_atomic(path, "".join(line + "\n" for line in lines))
    return added


def summary_dict(out_dir: Path, written: ConversionStats, converted: ConversionStats) -> dict[str, Any]:
    """What was *written* (records, extractions, elements), what was skipped, every rejection."""
    data: dict[str, Any] = {"out": str(out_dir), **written.as_dict()}
    data["rejections"] = dict(sorted(converted.rejections.items()))
    data["records_converted"] = converted.records
    data["duplicates_skipped"] = converted.records - written.records
    return data


def summary_text(
    input_path: Path, out_dir: Path, written: ConversionStats, converted: ConversionStats
) -> str:
    skipped = converted.records - written.records
    duplicates = f", {skipped} duplicates skipped (their ids are in {out_dir} already)" if skipped else ""
    rejected = ", ".join(f"{reason}={n}" for reason, n in sorted(converted.rejections.items())) or "none"
    return (
        f"{input_path} -> {out_dir}: {written.records} records written "
        f"({written.empty_records} without extractions){duplicates}, {written.extractions} extractions, "
        f"{written.grounded_elements} grounded / {written.ungrounded_elements} ungrounded elements, "
        f"rejections: {rejected}"
    )


def convert_to_shards(
    format_name: str,
    input_path: Path,
    out_dir: Path,
    *,
    lang: str | None = None,
    dataset: str | None = None,
    mode: Mode = "new",
) -> int:
    """Convert, write shards, print a summary; 0 if every row became a record, 1 otherwise.

    ``mode`` says what to do with a dataset already in ``out_dir`` (module docstring). Every
    option is checked before anything is written.
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
    _check_out(out_dir, mode)
    if mode == "overwrite" and out_dir.is_dir():
        remove_dataset(out_dir)
    converted, written = ConversionStats(), ConversionStats()
    build_config = {
        "command": "convert",
        "format": format_name,
        "input": str(input_path),
        "lang": lang,
        "dataset": dataset,
        "mode": mode,
    }
    with ShardWriter(out_dir, resume=mode == "append", build_config=build_config) as writer:
        for item in converted.track(convert(format_name, input_path, lang, dataset)):
            if isinstance(item, Rejection):
                writer.reject(item)  # an identical rejection from an earlier run is kept once
            elif writer.write(item):
                written.add(item)
        if format_name == "benchie":  # before the writer closes: part of a completed dataset
            _write_synsets(input_path, lang, out_dir, append=mode == "append")
    print(summary_text(input_path, out_dir, written, converted))
    print(json.dumps(summary_dict(out_dir, written, converted)))
    return 0 if not converted.total_rejections else 1
