"""What a Ray run (:mod:`openie4pp.annotate.ray_engine`) keeps under ``OUT/ray/`` while it runs, and how
the driver folds it into ``OUT`` (once at the end, and first thing after a crashed run)::

    OUT/ray/
      parts/b0000000064/     one batch's shard folder (shards, rejected.jsonl, manifest, stats.json)
      parts/canaries/        the gold canaries' run (nothing is written to its shards)
      caches/slot-0.sqlite   slot 0's response cache (answers the actor in that slot paid for)
      caches/slot-0.lock     held (flock) by the live actor in slot 0; its pid in slot-0.pid

Why a folder per *batch* and not per actor: a batch is one fixed Ray block (the driver makes them), so
a batch that Ray retries after its actor died lands in the same folder, on whichever actor: the
:class:`~openie4pp.shards.ShardWriter` repairs a torn tail and the pipeline skips what the dead
attempt finished, exactly as a rerun of an online run does. An actor's folder would instead be
reopened for every batch, re-reading all it wrote so far (quadratic in a long run).

Why a cache per *slot* and not per batch: answers are worth keeping across batches. Every actor
reads every slot's cache (read-only, SQLite WAL) besides the run's main cache, so a batch retried on
another actor replays the dead one's answers; a restarted actor takes the first free slot, usually
the dead one's, and continues its cache. The driver creates the slots' caches before the actors start,
so each actor's reader list is complete when it opens. All of this needs ``OUT`` on one filesystem
that every actor sees, with working ``flock`` and SQLite WAL (one machine, or a local disk per node:
WAL is not safe on NFS).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from openie4pp.errors import UsageError
from openie4pp.jsonl import iter_jsonl_lines
from openie4pp.schema import Record, Rejection, is_candidate_field
from openie4pp.shards import REJECTED, FolderBusyError, ShardWriter, check_not_busy, iter_records

from .backends.cache import CachedBackend
from .llm import ChatRequest, ChatResponse

log = logging.getLogger(__name__)

CANARY_PART = "canaries"


class RayFolder:
    """The paths under ``OUT/ray/``."""

    def __init__(self, out: Path) -> None:
        self.root = out / "ray"
        self.parts = self.root / "parts"
        self.caches = self.root / "caches"

    def part(self, key: str) -> Path:
        return self.parts / key

    def slot_cache(self, slot: int) -> Path:
        return self.caches / f"slot-{slot}.sqlite"

    def slot_lock(self, slot: int) -> Path:
        return self.caches / f"slot-{slot}.lock"

    def slot_pid(self, slot: int) -> Path:
        return self.caches / f"slot-{slot}.pid"

    def slot_caches(self) -> list[Path]:
        return sorted(self.caches.glob("slot-*.sqlite")) if self.caches.is_dir() else []

    def part_folders(self) -> list[Path]:
        return sorted(p for p in self.parts.iterdir() if p.is_dir()) if self.parts.is_dir() else []


def part_key(first_seq: int) -> str:
    """A batch's folder name: its first item's position among the run's pending items (zero-padded,
    so folders sort in input order and the merged shards keep it)."""
    return f"b{first_seq:010d}"


def claim_slot(folder: RayFolder) -> tuple[int, int]:
    """The first slot whose lock is free, and the descriptor holding it (closed by the process's
    death, so a restarted actor finds the dead one's slot free)."""
    import fcntl

    folder.caches.mkdir(parents=True, exist_ok=True)
    slot = 0
    while True:
        fd = os.open(folder.slot_lock(slot), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            slot += 1
            continue
        return slot, fd


class _NoRequests:
    """A backend that is never asked: it lets :class:`CachedBackend` create a cache file with its
    schema (the schema lives in one place, :mod:`openie4pp.annotate.backends.cache`)."""

    model = ""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise RuntimeError("this backend only creates a cache file")

    async def aclose(self) -> None:
        return None


def create_cache(path: Path) -> None:
    """An (empty) response cache at ``path`` unless there is one (the model is not stored in it: it is
    part of each answer's key)."""
    CachedBackend(_NoRequests(), path).close()


def merge_caches(main: Path, parts: list[Path]) -> int:
    """Copy the answers of the slot caches ``parts`` into ``main`` (``INSERT OR IGNORE``: an answer
    ``main`` has is kept); returns how many were new. Each slot is one transaction."""
    create_cache(main)
    added = 0
    db = sqlite3.connect(main, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        main_columns = [row[1] for row in db.execute("PRAGMA main.table_info(responses)")]
        for part in parts:
            if not part.exists():
                continue
            db.execute("ATTACH DATABASE ? AS part", (str(part),))
            try:
                columns = [row[1] for row in db.execute("PRAGMA part.table_info(responses)")]
                shared = ", ".join(c for c in main_columns if c in columns)
                if not shared:
                    continue
                where = " WHERE forgotten = 0" if "forgotten" in columns else ""
                db.execute("BEGIN")
                cursor = db.execute(f"INSERT OR IGNORE INTO main.responses ({shared}) "
                                    f"SELECT {shared} FROM part.responses{where}")
                db.execute("COMMIT")
                added += max(cursor.rowcount, 0)
            finally:
                db.execute("DETACH DATABASE part")
    finally:
        db.close()
    return added


@dataclass
class MergeTally:
    """What merging the parts added to ``OUT``: the run's record and rejection numbers, exact even
    when an actor died (the batches' own statistics of a dead attempt are lost with it)."""

    records: int = 0
    extractions: int = 0
    records_per_lang: Counter[str] = field(default_factory=Counter)
    rejected_records: int = 0
    rejected_candidates: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    parts: int = 0
    busy: list[Path] = field(default_factory=list)


@contextlib.contextmanager
def _part_writer(part: Path, wait_s: float) -> Iterator[ShardWriter]:
    """The part's writer (it repairs a torn tail a killed actor left), waiting up to ``wait_s`` for
    an actor that is still finishing a batch there."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            writer = ShardWriter(part, resume=True)
            break
        except FolderBusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
    with writer:
        yield writer


def merge_part(part: Path, writer: ShardWriter, tally: MergeTally, *, wait_s: float = 10.0) -> bool:
    """Fold one batch's folder into ``writer`` (the run's ``OUT``); False if an actor still holds it.

    Records are written once (the writer's ids); a sentence-level rejection only for a unit ``OUT``
    has neither a record nor a final rejection for (a project-mode item re-sent because one of its
    languages was unfinished redoes the others from the cache); identical lines are written once."""
    final = writer.rejections.final_reasons
    gone: set[str] = set()
    try:
        with _part_writer(part, wait_s):
            for item in iter_records(part):
                if isinstance(item, Record):
                    if item.sentence.id in final and item.sentence.id not in writer:
                        gone.add(item.sentence.id)  # an earlier run rejected it for good: it stays so
                        continue
                    if writer.write(item):
                        tally.records += 1
                        tally.extractions += len(item.extractions)
                        tally.records_per_lang[item.lang] += 1
                else:  # an unreadable line (it cannot happen short of a disk fault): accounted for
                    _reject(writer, item, tally)
            rejected = part / REJECTED
            if rejected.exists():
                for _, raw in iter_jsonl_lines(rejected):
                    try:
                        rejection = Rejection.model_validate_json(raw)
                    except ValueError:
                        continue
                    sentence = rejection.sentence_id
                    if sentence in gone:
                        continue
                    if (not is_candidate_field(rejection.field) and sentence
                            and (sentence in writer or sentence in writer.rejections.final_reasons)):
                        continue
                    _reject(writer, rejection, tally)
    except FolderBusyError:
        tally.busy.append(part)
        return False
    tally.parts += 1
    return True


def _reject(writer: ShardWriter, rejection: Rejection, tally: MergeTally) -> None:
    if not writer.reject(rejection):
        return
    tally.reasons[rejection.reason.value] += 1
    if is_candidate_field(rejection.field):
        tally.rejected_candidates += 1
    else:
        tally.rejected_records += 1


def finalise(folder: RayFolder, writer: ShardWriter, main_cache: Path, tally: MergeTally | None = None, *,
             wait_s: float = 10.0) -> MergeTally:
    """Fold everything under ``OUT/ray/`` into ``OUT`` and the main cache, then remove it. A batch
    folder that an actor still writes after ``wait_s`` (one that Ray has not finished stopping) is
    left, with the whole folder, for the next run, which finalises it first.

    Only a batch's writer lock says that an actor is writing: an actor holds its slot for as long as
    it lives, and Ray ends an idle actor only when the last handle on it is collected (half a minute
    after a failed run), but between batches it writes nothing."""
    tally = tally if tally is not None else MergeTally()
    if not folder.root.exists():
        return tally
    for part in folder.part_folders():
        merge_part(part, writer, tally, wait_s=wait_s)
    merge_caches(main_cache, folder.slot_caches())
    if tally.busy:
        log.warning("%s: %d batch folder(s) are still being written by actors; the next run merges them",
                    folder.root, len(tally.busy))
        return tally
    shutil.rmtree(folder.root)
    return tally


def busy_slots(folder: RayFolder) -> list[int]:
    """The slots a live process holds (a crashed run's actors that have not died yet)."""
    import fcntl

    busy = []
    for lock in sorted(folder.caches.glob("slot-*.lock")) if folder.caches.is_dir() else []:
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            busy.append(int(lock.stem.split("-", 1)[1]))
        finally:
            os.close(fd)
    return busy


def busy_parts(folder: RayFolder) -> list[Path]:
    """The batch folders whose writer lock a live process holds."""
    busy = []
    for part in folder.part_folders():
        try:
            check_not_busy(part)
        except FolderBusyError:
            busy.append(part)
    return busy


def refuse_live_run(folder: RayFolder) -> None:
    """Before a run starts: actors of another run still writing under ``OUT/ray/`` (its driver was
    killed a moment ago, or it is running) must not have their folders merged under them."""
    busy = busy_parts(folder)
    if busy:
        raise UsageError(f"--out {folder.root.parent}: actors of another Ray run still write to "
                         f"{len(busy)} batch folder(s) in {folder.parts}; wait for them to end, or stop "
                         "that run")
