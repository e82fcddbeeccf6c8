"""The layout of a shard directory: which file names mean what, and where each language's shards are.

Kept apart from the writer (:mod:`openie4pp.shards`) because readers need it too: the Hugging Face
view (:mod:`openie4pp.hf`), ``validate`` and ``convert`` list a folder's shards without writing one,
and the writer in turn asks :mod:`openie4pp.hf` for the dataset card; with the layout in either of
those two modules they would import each other.

::

    out_dir/
      <lang>/shard-00000.jsonl   one Record per line
      rejected.jsonl             one Rejection per line
      manifest.json              written when a writer closes
      README.md                  a Hugging Face dataset card
"""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST, REJECTED, CARD = "manifest.json", "rejected.jsonl", "README.md"
_SHARD_NAME = re.compile(r"^shard-(\d+)\.jsonl$")


def shard_path(out_dir: Path, lang: str, index: int) -> Path:
    """Where shard number ``index`` of ``lang`` lives: zero-padded, so names sort in writing order."""
    return out_dir / lang / f"shard-{index:05d}.jsonl"


def shard_index(path: Path) -> int | None:
    """The number in a shard's file name, or None for a file that is no shard."""
    match = _SHARD_NAME.match(path.name)
    return int(match.group(1)) if match else None


def shard_files(path: str | Path) -> dict[str, list[Path]]:
    """The ``<lang>/shard-N.jsonl`` files of a directory by language, in language then shard order."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for shard in Path(path).glob("*/shard-*.jsonl"):
        index = shard_index(shard)
        if index is not None and shard.is_file():
            found.setdefault(shard.parent.name, []).append((index, shard))
    return {lang: [p for _, p in sorted(found[lang])] for lang in sorted(found)}
