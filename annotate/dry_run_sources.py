"""What ``openie4pp annotate --dry-run`` reads of an earlier run, strictly without writing.

Why a module of its own: a dry run must leave ``OUT`` and the response cache exactly as it found
them (no lock taken, no torn line repaired, no SQLite ``-wal``/``-shm`` file created), so it cannot
use the run's own writers (:mod:`openie4pp.shards`); the cache is read with the one read-only
reader, :class:`~.backends.cache.CacheReader`, in its ``settled`` mode.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from openie4pp.rejections import is_final_rejection
from openie4pp.shard_layout import REJECTED, shard_files

from .backends.cache import CacheReader

__all__ = ["finished_units", "open_cache"]


def open_cache(path: Path) -> CacheReader | None:
    """The run's response cache, read as a dry run must (:class:`CacheReader` ``settled``); None
    when there is none, or the file is not one."""
    if not path.is_file():
        return None
    try:
        return CacheReader(path, settled=True)
    except sqlite3.Error:  # another program's file: nothing is cached
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
