"""``--execution ray``: the annotation run as a Ray Data job, an actor pool writing the usual folder.

The driver (this module, :func:`run_on_ray`):

1. checks what every engine checks (:func:`~openie4pp.annotate.run_setup.prepare_run`), holds
   ``OUT``'s writer lock for the whole run, and first folds in what a crashed earlier Ray run left
   under ``OUT/ray/`` (:func:`~openie4pp.annotate.ray_folder.finalise`): that work is done, and
   this run counts it as such;
2. reads the input with the project's reader, as the online pipeline's first pass does: a bad line
   becomes a rejection naming its file and line (written here), a finished item is skipped, every
   other item becomes a row of a Ray block of ``batch_size`` rows (``ray.data.from_items``, 64
   blocks at a time as the input is read: the driver holds at most 64 blocks' rows, ~1 KB each, and
   the object store ~100 bytes plus the text per item, spilled to disk by Ray when it is full). Ray is
   started only when something is left to annotate (or canaries to score);
3. runs ``map_batches`` over the blocks with :class:`~openie4pp.annotate.ray_actor.BatchAnnotator`
   (a fixed pool of ``actors``, no more than there are blocks; ``num_gpus=gpus_per_actor`` each for
   the in-process vLLM engine, 1 CPU each; one call per block, ``batch_size=None``: a block is a
   batch); Ray Data restarts a dead actor and retries its batches (its defaults:
   ``max_restarts=-1``, ``max_task_retries=-1``), and each batch resumes its own folder;
4. finalises, also after an error or Ctrl-C: every batch folder into ``OUT`` (records once), the
   slots' caches into the main cache, then removes ``OUT/ray/``; closes ``OUT`` (manifest, card);
   writes ``stats.json`` with the run's numbers.

Records and rejections are counted from what the merge wrote (exact even after an actor died);
requests, tokens and latencies are the batches' own numbers, so the requests a killed attempt paid
for before it died are in its slot's cache but not in the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import pickle
import signal
import sys
from types import ModuleType
from typing import Any

from openie4pp.errors import UsageError
from openie4pp.shards import NOT_FINAL_REASONS, ShardWriter

from .canaries import Canary, CanaryScore
from .config import AnnotationConfig, RaySettings
from .inputs import InputCounts, InputProblem, WorkItem
from .pipeline import input_rejection
from .ray_actor import BatchAnnotator, canary_row, item_row
from .ray_folder import MergeTally, RayFolder, busy_slots, create_cache, finalise, refuse_live_run
from .run_result import AnnotationResult, annotation_result
from .run_setup import interrupt_on_sigterm, open_items, prepare_run
from .stats import RunStats
from .units import input_units

__all__ = ["run_on_ray"]


def import_ray() -> ModuleType:
    """Ray, or the one-line usage error that says how to install it."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise UsageError("--execution ray needs Ray: pip install 'openie4pp[ray]'") from None
    return ray


def run_on_ray(config: AnnotationConfig, *, progress: bool = True) -> AnnotationResult:
    """Annotate ``config.input`` into ``config.out`` on a Ray cluster (a local instance unless
    ``execution.ray.address``), resuming what an earlier run, online or Ray, left there."""
    ray = import_ray()
    canaries = prepare_run(config)
    check_endpoints(config)
    if config.input.limit == 0:
        return AnnotationResult(config.out, f"nothing to do: --limit 0; {config.out} is unchanged",
                                RunStats(), None)
    folder = RayFolder(config.out)
    refuse_live_run(folder)
    stats = RunStats(constrained=config.pipeline.constrain == "spans")
    counts = InputCounts()
    scores: dict[str, CanaryScore] = {}
    ended = False
    try:
        with interrupt_on_sigterm(), ShardWriter(config.out, resume=True,
                                                 build_config=config.manifest_config()) as writer:
            tally = MergeTally()
            try:
                finalise(folder, writer, config.cache_path)  # a crashed run's batches: done before this one
                forgotten = writer.forget_rejections(set(config.pipeline.retry_failed) | NOT_FINAL_REASONS)
                stats.retried_failed = sum(n for r, n in forgotten.items() if r not in NOT_FINAL_REASONS)
                session = _RaySession(ray, config.execution.ray)
                try:
                    blocks = _Blocks(session, config.execution.ray.batch_size)
                    _read_input(config, writer, stats, counts, blocks)
                    if blocks.datasets or canaries:
                        scores = _annotate(session, config, folder, canaries, blocks, stats, progress)
                finally:
                    session.stop()
                ended = True
            finally:
                finalise(folder, writer, config.cache_path, tally)
                _count_merged(stats, tally)
                if tally.busy:  # an actor still holds a batch's folder: its items are not in OUT yet
                    ended = False
                stats.complete = ended
                writer.quality = {"canaries": stats.canaries} if canaries and ended else {}
                if not ended:
                    writer.close(complete=False)  # no card, "complete": false (an error does it too)
    finally:
        with contextlib.suppress(OSError):  # a full disk must not hide the original error
            stats.write(config.out / "stats.json", config.pipeline.prices)
    return annotation_result(config, stats, counts, scores, config.pipeline.prices)


