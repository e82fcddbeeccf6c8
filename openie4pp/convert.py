"""``openie4pp convert``: a benchmark file into OpenIE4++ shards, with a summary of what happened.

Converters never raise on a bad row; their rejections go to ``DIR/rejected.jsonl`` so the
numbers printed add up to the input. BenchIE gold keeps its fact synsets (every acceptable
variant of every fact) in ``DIR/benchie-gold.jsonl`` beside the records, which only carry one
triple per synset.
"""

from __future__ import annotations

import json
from pathlib import Path

from openie4pp.formats.registry import ConversionStats, convert
from openie4pp.schema import Rejection
from openie4pp.shards import ShardWriter

BENCHIE_SYNSETS = "benchie-gold.jsonl"


def convert_to_shards(
    format_name: str, input_path: Path, out_dir: Path, *, lang: str | None = None, dataset: str | None = None
) -> int:
    """Convert, write shards, print a summary; 0 if every row became a record, 1 otherwise."""
    if not input_path.is_file():
        raise FileNotFoundError(f"{input_path}: no such file")
    stats = ConversionStats()
    build_config = {
        "command": "convert",
        "format": format_name,
        "input": str(input_path),
        "lang": lang,
        "dataset": dataset,
    }
    with ShardWriter(out_dir, resume=True, build_config=build_config) as writer:
        for item in stats.track(convert(format_name, input_path, lang, dataset)):
            if isinstance(item, Rejection):
                writer.reject(item)
            else:
                writer.write(item)
    if format_name == "benchie":
        from openie4pp.formats.benchie import parse_benchie, write_benchie_jsonl

        synsets = (s for s in parse_benchie(input_path, lang) if not isinstance(s, Rejection))
        write_benchie_jsonl(synsets, out_dir / BENCHIE_SYNSETS)
    print(f"{input_path} -> {out_dir}: {stats}")
    print(json.dumps({"out": str(out_dir), **stats.as_dict()}))
    return 0 if not stats.total_rejections else 1
