"""Content-addressed response cache in SQLite, so a rerun or a resume costs no request.

Why SQLite (stdlib) in WAL mode with one commit per answer: a kill -9 in the middle of a long
annotation run must lose at most the answers that were still in flight, and several readers (a
second process inspecting progress) must not block the writer. Why on the event loop and not in a
worker thread: a primary-key lookup and a WAL append (``synchronous=NORMAL``: no fsync per
commit) take tens of microseconds, less than the hand-off to a thread and back, and at 300
requests/s the client's CPU is the throughput limit (``benchmarks/annotate_throughput.py``).
Why coalescing: the pipeline may ask the same question twice at once (duplicate sentences in a
shard); one request is enough.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..llm import Backend, ChatRequest, ChatResponse

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    structured TEXT NOT NULL,
    purpose TEXT NOT NULL,
    created REAL NOT NULL,
    span_constraint TEXT NOT NULL DEFAULT 'none'
)
"""
_ADD_CONSTRAINT = "ALTER TABLE responses ADD COLUMN span_constraint TEXT NOT NULL DEFAULT 'none'"
"""Caches written before this column existed lack it; their rows read as "none" (answers decoded
under a constraint then had other constraint digests and prompt hashes, so none is replayed)."""


_ADD_FORGOTTEN = "ALTER TABLE responses ADD COLUMN forgotten INTEGER NOT NULL DEFAULT 0"
"""1: the answer failed validation in a batch run, which still replays it until the run ends."""

_SELECT = ("SELECT model, content, endpoint, prompt_tokens, completion_tokens, structured, span_constraint "
           "FROM responses WHERE key = ?")


def _response(row: tuple[Any, ...] | None) -> ChatResponse | None:
    if row is None:
        return None
    model, content, endpoint, prompt_tokens, completion_tokens, structured, constraint = row
    return ChatResponse(content=content, model=model, endpoint=endpoint, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, cached=True, structured=structured,
                        constraint=constraint)


class CacheReader:
    """Another process's response cache, opened read-only (SQLite WAL lets readers and one writer on
    the same machine work at once): a lookup never writes, never blocks the owner.

    ``settled``: nobody is to write beside it, not even SQLite's reader index (``--dry-run`` leaves
    ``OUT`` as it found it): a cache without a ``-wal`` file (no writer has it open, every answer
    is in the main file) is opened ``immutable``, which creates no ``-shm``. Not for a cache an
    actor will open later: an immutable reader never sees its writes."""

    def __init__(self, path: str | Path, *, settled: bool = False) -> None:
        self.path = Path(path)
        quiet = settled and not self.path.with_name(self.path.name + "-wal").exists()
        uri = f"file:{self.path.resolve()}?mode=ro" + ("&immutable=1" if quiet else "")
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._lock = threading.Lock()

    def lookup(self, key: str) -> ChatResponse | None:
        for query in (_SELECT + " AND forgotten = 0", _SELECT):
            try:
                with self._lock:
                    return _response(self._db.execute(query, (key,)).fetchone())
            except sqlite3.Error:  # a cache from before the column (or an empty file)
                continue
        return None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _OwnerCancelled(Exception):
    """The task that was asking for a coalesced request was cancelled; its waiters must ask anew."""