def check_endpoints(config: AnnotationConfig) -> None:
    """The online engine's checks of the endpoints (URLs, the API key in the environment), made in
    the driver before Ray starts: an actor that cannot open its backend dies inside Ray, which
    retries it and then reports a remote traceback instead of the one line a user can act on. The
    embedded server and the vLLM engine are opened by the actors only (nothing to check cheaply)."""
    backend = config.backend
    if backend.kind != "openai" or backend.local:
        return
    from .backends.openai_compat import OpenAICompatBackend

    model = backend.model
    assert model  # the config refuses an endpoint URL without a model

    async def probe() -> None:
        opened = OpenAICompatBackend(list(backend.endpoints), model, api_key_env=backend.api_key_env,
                                     timeout_s=backend.timeout_s, http_client=backend.http_client)
        await opened.aclose()

    asyncio.run(probe())


def _read_input(config: AnnotationConfig, writer: ShardWriter, stats: RunStats, counts: InputCounts,
                blocks: _Blocks) -> None:
    """The online pipeline's first pass over the input, minus the annotation: input problems are
    written, finished units counted as skipped, and every item with an unfinished unit goes to a block
    (in project mode with its finished languages named, so that the actor leaves them alone)."""
    done = writer.rejections.final_reasons
    current: WorkItem | None = None
    unfinished = False
    finished: list[str] = []
    for unit in input_units(open_items(config, counts), config.pipeline.mode, config.pipeline.target_langs):
        if isinstance(unit, InputProblem):
            accounted = unit.sentence_id is not None and unit.reason != "duplicate" and (
                unit.sentence_id in writer or unit.sentence_id in done)
            if not accounted:  # else an earlier run (other limits?) accounts for this id already
                writer.reject(input_rejection(unit))
            stats.input_rejection(unit.reason)
            continue
        if unit.item is not current:
            if current is not None and unfinished:
                blocks.add(current, finished)
            current, unfinished, finished = unit.item, False, []
        stats.items += 1
        if unit.id in writer or unit.id in done:
            stats.skipped(done.get(unit.id))
            finished.append(unit.id)
        else:
            unfinished = True
    if current is not None and unfinished:
        blocks.add(current, finished)
    blocks.flush()


