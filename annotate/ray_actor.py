"""The Ray Data actor of ``--execution ray``: one backend per actor, one pipeline per batch.

Ray Data calls :class:`BatchAnnotator` with one batch at a time (one block the driver made: a
``pyarrow.Table`` of :data:`ITEM_SCHEMA` rows). The actor annotates it with the project's own
:class:`~openie4pp.annotate.pipeline.Pipeline` into the batch's folder ``OUT/ray/parts/<key>/``
(see :mod:`openie4pp.annotate.ray_folder`) and returns one small row: the batch's key, its units
and its statistics, pickled. The shards stay on disk; the driver folds them into ``OUT``.

Why one event loop per actor, on a thread of its own: the backend's HTTP sessions (and the vLLM
batcher's queue) belong to the loop they were made on, and they live as long as the actor; Ray may
call ``__call__`` from another thread than the constructor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from openie4pp.errors import OpenIE4ppError

from .backends.factory import open_backend
from .canaries import Canary
from .config import AnnotationConfig, CacheSettings
from .inputs import WorkItem
from .llm import Backend
from .pipeline import Pipeline
from .ray_folder import CANARY_PART, RayFolder, claim_slot, part_key
from .run_setup import pipeline_config

T = TypeVar("T")

def item_row(seq: int, item: WorkItem, done: Sequence[str] = ()) -> dict[str, Any]:
    """A dataset row: a :class:`~openie4pp.annotate.inputs.WorkItem`'s fields, its position among the
    run's pending items (``seq``) and ``canary`` (the one row that stands for the gold canaries).
    No column is ever null and ``triples`` is JSON text, so every block infers the same Arrow types
    (``line`` -1: none). ``done``: the item's units ``OUT`` has finished already (project mode: an
    item is sent when one of its languages is left; the others must be neither paid nor written again)."""
    return {"seq": seq, "canary": False, "done": json.dumps(list(done)), "id": item.id, "lang": item.lang,
            "text": item.text,
            "triples": json.dumps(item.triples, ensure_ascii=False) if item.triples else "",
            "pretokenized": item.pretokenized, "source": item.source,
            "line": -1 if item.line is None else item.line}


def canary_row() -> dict[str, Any]:
    return {"seq": -1, "canary": True, "done": "[]", "id": "", "lang": "", "text": "", "triples": "",
            "pretokenized": False, "source": "", "line": -1}


def row_item(row: dict[str, Any]) -> WorkItem:
    triples = tuple(tuple(t) for t in json.loads(row["triples"])) if row["triples"] else ()
    return WorkItem(row["id"], row["lang"], row["text"], triples, bool(row["pretokenized"]),
                    row["source"] or "", None if row["line"] < 0 else int(row["line"]))


def actor_config(config: AnnotationConfig, folder: RayFolder, slot: int) -> AnnotationConfig:
    """The run's config as an actor uses it: its slot's cache, and no ``--retry-failed`` (the driver
    reopened those items in ``OUT``; in a batch's folder a rejection is the dead attempt's verdict)."""
    return config.model_copy(update={
        "cache": CacheSettings(path=folder.slot_cache(slot)),
        "pipeline": config.pipeline.model_copy(update={"retry_failed": []}),
    })


class BatchAnnotator:
    """The callable class of ``map_batches``: claims a slot, opens the backend, annotates batches."""

    def __init__(self, config: AnnotationConfig, canaries: tuple[Canary, ...]) -> None:
        self.folder = RayFolder(config.out)
        self.slot, self._slot_fd = claim_slot(self.folder)
        self.folder.slot_pid(self.slot).write_text(f"{os.getpid()}\n", encoding="utf-8")
        self.config = actor_config(config, self.folder, self.slot)
        self.canaries = canaries
        own = self.folder.slot_cache(self.slot)
        self._also_read = [config.cache_path, *(c for c in self.folder.slot_caches() if c != own)]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="annotate-loop", daemon=True)
        self._thread.start()
        self._stack = contextlib.ExitStack()
        self.backend, self.endpoint = self._on_loop(self._open())

    async def _open(self) -> tuple[Backend, str]:
        """On the actor's loop: an embedded server or engine that needs a running loop gets this one."""
        return self._stack.enter_context(open_backend(self.config, also_read=self._also_read))

    def _on_loop(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def __call__(self, batch: Any) -> Any:
        """One block: annotate its items (or the canaries) into its folder; one row of results."""
        import pyarrow as pa

        rows = batch.to_pylist()
        canary = bool(rows) and bool(rows[0]["canary"])
        key = CANARY_PART if canary or not rows else part_key(int(rows[0]["seq"]))
        items = [] if canary else [row_item(row) for row in rows]
        pipeline = Pipeline(self.backend, self.folder.part(key),
                            pipeline_config(self.config, self.endpoint, self.canaries if canary else ()))
        error = b""
        try:
            skip = {unit for row in rows if not canary for unit in json.loads(row["done"])}
            stats = self._on_loop(pipeline.run(items, skip=skip))
        except OpenIE4ppError as failure:  # returned, not raised: Ray would wrap it in a remote traceback
            stats, error = pipeline.stats, _pickled(failure)
        scores = pipeline.canaries.scores
        return pa.table({"part": [key], "units": [stats.items], "slot": [self.slot], "error": [error],
                         "stats": [pickle.dumps(stats)], "canaries": [pickle.dumps(scores)]})

    def __del__(self) -> None:
        """Close the backend when Ray ends the actor gracefully (an embedded server must stop)."""
        with contextlib.suppress(Exception):
            self._on_loop(self.backend.aclose(), timeout_s=30)
            self._stack.close()
            self._loop.call_soon_threadsafe(self._loop.stop)
            os.close(self._slot_fd)


def _pickled(error: OpenIE4ppError) -> bytes:
    """The error for the driver to raise as itself (its message alone if it does not pickle)."""
    try:
        return pickle.dumps(error)
    except Exception:
        return pickle.dumps(OpenIE4ppError(str(error)))
