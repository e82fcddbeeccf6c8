"""``openie4pp annotate``: the command line's flags mapped onto an
:class:`~openie4pp.annotate.config.AnnotationConfig`, the run, its summary printed.

Nothing of the annotator is imported at module level: building the whole parser (``openie4pp
validate --help``) must not load the pipeline. The defaults shown in ``--help`` are the config's
(``tests/test_annotate_config.py`` holds the two to each other).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from openie4pp.errors import EXIT_OK, EXIT_WAITING, RunProblems

if TYPE_CHECKING:
    from openie4pp.annotate.config import AnnotationConfig

TRANSIENT_HELP = "llm_invalid_output,request_failed"
"""What a bare ``--retry-failed`` retries (:data:`openie4pp.annotate.stats.TRANSIENT_REASONS`)."""

_ALONE = object()
"""``--retry-failed`` given without reasons."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input", required=True, help="JSONL, TXT, Parquet, a records folder, or hf:NAME[:split]"
    )
    parser.add_argument(
        "--input-format", default="auto", choices=["auto", "jsonl", "records", "txt", "parquet", "hf"],
        help="how to read --input (auto: by its suffix: .jsonl/.json/.ndjson, .txt, .parquet; a folder is "
        "records; hf:NAME is a datasets dataset; a pipe is JSON Lines; another suffix is refused)",
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
        const=_ALONE,
        metavar="REASONS",
        help="annotate again the items an earlier run rejected for these reasons (comma-separated; "
        f"alone: {TRANSIENT_HELP})",
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
        "the shards; auto: 10 for a remote endpoint, 0 for --endpoint local (each "
        "costs seconds on a CPU)",
    )
    parser.add_argument(
        "--canary-langs", metavar="LANGS",
        help="languages that get canaries (comma-separated; default: en,es,pt,zh,de, in project mode "
        "the target languages among de,zh,es,pt)",
    )
    parser.add_argument("--cache", help="response cache file (default: OUT/cache.sqlite)")
    parser.add_argument("--max-tokens", type=int, default=512, help="completion tokens per request")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (> 0)")
    parser.add_argument("--max-sentence-chars", type=int, default=5000,
                        help="longer sentences are rejected as too_long (they would be billed whole)")
    parser.add_argument("--max-sentence-words", type=int, default=400,
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
    parser.add_argument(
        "--execution", default="online", choices=["online", "batch", "batch-files", "ray"],
        help="online: requests sent as the pipeline needs them; batch: in rounds through the endpoint's "
        "Batch API (OpenAI's: half price, 24 h window); batch-files: the rounds' batch files are written "
        "for a runner elsewhere (vllm run-batch) and their outputs read back on the rerun; ray: an actor "
        "pool on a Ray cluster ([ray] extra)",
    )
    parser.add_argument("--batch-poll-s", type=float, default=30.0,
                        help="--execution batch: first wait between looks at a batch (doubles up to 600 s)")
    parser.add_argument("--batch-attempts", type=int, default=3,
                        help="--execution batch: a request whose batch line failed this often is given up")
    parser.add_argument("--batch-price-factor", type=float, default=0.5,
                        help="--execution batch: batch prices as a share of --price-in/--price-out")
    parser.add_argument("--ray-address", help="--execution ray: a running cluster (auto, ray://HOST:10001); "
                        "default: a local instance")
    parser.add_argument("--ray-actors", type=int, default=2, help="--execution ray: annotating actors")
    parser.add_argument("--ray-gpus-per-actor", type=float, default=0.0,
                        help="--execution ray: GPUs per actor (--backend vllm needs one)")
    parser.add_argument("--ray-batch-size", type=int, default=64,
                        help="--execution ray: items per block an actor annotates at once (best at 4x "
                        "--concurrency or more: an actor runs one block at a time)")
    parser.add_argument(
        "--dry-run", action="store_true",
        help="send nothing: count items and requests, render the prompts, count their tokens and print "
        "requests, input/output tokens and cost per stage, online and batch",
    )
    parser.add_argument(
        "--license", default="unknown", metavar="HUB_ID",
        help="the data's licence, written into the manifest and the dataset card's license: (a Hugging "
        "Face Hub id such as cc-by-4.0 or mit; SPDX spellings are accepted; other: give --license-name "
        "and --license-link); it should follow from the sentences' licences and the model's terms",
    )
    parser.add_argument("--license-name", help="--license other: the licence's short name (lowercase, -)")
    parser.add_argument("--license-link", help="--license other: a link to the licence's text")
    parser.add_argument("--tokenizer", help="--dry-run: the model's tokenizer (tokenizer.json, a tokenizer "
                        "folder, or a GGUF); default: the embedded model's, else an estimate")


def config_from_args(args: argparse.Namespace) -> AnnotationConfig:
    """The parsed command line as a config; every check is the config's (a :class:`UsageError`
    naming the option)."""
    from openie4pp.annotate.config import AnnotationConfig
    from openie4pp.annotate.stats import TRANSIENT_REASONS

    retry: Any = args.retry_failed
    if retry is _ALONE:
        retry = sorted(TRANSIENT_REASONS)
    return AnnotationConfig(
        input={"path": args.input, "format": args.input_format, "lang": args.lang, "shard": args.shard,
               "limit": args.limit, "max_sentence_chars": args.max_sentence_chars,
               "max_sentence_words": args.max_sentence_words},
        out=args.out,
        backend={"kind": args.backend, "endpoints": list(args.endpoint), "model": args.model,
                 "api_key_env": args.api_key_env, "timeout_s": args.timeout, "http_client": args.http_client,
                 "breaker": {"after_s": args.breaker_after_s, "after_requests": args.breaker_after_requests},
                 "max_rpm": args.max_rpm, "max_tpm": args.max_tpm, "tokenizer": args.tokenizer},
        cache={"path": args.cache},
        pipeline={"mode": args.mode, "target_langs": args.target_lang, "verify": not args.no_verify,
                  "strict_verdicts": args.strict_verdicts, "max_tokens": args.max_tokens,
                  "price_in": args.price_in, "price_out": args.price_out,
                  "retry_failed": [] if retry is None else retry, "constrain": args.constrain,
                  "canaries": {"per_lang": args.canaries, "langs": args.canary_langs},
                  "concurrency": args.concurrency},
        execution={"kind": args.execution,
                   "batch": {"poll_s": args.batch_poll_s, "max_line_attempts": args.batch_attempts,
                             "price_factor": args.batch_price_factor},
                   "ray": {"address": args.ray_address, "actors": args.ray_actors,
                           "gpus_per_actor": args.ray_gpus_per_actor, "batch_size": args.ray_batch_size}},
        card={"license": args.license, "license_name": args.license_name, "license_link": args.license_link,
              "command": getattr(args, "command_line", None)},  # absent when not run from the CLI
    )


def main(args: argparse.Namespace) -> int:
    """Exit status: 0 when the run finished and the folder holds records for this input; 1 when it
    found problems (no input, nothing accepted); 3 when ``--execution batch-files`` waits for the
    outputs of the batch files it wrote; errors raise (see the CLI)."""
    config = config_from_args(args)
    if args.dry_run:
        from openie4pp.annotate.dry_run import estimate_annotation

        estimate = estimate_annotation(config)
        print(estimate.table())
        print(json.dumps(estimate.as_dict(), ensure_ascii=False))
        return EXIT_OK
    from openie4pp.annotate.runner import run_annotation

    result = run_annotation(config, progress=not args.no_progress)
    print(result.line)
    if result.waiting:
        return EXIT_WAITING
    if result.summary is None:
        return EXIT_OK
    print(json.dumps(result.summary, ensure_ascii=False))
    if result.problem is not None:
        raise RunProblems(result.problem)
    return EXIT_OK