class _RaySession:
    """Ray, started on first use: a local instance (stopped at the end) or the cluster at
    ``address``; a Ray that the caller already started (a test, a notebook) is used and left running."""

    def __init__(self, ray: ModuleType, settings: RaySettings) -> None:
        self.ray, self.settings = ray, settings
        self._started = self._owned = False

    def blocks(self, rows: list[dict[str, Any]], size: int) -> Any:
        """``rows`` as a dataset of blocks of ``size`` rows (the last may be shorter)."""
        self.start()
        return self.ray.data.from_items(rows, override_num_blocks=-(-len(rows) // size))

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        settings = self.settings
        if not self.ray.is_initialized():
            self._owned = True
            local = settings.address is None
            # a local instance gets at least one CPU per actor: HTTP actors mostly wait on sockets,
            # and a pool that cannot start all its actors would wait forever
            # ray.init installs its own SIGTERM handler (exit 15, or an abort): the run's is put back,
            # so SIGTERM ends the run as Ctrl-C does (the folders merged, exit 130)
            on_sigterm = signal.getsignal(signal.SIGTERM)
            self.ray.init(address=settings.address, include_dashboard=False, logging_level=logging.WARNING,
                          **({"num_cpus": max(os.cpu_count() or 1, settings.actors)} if local else {}))
            with contextlib.suppress(ValueError, TypeError):  # not the main thread: nothing to put back
                signal.signal(signal.SIGTERM, on_sigterm)
        # one progress bar, ours (a dataset copies the context when it is made: set it first)
        self.ray.data.DataContext.get_current().enable_progress_bars = False
        gpus = settings.actors * settings.gpus_per_actor
        available = self.ray.cluster_resources().get("GPU", 0)
        if gpus and available < gpus and settings.address is None:
            raise UsageError(f"--ray-gpus-per-actor {settings.gpus_per_actor:g} x --ray-actors "
                             f"{settings.actors}: the local Ray instance has {available:g} GPUs")

    def stop(self) -> None:
        if self._owned:
            self.ray.shutdown()
            self._owned = False


class _Blocks:
    """The pending items as Ray blocks of ``size`` rows, ``BLOCKS_PER_CHUNK`` blocks at a time put in
    the object store as they are read (``from_items`` makes a block's metadata here; ``from_arrow``
    would start a Ray task per block for it)."""

    BLOCKS_PER_CHUNK = 64

    def __init__(self, session: _RaySession, size: int) -> None:
        self.session, self.size = session, size
        self.datasets: list[Any] = []
        self.items = self.count = 0
        self._rows: list[dict[str, Any]] = []

    def add(self, item: WorkItem, done: list[str]) -> None:
        self._rows.append(item_row(self.items, item, done))
        self.items += 1
        if len(self._rows) >= self.size * self.BLOCKS_PER_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._rows:
            self.datasets.append(self.session.blocks(self._rows, self.size))
            self.count += -(-len(self._rows) // self.size)
            self._rows = []

    def dataset(self, first: list[Any]) -> Any:
        """All blocks as one dataset, after ``first`` (the canaries' block)."""
        head, *rest = first + self.datasets
        return head.union(*rest) if rest else head


def _annotate(session: _RaySession, config: AnnotationConfig, folder: RayFolder, canaries: tuple[Canary, ...],
              blocks: _Blocks, stats: RunStats, progress: bool) -> dict[str, CanaryScore]:
    """Run the actor pool over the blocks (and the canaries' block); the batches' numbers into
    ``stats``; the canaries' scores."""
    from ray.data import ActorPoolStrategy

    session.start()
    settings = config.execution.ray
    # before any actor opens: each reads all of them (an idle actor of an earlier run may still hold
    # a slot for a while: the new ones take the next free ones)
    for slot in range(settings.actors + len(busy_slots(folder))):
        create_cache(folder.slot_cache(slot))
    first = [session.blocks([canary_row()], 1)] if canaries else []
    dataset = blocks.dataset(first).map_batches(
        BatchAnnotator, fn_constructor_args=(config, canaries),
        compute=ActorPoolStrategy(size=min(settings.actors, blocks.count + len(first))),
        batch_size=None, batch_format="pyarrow",
        num_cpus=1, num_gpus=settings.gpus_per_actor or None)
    scores: dict[str, CanaryScore] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="annotate (ray)", unit="item", file=sys.stderr, dynamic_ncols=True,
                   total=stats.items, initial=stats.skipped_done)
    rows = iter(dataset.iter_rows())
    written = [0, 0]
    try:
        for row in rows:
            part: RunStats = pickle.loads(row["stats"])
            add_batch_stats(stats, part)
            if row["error"]:  # the endpoint refused the key, the breaker opened: the run stops, as online
                raise pickle.loads(row["error"])
            if part.canaries:
                stats.canaries, stats.canary_f1 = part.canaries, part.canary_f1
                scores = pickle.loads(row["canaries"])
            written[0] += part.accepted_records
            written[1] += part.rejected_records
            if bar is not None:  # the records are counted when merged: the batches' counts meanwhile
                bar.update(int(row["units"]))
                bar.set_postfix({**stats.postfix(), "ok": written[0], "rej": written[1]}, refresh=False)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:  # an error or an interrupt: the executor stops before the folders merge
            close()
        if bar is not None:
            bar.close()
        # the actors live as long as a handle on them does, and an exception's traceback would keep
        # this frame's (the executor's) until the run is finalised: they must end first
        del rows, dataset
        gc.collect()
    return scores


def add_batch_stats(total: RunStats, part: RunStats) -> None:
    """What one batch's pipeline spent, added to the run's numbers (the items, records and rejections
    are the driver's own counts: the input it read and what the merge wrote)."""
    total.absorb(part)
    total.rejected_per_lang.update(part.rejected_per_lang)


def _count_merged(stats: RunStats, tally: MergeTally) -> None:
    stats.accepted_records += tally.records
    stats.accepted_extractions += tally.extractions
    stats.accepted_per_lang.update(tally.records_per_lang)
    stats.rejected_records += tally.rejected_records
    stats.rejected_candidates += tally.rejected_candidates
    stats.rejections_per_reason.update(tally.reasons)


