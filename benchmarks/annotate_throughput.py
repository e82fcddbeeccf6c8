"""Annotation throughput against a slow OpenAI-compatible server: does the client keep it busy?

Starts ``tests/fake_openai_server.py`` in a subprocess with ``--latency-ms`` (every answer takes
that long, like a remote LLM) and the domain responder ``tests/annotate_responder.py``, then runs
the real pipeline (``CachedBackend(OpenAICompatBackend)``, stage 1 + grounding + the judge) with
``--concurrency`` items in flight. Each item makes two requests one after the other (extract,
verify), so at most ``concurrency`` requests are in flight and the ideal rate is
``concurrency / latency`` (64 / 0.2 s = 320 requests/s). With ``--items`` a multiple of
``--concurrency`` the ideal wall time is exactly ``items * 2 * latency / concurrency``.

The run starts in lockstep (64 items ask at once, and all their answers come back at once, so
the client works through bursts); the phases drift apart within seconds, as they would anyway
with a real server's varying latency. The default 1920 items (12 s ideal) keep that start-up
small next to the whole; ``steady_ratio`` leaves it out altogether.

Prints one JSON object: achieved and ideal requests/s, their ratio (overall, and in the steady
middle of the run from the server's own timestamps), the client's CPU seconds per request
(``time.process_time`` of this process, all threads) and the server's, so that a low ratio can
be blamed on the right process. ``--profile`` also prints the client's top functions (cProfile)
to stderr. ``--ray-actors 2`` (the default; 0 skips it) then runs the same items through
``--execution ray`` with two actors against a fresh server of the same latency, the same requests in
flight in all (``--concurrency`` split between the actors): its ``ratio`` is against the same ideal.

Where the whole run loses to the ideal (``losses_s``, seconds of wall time, from the server's
arrival stamps and this process's clock, the same machine's): ``before_first_request`` (the
pipeline opening its folder and reading its first items), ``after_last_request`` less one latency
(the last answer's processing and closing the folder), and ``in_between``, the rest: answers that
took longer than the latency (the server, the loopback, the client's event loop busy with other
answers) and slots left empty (in the lockstep start, and at the end, where the items in flight
finish at different times and nothing is left to start: a real run pays that once too).

    python benchmarks/annotate_throughput.py [--items 1920] [--concurrency 64] [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from fake_openai_server import FakeServerProcess, spawn  # noqa: E402
from ray_throughput import steady_rate, write_input  # noqa: E402

from openie4pp.annotate.backends import CachedBackend, OpenAICompatBackend  # noqa: E402
from openie4pp.annotate.inputs import read_inputs  # noqa: E402
from openie4pp.annotate.pipeline import Pipeline, PipelineConfig  # noqa: E402


def server_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux ``/proc``), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_pipeline(server: FakeServerProcess, out: Path, args: argparse.Namespace) -> Pipeline:
    """The backend stack of ``openie4pp annotate --endpoint URL`` and the pipeline (one-time setup)."""
    inner = OpenAICompatBackend([server.base_url], "fake-model", timeout_s=30, max_in_flight=args.concurrency,
                                http_client=args.http_client)
    config = PipelineConfig(concurrency=args.concurrency, verify=not args.no_verify)
    return Pipeline(CachedBackend(inner, out / "cache.sqlite"), out, config)


async def run_pipeline(pipeline: Pipeline, source: Path) -> Any:
    try:
        return await pipeline.run(read_inputs(str(source)))
    finally:
        await pipeline.backend.aclose()


async def bare_client_ratio(server: FakeServerProcess, requests: int, concurrency: int,
                            latency_s: float) -> float:
    """The machine's ceiling: a bare aiohttp loop (no pipeline, no parsing, no cache) posting a
    real extract-prompt body, ``concurrency`` in flight, against the same server. On a small
    machine the server, the loopback and the scheduler already cost a few percent of the ideal;
    ``ratio / bare_client_ratio`` is what the pipeline itself keeps of what is attainable."""
    import aiohttp

    from openie4pp.annotate.prompts import load_prompt

    request = load_prompt("extract").request("en", sentence="Worker1 repairs old bicycles in town 1.")
    body = json.dumps({"model": "fake-model", "messages": [m.as_dict() for m in request.messages],
                       "response_format": {"type": "json_schema", "json_schema": {
                           "name": "extraction", "schema": request.schema}}}).encode()
    limit = asyncio.Semaphore(concurrency)
    url = server.base_url + "/chat/completions"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            async with limit, session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(requests)))
        wall = time.perf_counter() - start
    return requests / wall / (concurrency / latency_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1920)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--no-verify", action="store_true", help="one request per item instead of two")
    parser.add_argument("--profile", action="store_true", help="cProfile the client; top functions to stderr")
    parser.add_argument("--http-client", choices=["auto", "aiohttp", "openai"], default="auto")
    parser.add_argument("--profile-dump", metavar="FILE", help="with --profile: also save the pstats to FILE")
    parser.add_argument("--ray-actors", type=int, default=2,
                        help="also run --execution ray with this many actors against the same latency "
                        "server, --concurrency split between them (0: skip; needs the [ray] extra)")
    args = parser.parse_args()

    # one-time costs a long run amortises stay out of the measurement: the prompt files, and the
    # dataset-card code (``datasets``, ~1.5 s to import) that the shard writer needs when it closes
    import openie4pp.hf  # noqa: F401
    from openie4pp.annotate.prompts import load_prompt

    for prompt_id in ("extract", "verify"):
        load_prompt(prompt_id)

    per_item = 1 if args.no_verify else 2
    latency_s = args.latency_ms / 1000
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "in.jsonl", Path(tmp) / "out"
        write_input(source, args.items)
        server = spawn("--responder", "annotate_responder:respond", "--latency-ms", str(args.latency_ms))
        try:
            bare = asyncio.run(bare_client_ratio(server, args.items * per_item, args.concurrency, latency_s))
            server.reset()
            pipeline = make_pipeline(server, out, args)
            server_cpu_before = server_cpu_s(server.proc.pid)
            profiler = cProfile.Profile() if args.profile else None
            cpu_before, wall_before, clock_before = time.process_time(), time.perf_counter(), time.time()
            if profiler is not None:
                profiler.enable()
            stats = asyncio.run(run_pipeline(pipeline, source))
            if profiler is not None:
                profiler.disable()
            wall = time.perf_counter() - wall_before
            clock_after = time.time()
            cpu = time.process_time() - cpu_before
            server_cpu_after = server_cpu_s(server.proc.pid)
            log = server.requests()
            max_in_flight = server.stats()["max_in_flight"]
        finally:
            server.stop()

    requests = len(log)
    ideal_rate = args.concurrency / latency_s
    ideal_wall = args.items * per_item * latency_s / args.concurrency
    steady = steady_rate(sorted(float(e["ts"]) for e in log))
    server_cpu = (
        server_cpu_after - server_cpu_before
        if server_cpu_before is not None and server_cpu_after is not None
        else None
    )
    stamps = [float(e["ts"]) for e in log]
    before_first = min(stamps) - clock_before if stamps else None
    after_last = clock_after - max(stamps) - latency_s if stamps else None
    losses = None
    if before_first is not None and after_last is not None:
        losses = {"before_first_request": round(before_first, 3),
                  "after_last_request": round(after_last, 3),
                  "in_between": round(wall - ideal_wall - before_first - after_last, 3)}
    result = {
        "benchmark": "annotate_throughput",
        "items": args.items,
        "requests": requests,
        "requests_per_item": per_item,
        "concurrency": args.concurrency,
        "latency_ms": args.latency_ms,
        "wall_s": round(wall, 3),
        "ideal_wall_s": round(ideal_wall, 3),
        "requests_per_s": round(requests / wall, 1),
        "ideal_requests_per_s": round(ideal_rate, 1),
        "ratio": round(requests / wall / ideal_rate, 4),
        "bare_client_ratio": round(bare, 4),
        "ratio_vs_bare_client": round(requests / wall / ideal_rate / bare, 4),
        "steady_requests_per_s": round(steady, 1) if steady else None,
        "steady_ratio": round(steady / ideal_rate, 4) if steady else None,
        "losses_s": losses,
        "client_cpu_ms_per_request": round(1000 * cpu / max(1, requests), 3),
        "client_cpu_utilisation": round(cpu / wall, 3),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(1, requests), 3) if server_cpu else None,
        "server_max_in_flight": max_in_flight,
        "request_latency_ms": {
            q: round(1000 * (stats.latency(v) or 0), 1) for q, v in (("p50", 0.5), ("p95", 0.95))
        },
        "records": stats.accepted_records,
        "rejected": stats.rejected_records,
        "cpu_count": os.cpu_count(),
        "http_client": pipeline.backend.inner.http_client,
    }
    if args.ray_actors:
        result["ray"] = ray_throughput(args, ideal_rate)
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        print(text.getvalue(), file=sys.stderr)
        if args.profile_dump:
            profiler.dump_stats(args.profile_dump)
    print(json.dumps(result))


def ray_throughput(args: argparse.Namespace, ideal_rate: float) -> dict[str, Any]:
    """The same items through ``--execution ray`` (``benchmarks/ray_throughput.py``) against a fresh
    server of the same latency, the same requests in flight in all: its rate against the same ideal."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"skipped": "ray is not installed (pip install 'openie4pp[ray]')"}
    from ray_throughput import measure

    per_actor = max(1, args.concurrency // args.ray_actors)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.jsonl"
        write_input(source, args.items)
        server = spawn("--responder", "annotate_responder:respond", "--latency-ms", str(args.latency_ms))
        try:
            numbers = measure(server.base_url, "fake-model", source, Path(tmp) / "out", args.ray_actors,
                              per_actor, batch_size=4 * per_actor)
        finally:
            server.stop()
    rate, steady = numbers.get("requests_per_s"), numbers.get("steady_requests_per_s")
    numbers["ratio"] = round(rate / ideal_rate, 4) if rate else None
    numbers["steady_ratio"] = round(steady / ideal_rate, 4) if steady else None
    return numbers


if __name__ == "__main__":
    main()
