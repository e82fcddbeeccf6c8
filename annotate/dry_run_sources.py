"""What ``openie4pp annotate --dry-run`` reads of an earlier run, strictly without writing.

Why a module of its own: a dry run must leave ``OUT`` and the response cache exactly as it found
them (no lock taken, no torn line repaired, no SQLite ``-wal``/``-shm`` file created), so it cannot
use the run's own writers (:mod:`openie4pp.shards`, :mod:`.backends.cache`). These read-only twins
of them are kept here, apart from the estimate in :mod:`.dry_run`, so that what is read and how is
in one short place.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from openie4pp.rejections import is_final_rejection
from openie4pp.shard_layout import REJECTED, shard_files

__all__ = ["ReadOnlyCache", "finished_units", "open_cache"]


class ReadOnlyCache:
    """The response cache opened so that nothing is written beside it: SQLite in WAL mode creates
    its ``-wal``/``-shm`` files on open unless they exist, so a cache without them is read as
    immutable (every answer is in the main file then)."""

    def __init__(self, path: Path) -> None:
        wal = path.with_name(path.name + "-wal").exists()
        uri = f"file:{path.resolve()}?mode=ro" + ("" if wal else "&immutable=1")
        self._db = sqlite3.connect(uri, uri=True)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        self._live = " AND forgotten = 0" if "forgotten" in columns else ""

    def lookup(self, key: str) -> tuple[str, int] | None:
        """The cached answer's content and the completion tokens it was billed."""
        try:
            row = self._db.execute("SELECT content, completion_tokens FROM responses WHERE key = ?"
                                   + self._live, (key,)).fetchone()
        except sqlite3.Error:  # an empty file, or one without the table yet: nothing is cached
            return None
        return None if row is None else (str(row[0]), int(row[1]))

    def close(self) -> None:
        self._db.close()


def open_cache(path: Path) -> ReadOnlyCache | None:
    if not path.is_file():
        return None
    try:
        return ReadOnlyCache(path)
    except sqlite3.Error:  # not created yet, or another program's file: nothing is cached
        return None


def finished_units(out: Path, reopened: frozenset[str]) -> set[str]:
    """Ids an earlier run finished in ``out`` (a record, or a final rejection whose reason
    ``--retry-failed`` does not reopen), read line by line without writing anything."""
    done: set[str] = set()
    if not out.is_dir():
        return done
    for paths in shard_files(out).values():
        for path in paths:
            done.update(_ids(path, lambda data: (data.get("sentence") or {}).get("id")))
    rejected = out / REJECTED
    if rejected.is_file():
        done.update(_ids(rejected, lambda data: data.get("sentence_id") if is_final_rejection(data)
                         and data.get("reason") not in reopened else None))
    return done


def _ids(path: Path, pick: Any) -> set[str]:
    found: set[str] = set()
    with path.open("rb") as lines:
        for line in lines:
            try:
                data = json.loads(line)
                value = pick(data) if isinstance(data, dict) else None
            except (ValueError, AttributeError):  # a torn last line, a bad one: not finished
                continue
            if value:
                found.add(str(value))
    return found
