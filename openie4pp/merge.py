"""Shard folders combined into one (``openie4pp merge``), proving that their sentence ids are unique.

Why a proof and not a copy: N machines annotating one input with ``--shard i/N`` must have done
disjoint work. A record whose id is already in the merged folder is counted as a duplicate and
not written twice; an unreadable line becomes a rejection of the merged folder. Each input's
``rejected.jsonl`` is carried over, so every input line stays accounted for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openie4pp.errors import UsageError
from openie4pp.jsonl import iter_jsonl_lines
from openie4pp.schema import Record, Rejection
from openie4pp.shards import ShardWriter, iter_records


@dataclass(frozen=True)
class MergeResult:
    out: Path
    records_read: int
    duplicates: int
    unreadable: int

    @property
    def unique(self) -> int:
        return self.records_read - self.duplicates

    @property
    def ok(self) -> bool:
        """Every record was readable and no id occurred twice."""
        return self.duplicates == 0 and self.unreadable == 0

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "records_read": self.records_read, "unique": self.unique,
                "duplicates": self.duplicates, "unreadable": self.unreadable}


def merge_folders(inputs: Sequence[str | Path], out: str | Path) -> MergeResult:
    """Combine the shard folders ``inputs`` into ``out`` (created, or continued when it exists)."""
    out = Path(out)
    missing = [str(folder) for folder in inputs if not Path(folder).is_dir()]
    if missing:  # checked before the output folder is created: a typo must not leave an empty one
        raise UsageError(f"not a shard folder: {', '.join(missing)}")
    total = duplicates = bad = 0
    build_config = {"command": "merge", "inputs": [str(folder) for folder in inputs]}
    with ShardWriter(out, resume=True, build_config=build_config) as writer:
        for folder in inputs:
            for item in iter_records(folder):
                if not isinstance(item, Record):
                    writer.reject(item)
                    bad += 1
                    continue
                total += 1
                if not writer.write(item):
                    duplicates += 1
            rejected = Path(folder) / "rejected.jsonl"
            if rejected.exists():
                for _, raw in iter_jsonl_lines(rejected):
                    writer.reject(Rejection.model_validate_json(raw))
    return MergeResult(out, total, duplicates, bad)
