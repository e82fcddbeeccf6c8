"""``--execution ray`` throughput against a slow OpenAI-compatible server: what the actor pool keeps.

Starts ``tests/fake_openai_server.py`` with ``--latency-ms`` and the domain responder, writes
``--items`` sentences, and runs the real Ray engine (:func:`openie4pp.annotate.ray_engine.run_on_ray`)
on a local Ray instance with ``--actors`` actors of ``--concurrency`` items in flight each. Each item
makes two requests one after the other (extract, verify), so the ideal rate is
``actors * concurrency / latency``. Ray's own start (``ray_start_s``) is measured apart from the run;
the run's wall time includes the actors' start and the driver's reading and merging, and
``steady_requests_per_s`` (from the server's timestamps, the first and last tenth left out) is the
pool's rate once it works. :func:`measure` is what ``benchmarks/annotate_throughput.py`` calls.

    python benchmarks/ray_throughput.py [--items 1920] [--actors 2] [--concurrency 64] [--latency-ms 200]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai_server import spawn  # noqa: E402

from openie4pp.annotate.config import AnnotationConfig  # noqa: E402
from openie4pp.annotate.ray_engine import run_on_ray  # noqa: E402

VERBS = ("repairs", "buys", "writes", "paints", "sells", "carries", "cleans", "builds")
OBJECTS = ("old bicycles", "red apples", "short poems", "wooden chairs", "green tea", "heavy boxes")


def write_input(path: Path, items: int) -> None:
    """``items`` distinct English sentences, one triple each for the fake server's responder."""
    with path.open("w", encoding="utf-8") as out:
        for i in range(items):
            text = f"Worker{i} {VERBS[i % len(VERBS)]} {OBJECTS[i % len(OBJECTS)]} in town {i % 97}."
            out.write(json.dumps({"id": f"b{i:06d}", "lang": "en", "text": text}) + "\n")


def measure(base_url: str, model: str, input_path: str | Path, out: str | Path, actors: int,
            concurrency: int, *, batch_size: int = 64) -> dict[str, Any]:
    """One Ray run of ``input_path`` into ``out`` against ``base_url``; its numbers. A local Ray
    instance is started (and stopped) here unless one is running."""
    import ray

    started = not ray.is_initialized()
    ray_start = time.perf_counter()
    if started:
        ray.init(num_cpus=max(os.cpu_count() or 1, actors), include_dashboard=False,
                 logging_level=logging.WARNING)
    ray_start_s = time.perf_counter() - ray_start
    config = AnnotationConfig(
        input={"path": str(input_path)}, out=Path(out),
        backend={"endpoints": [base_url], "model": model, "timeout_s": 60},
        pipeline={"canaries": {"per_lang": 0}, "concurrency": concurrency},
        execution={"kind": "ray", "ray": {"actors": actors, "batch_size": batch_size}})
    wall_start, clock_start = time.perf_counter(), time.time()
    try:
        result = run_on_ray(config, progress=False)
    finally:
        wall, clock_end = time.perf_counter() - wall_start, time.time()
        if started:
            ray.shutdown()
    stats = result.stats
    stamps = request_times(base_url)
    steady = steady_rate(stamps)
    return {
        "benchmark": "ray_throughput", "actors": actors, "concurrency": concurrency, "batch_size": batch_size,
        "items": stats.items, "records": stats.accepted_records, "requests": stats.requests,
        "ray_start_s": round(ray_start_s, 3), "wall_s": round(wall, 3),
        "requests_per_s": round(stats.requests / wall, 1) if wall > 0 else None,
        "steady_requests_per_s": round(steady, 1) if steady else None,
        # until the first request: reading, Ray blocks, actors starting; after the last: merging
        "first_request_after_s": round(stamps[0] - clock_start, 3) if stamps else None,
        "after_last_request_s": round(clock_end - stamps[-1], 3) if stamps else None,
        "complete": stats.complete,
    }


def request_times(base_url: str) -> list[float]:
    """The start times of the requests in the fake server's own log ([] for another server)."""
    admin = base_url.rstrip("/").removesuffix("/v1") + "/admin/log"
    try:
        with urllib.request.urlopen(admin, timeout=10) as response:
            log = json.loads(response.read())
    except (OSError, ValueError):
        return []
    return sorted(float(entry["ts"]) for entry in log if "ts" in entry)


def steady_rate(stamps: list[float], trim: float = 0.1) -> float | None:
    """Requests/s from sorted request start times, the first and last ``trim`` of the run left out
    (ramp-up: actors starting, connections opening; the tail, where fewer items are left than slots).
    Shared with ``annotate_throughput.py``, as is :func:`write_input`."""
    if len(stamps) < 20:
        return None
    lo, hi = int(len(stamps) * trim), int(len(stamps) * (1 - trim))
    span = stamps[hi] - stamps[lo]
    return (hi - lo) / span if span > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1920)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="items in flight per actor")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "in.jsonl", Path(tmp) / "out"
        write_input(source, args.items)
        server = spawn("--responder", "annotate_responder:respond", "--latency-ms", str(args.latency_ms))
        try:
            result = measure(server.base_url, "fake-model", source, out, args.actors, args.concurrency,
                             batch_size=args.batch_size)
        finally:
            server.stop()
    ideal = args.actors * args.concurrency / (args.latency_ms / 1000)
    result.update({"latency_ms": args.latency_ms, "ideal_requests_per_s": round(ideal, 1),
                   "ratio": round(result["requests_per_s"] / ideal, 4) if result["requests_per_s"] else None,
                   "steady_ratio": round(result["steady_requests_per_s"] / ideal, 4)
                   if result["steady_requests_per_s"] else None})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