class CachedBackend:
    """Wraps a backend; answers from the cache when it can (``cached=True``), asks ``inner`` otherwise.

    Only successful answers are stored; whether an answer is *valid* is the pipeline's call, so it
    can :meth:`forget` one that failed validation before re-asking. Coalesced waiters (identical
    request already in flight) get the answer as ``cached`` too: they cost no request (the run's
    statistics count hits from that flag).
    """

    def __init__(self, inner: Backend, path: str | Path, *, also_read: Sequence[str | Path] = (),
                 keep_forgotten: bool = False) -> None:
        """``also_read``: other caches looked up (read-only) when this one has no answer: the caches
        of a Ray run's other actors. ``keep_forgotten``: :meth:`forget` only marks the answer, which
        this backend still replays, and :meth:`purge_forgotten` drops the marked ones at the run's end:
        a batch run re-reads its cache every round, and an answer forgotten in round 2 must not be
        paid for again in round 3 (or after a crash)."""
        self.inner = inner
        self.model = inner.model
        self.path = Path(path)
        self.keep_forgotten = keep_forgotten
        self._readers = [CacheReader(other) for other in also_read if Path(other).exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection; `forget`/`len` may come from other threads
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(responses)")}
        for column, statement in (("span_constraint", _ADD_CONSTRAINT), ("forgotten", _ADD_FORGOTTEN)):
            if column not in columns:
                try:
                    self._db.execute(statement)
                except sqlite3.OperationalError as error:  # another process added it first
                    if "duplicate column" not in str(error):
                        raise
        self._in_flight: dict[str, asyncio.Future[ChatResponse]] = {}

    def __repr__(self) -> str:
        return f"CachedBackend({self.inner!r}, path={str(self.path)!r})"

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    async def complete(self, request: ChatRequest) -> ChatResponse:
        key = request.cache_key(self.model)
        while True:
            shared = await self._join(key)
            if shared is not None:
                return shared
            stored = self._get(key)
            if stored is not None:
                return stored
            if key not in self._in_flight:  # nobody started it while we looked: we ask
                break
        future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            response = await self.inner.complete(request)
            self._put(key, request, response)
        except asyncio.CancelledError:
            future.set_exception(_OwnerCancelled())  # waiters ask again themselves
            future.exception()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: no "never retrieved" warning without waiters
            raise
        else:
            future.set_result(response)
        finally:
            self._in_flight.pop(key, None)
        return response

    async def _join(self, key: str) -> ChatResponse | None:
        """Wait for an identical request already in flight; None if there is none (or it was cancelled)."""
        pending = self._in_flight.get(key)
        if pending is None:
            return None
        try:
            response = await asyncio.shield(pending)
        except _OwnerCancelled:
            return None
        return dataclasses.replace(response, cached=True, latency_s=0.0, retries=0)

    async def forget(self, request: ChatRequest) -> bool:
        """Drop the stored answer to ``request`` (it failed validation); True if there was one."""
        key = request.cache_key(self.model)
        if self.keep_forgotten:
            return self._mark_forgotten(key)
        return await asyncio.to_thread(self._delete, key)

    def lookup(self, key: str) -> ChatResponse | None:
        """The stored answer for a cache key (``cached=True``), here or in an ``also_read`` cache."""
        return self._get(key)

    def store(self, key: str, response: ChatResponse, purpose: str) -> None:
        """Store an answer obtained elsewhere (a batch's output file): durable on return."""
        self._write(key, purpose, response)

    def purge_forgotten(self) -> int:
        """Drop the answers :meth:`forget` marked (``keep_forgotten``): the run that replayed them
        ended, so a rerun (after a fix of the prompt, the server or the model) asks again."""
        with self._lock:
            return int(self._db.execute("DELETE FROM responses WHERE forgotten = 1").rowcount)

    def _mark_forgotten(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("UPDATE responses SET forgotten = 1 WHERE key = ?", (key,)).rowcount > 0

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        for reader in self._readers:
            reader.close()

    def _get(self, key: str) -> ChatResponse | None:
        query = _SELECT if self.keep_forgotten else _SELECT + " AND forgotten = 0"
        with self._lock:
            found = _response(self._db.execute(query, (key,)).fetchone())
        if found is None:
            for reader in self._readers:
                found = reader.lookup(key)
                if found is not None:
                    break
        return found

    def _put(self, key: str, request: ChatRequest, response: ChatResponse) -> None:
        self._write(key, request.purpose, response)

    def _write(self, key: str, purpose: str, response: ChatResponse) -> None:
        with self._lock:  # autocommit (isolation_level=None): each answer is durable on return
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, content, endpoint, prompt_tokens, "
                "completion_tokens, latency_s, structured, purpose, created, span_constraint, forgotten) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (key, response.model, response.content, response.endpoint, response.prompt_tokens,
                 response.completion_tokens, response.latency_s, response.structured, purpose,
                 time.time(), response.constraint))

    def _delete(self, key: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM responses WHERE key = ?", (key,)).rowcount > 0
