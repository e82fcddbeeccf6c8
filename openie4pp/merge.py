"""Shard folders combined into one (``openie4pp merge``), proving that their sentence ids are unique.

Why a proof and not a copy: N machines annotating one input with ``--shard i/N`` must have done
disjoint work. A record whose id is already in the merged folder is counted as a duplicate and
not written twice; an unreadable line becomes a rejection of the merged folder. Each input's
``rejected.jsonl`` is carried over, so every input line stays accounted for.

What the inputs' manifests say about their data is carried too, for the merged dataset card: each
input's licence entries (an input without one is ``unknown``), narrowed to the records taken from
that input, so silver ``cc-by-4.0`` data merged with MIT gold lists both and says which splits each
covers; the command lines that made the inputs, then the merge's; and a language's gold canary
scores when exactly one input measured that language (two runs' scores are not one measurement).
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openie4pp.dataset_card import scrub_command
from openie4pp.errors import UsageError
from openie4pp.jsonl import iter_jsonl_lines
from openie4pp.schema import Record, Rejection
from openie4pp.shards import MANIFEST, ShardWriter, iter_records


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


def _manifest(folder: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def _entries(manifest: dict[str, Any], folder: Path, taken: Counter[str]) -> list[dict[str, Any]]:
    """An input's licence entries for the records merged from it (``taken``: per language)."""
    entries = [dict(e) for e in manifest.get("licenses") or () if isinstance(e, dict) and e.get("license")]
    if not entries:
        entries = [{"license": "unknown"}]
    for entry in entries:
        entry.setdefault("source", folder.name)
        own = entry.get("languages") or {}
        entry["languages"] = {lang: min(int(own.get(lang, n)), n) if len(entries) > 1 else n
                              for lang, n in sorted(taken.items()) if not own or lang in own}
    return [e for e in entries if any(e["languages"].values())]


def _combined(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries of one licence and source added up (two shards of one annotation)."""
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for entry in entries:
        key = tuple(entry.get(k) for k in ("license", "license_name", "license_link", "source"))
        if key in merged:
            languages = Counter(merged[key]["languages"]) + Counter(entry["languages"])
            merged[key]["languages"] = dict(sorted(languages.items()))
        else:
            merged[key] = entry
    return list(merged.values())


def merge_folders(inputs: Sequence[str | Path], out: str | Path, *,
                  command: Sequence[str] | None = None) -> MergeResult:
    """Combine the shard folders ``inputs`` into ``out`` (created, or continued when it exists);
    ``command`` is the command line, for the manifest and card."""
    out = Path(out)
    missing = [str(folder) for folder in inputs if not Path(folder).is_dir()]
    if missing:  # checked before the output folder is created: a typo must not leave an empty one
        raise UsageError(f"not a shard folder: {', '.join(missing)}")
    total = duplicates = bad = 0
    build_config = {"step": "merge", "inputs": [str(folder) for folder in inputs],
                    "card": {"command": list(command)} if command else {}}
    with ShardWriter(out, resume=True, build_config=build_config) as writer:
        own = scrub_command(command) if command else None
        licenses, scores = list(writer.licenses), Counter[str]()
        commands = [c for c in writer.commands if c != own]  # the out folder's own history first
        canaries: dict[str, dict[str, Any]] = {}
        for folder in map(Path, inputs):
            taken = Counter[str]()
            for item in iter_records(folder):
                if not isinstance(item, Record):
                    writer.reject(item)
                    bad += 1
                    continue
                total += 1
                if writer.write(item):
                    taken[item.sentence.lang] += 1
                else:
                    duplicates += 1
            manifest = _manifest(folder)
            licenses += _entries(manifest, folder, taken)
            commands += [str(c) for c in manifest.get("commands") or () if str(c) not in commands]
            for lang, score in ((manifest.get("quality") or {}).get("canaries") or {}).items():
                scores[lang] += 1
                canaries.setdefault(lang, score)
            rejected = Path(folder) / "rejected.jsonl"
            if rejected.exists():
                for _, raw in iter_jsonl_lines(rejected):
                    writer.reject(Rejection.model_validate_json(raw))
        writer.licenses = _combined(licenses)
        writer.commands = commands + ([own] if own else [])
        measured = {lang: score for lang, score in canaries.items() if scores[lang] == 1}
        if measured:
            writer.quality = {"canaries": measured}
    return MergeResult(out, total, duplicates, bad)
