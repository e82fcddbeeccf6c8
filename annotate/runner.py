"""One annotation run from an :class:`~openie4pp.annotate.config.AnnotationConfig`, by the engine it
names (``execution.kind``): ``online`` here (one process, requests sent as the pipeline needs
them), ``batch`` / ``batch-files`` in rounds (:mod:`openie4pp.annotate.batch.execution`), ``ray``
on a cluster (:mod:`openie4pp.annotate.ray_engine`). Every engine writes the same folder.

:func:`run_annotation` prints nothing: the command line (:mod:`openie4pp.app.annotate_command`)
prints its :class:`~openie4pp.annotate.run_result.AnnotationResult`, the quickstart reads it.
"""

from __future__ import annotations

import asyncio
import sys

from .backends.factory import open_backend
from .canaries import Canary
from .config import AnnotationConfig
from .inputs import InputCounts
from .pipeline import Pipeline
from .run_result import AnnotationResult, annotation_result
from .run_setup import open_items, pipeline_config, prepare_run, sigterm_as_interrupt, stop_on_sigterm
from .stats import RunStats

__all__ = ["AnnotationResult", "run_annotation"]


def run_annotation(config: AnnotationConfig, *, progress: bool = True) -> AnnotationResult:
    """Annotate ``config.input`` into ``config.out`` (resuming what an earlier run left there).

    Usage errors (folders, gold files) raise before the first request, as the config's own checks
    do (an endpoint that refuses the model or the key raises at its first request); an interrupt
    (Ctrl-C, SIGTERM) raises ``KeyboardInterrupt`` after the folder is closed as incomplete, so the
    same call continues the run."""
    kind = config.execution.kind
    if kind in ("batch", "batch-files"):
        from .batch.execution import run_in_rounds

        return run_in_rounds(config, progress=progress)
    if kind == "ray":
        from .ray_engine import run_on_ray

        return run_on_ray(config, progress=progress)
    canaries = prepare_run(config)
    if config.input.limit == 0:
        return AnnotationResult(config.out, f"nothing to do: --limit 0; {config.out} is unchanged",
                                RunStats(), None)
    counts = InputCounts()
    with sigterm_as_interrupt():
        pipeline = asyncio.run(_run(config, canaries, counts, progress))
    return annotation_result(config, pipeline.stats, counts, pipeline.canaries.scores,
                             config.pipeline.prices)


async def _run(config: AnnotationConfig, canaries: tuple[Canary, ...], counts: InputCounts,
               progress: bool) -> Pipeline:
    items = open_items(config, counts)
    stop_on_sigterm()
    with open_backend(config) as (backend, name):
        pipeline = Pipeline(backend, config.out, pipeline_config(config, name, canaries))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(desc="annotate", unit="item", file=sys.stderr, dynamic_ncols=True)
        try:
            await pipeline.run(items, bar)
        finally:
            if bar is not None:
                bar.close()
            await backend.aclose()
    return pipeline
