"""What every way of running an annotation (online, batch rounds, Ray) does before its first request:
check the folders on disk and the canaries' gold files, open the input, and build the pipeline's
config from the run's. One place, so that the three engines refuse the same mistakes in the same
words and read the same items."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
from collections.abc import Iterator

from openie4pp.errors import UsageError
from openie4pp.paths import benchmarks_dir
from openie4pp.shards import check_not_busy

from .annotator import PipelineConfig
from .batch.state import unfinished_rounds
from .canaries import Canary, load_canaries
from .config import AnnotationConfig
from .inputs import InputCounts, InputProblem, WorkItem, read_inputs
from .stage2 import VerifyPolicy
from .stats import Prices

log = logging.getLogger(__name__)


def prepare_run(config: AnnotationConfig) -> tuple[Canary, ...]:
    """The checks a run makes before it starts anything; the canaries it plants."""
    canaries = resolve_canaries(config)
    check_folders(config)
    if config.execution.kind not in ("batch", "batch-files"):
        check_no_batch_in_flight(config)
    if config.execution.kind != "ray" and (config.out / "ray").is_dir():
        # its finished batches are not merged yet: another engine would annotate (and pay) them again
        raise UsageError(f"--out {config.out}: holds an unfinished Ray run ({config.out / 'ray'}); rerun "
                         "with --execution ray to finish it")
    return canaries


def check_no_batch_in_flight(config: AnnotationConfig) -> None:
    """A batch run stopped while its batches ran: they will be answered (and billed) anyway, so
    another engine must not send the same requests again; the batch run's rerun collects them."""
    in_flight = unfinished_rounds(config.out / "batches")
    if in_flight:
        raise UsageError(f"--out {config.out}: batch round {in_flight[0].name} is still in flight (a stopped "
                         f"--execution batch run); rerun that command to finish it, or remove "
                         f"{config.out / 'batches'} to abandon it (its batches may still be billed)")


def open_items(config: AnnotationConfig, counts: InputCounts) -> Iterator[WorkItem | InputProblem]:
    """The run's input as items and input problems, read lazily (``counts`` fills as it is read)."""
    source = config.input
    items = read_inputs(source.path, fmt=source.format, lang=source.lang, shard=source.shard_range,
                        limit=source.limit, limits=source.limits, counts=counts)
    if config.pipeline.mode == "project":
        items = check_project_input(items, source.path)
    return items


def pipeline_config(config: AnnotationConfig, endpoint_name: str,
                    canaries: tuple[Canary, ...] = (), *, price_factor: float = 1.0) -> PipelineConfig:
    """The pipeline's part of ``config``, with what only the run knows: the endpoint's display name,
    the loaded canaries, and what its requests cost as a share of the online prices (a batch API's
    discount). The manifest records the whole config."""
    settings = config.pipeline
    constrain = settings.constrain
    assert constrain != "auto"  # resolved when the config was built
    return PipelineConfig(
        mode=settings.mode,
        target_langs=tuple(settings.target_langs),
        concurrency=settings.concurrency,
        verify=settings.verify,
        endpoint_name=endpoint_name,
        policy=VerifyPolicy("reject" if settings.strict_verdicts else "accept"),
        max_tokens=settings.max_tokens,
        prices=Prices(settings.price_in * price_factor, settings.price_out * price_factor),
        build_config=config.manifest_config(),
        retry_failed=frozenset(settings.retry_failed),
        constrain=constrain,
        canaries=canaries,
    )


def resolve_canaries(config: AnnotationConfig) -> tuple[Canary, ...]:
    """The run's canaries, loaded before the first request (a missing gold file is a usage error).

    With ``auto`` and no benchmark folder (or a gold file missing from it) the run goes on without
    canaries and says so in one warning: a user who did not ask for them can annotate."""
    per_lang = config.canaries_per_lang
    if per_lang == 0:
        return ()
    try:
        benchmarks_dir()
        return tuple(load_canaries(per_lang, config.langs_with_canaries, config.pipeline.mode))
    except UsageError as error:
        if config.pipeline.canaries.per_lang != "auto":
            raise
        log.warning("no gold canaries in this run (--canaries auto): %s", error)
        return ()


def check_folders(config: AnnotationConfig) -> None:
    """The output folder must be writable and apart from the input: an input inside ``--out`` would
    read the shard being appended to and feed back forever (20 inputs became 17,398 records)."""
    out, source, cache = config.out, config.input.local_path, config.cache.path
    resolved = out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    for parent in resolved.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"--out {out}: {parent} is not a folder")
            if not os.access(parent, os.W_OK | os.X_OK) and not out.exists():
                raise UsageError(f"--out {out}: cannot create it, {parent} is not writable")
            break
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder is not writable")
    if out.is_dir():
        check_not_busy(out)  # before a model server starts or weights load, not minutes later
    if source is not None:
        inside = source.resolve()
        if inside == resolved or resolved in inside.parents:
            raise UsageError(f"--input {source} lies inside the output folder {out}: it would read what "
                             "it writes; choose another --out")
        if inside in resolved.parents:
            raise UsageError(f"--out {out} lies inside the input folder {source}: choose another --out")
    if cache is not None and cache.exists():
        if not cache.is_file():
            raise UsageError(f"--cache {cache}: not a file")
        with open(cache, "rb") as handle:
            head = handle.read(16)
        if head and head != b"SQLite format 3\x00":
            raise UsageError(f"--cache {cache}: not an SQLite response cache")


PEEK = 100
"""Readable items looked at before the first request in ``project`` mode: if none of them has known
triples, the input is extract-mode data given to project mode, a configuration mistake."""


def check_project_input(items: Iterator[WorkItem | InputProblem],
                        source: str) -> Iterator[WorkItem | InputProblem]:
    """``items`` unchanged, after refusing an input whose first :data:`PEEK` sentences have no triples."""
    head = list(itertools.islice(items, PEEK * 2))
    readable = [item for item in head if isinstance(item, WorkItem)][:PEEK]
    if readable and not any(item.triples for item in readable):
        raise UsageError(f"--input {source}: --mode project needs English sentences with their known "
                         "triples (\"triples\": [[subject, relation, object], ...]); none of the first "
                         f"{len(readable)} has any (use --mode extract, or a converted gold/records folder)")
    return itertools.chain(head, items)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Around ``asyncio.run``: SIGTERM (see :func:`stop_on_sigterm`) ends as ``KeyboardInterrupt``,
    and the handler that was there before is back afterwards (the loop's is gone with the loop)."""
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        yield
    except asyncio.CancelledError:  # SIGTERM
        raise KeyboardInterrupt from None
    finally:
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, on_sigterm)


def stop_on_sigterm() -> None:
    """SIGTERM stops the run like Ctrl-C does: the main task is cancelled, tasks in flight are
    cancelled, the folder is closed as incomplete, and the rerun continues. Call it in the main task."""
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, main_task.cancel)


@contextlib.contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM raises ``KeyboardInterrupt`` where no event loop is there to cancel (a batch run
    polling, a Ray driver waiting for its actors): what is on disk is kept, the CLI exits 130, and
    the rerun resumes. Outside the main thread signals are left to whoever owns them."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
