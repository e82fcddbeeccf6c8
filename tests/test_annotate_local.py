"""``openie4pp annotate --endpoint local`` end to end: the embedded llama.cpp server with the
default model (Qwen2.5-Coder-1.5B-Instruct, assembled from its part packages and verified against
the official hash), two short sentences in each of English, German and Chinese.

What is asserted: the run finishes with span-constrained decoding negotiated as a llama.cpp
grammar, no candidate is ``ungrounded``, every language gets at least one record, every sentence
ends as a record or a rejection with a reason, every record validates with every element
grounded, and answers are never paid for twice (a rerun, and a fresh folder sharing the cache,
make no request). Takes about two to three minutes on two CPU cores.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import Outcome

from openie4pp.validate import validate_paths

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = {
    "en-1": ("en", "Paris is the capital of France."),
    "en-2": ("en", "The cat sleeps on the sofa."),
    "de-1": ("de", "Berlin ist die Hauptstadt von Deutschland."),
    "de-2": ("de", "Die Katze schläft auf dem Sofa."),
    "zh-1": ("zh", "北京是中国的首都。"),
    "zh-2": ("zh", "猫在沙发上睡觉。"),
}


def _needs_local_stack() -> None:
    if importlib.util.find_spec("llama_cpp") is None:  # it runs in the server process, not here
        pytest.skip("llama-cpp-python not installed: pip install 'openie4pp[local]'")
    from openie4pp.annotate.backends.embedded_models import DEFAULT_MODEL, MODELS, installed

    if not installed(MODELS[DEFAULT_MODEL]):
        pytest.skip(f"the default model {DEFAULT_MODEL} is not installed: pip install 'openie4pp[local]'")


def annotate(source: Path, out: Path, *extra: str) -> tuple[dict[str, Any], float]:
    """Run the CLI in a subprocess (it starts and stops the llama.cpp server itself)."""
    command = [
        sys.executable,
        "-m",
        "openie4pp.app.cli",
        "annotate",
        "--input",
        str(source),
        "--out",
        str(out),
        "--endpoint",
        "local",
        "--concurrency",
        "1",
        "--max-tokens",
        "192",
        "--timeout",
        "120",
        "--no-progress",
        *extra,
    ]
    start = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), elapsed


@pytest.mark.local_llm
@pytest.mark.slow
def test_local_endpoint_annotates_three_languages_end_to_end(tmp_path: Path) -> None:
    _needs_local_stack()
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": k, "lang": lang, "text": text}, ensure_ascii=False) + "\n"
            for k, (lang, text) in SENTENCES.items()
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    stats, first_s = annotate(source, out)

    outcome = Outcome(out)
    counts = Counter(outcome.accounted_ids)
    assert set(counts) == set(SENTENCES) and max(counts.values()) == 1
    for rejection in outcome.rejections:
        assert rejection.reason and rejection.detail.strip()
    summary = validate_paths([out])
    assert summary.ok, summary.problems
    assert summary.ungrounded_elements == 0
    for record in outcome.records:
        assert record.provenance.model and record.provenance.endpoint.startswith("127.0.0.1:")
        for extraction in record.extractions:
            for element in (extraction.predicate, *extraction.arguments):
                assert element.span is not None
    assert stats["items"] == len(SENTENCES)
    assert stats["records"]["accepted"] + stats["records"]["rejected"] == len(SENTENCES)
    assert stats["requests"] >= len(SENTENCES) and stats["failed_requests"] == 0
    assert set(stats["structured_output"]) <= {"json_schema", "json_object", "none"}
    # --constrain auto is spans for the embedded server, negotiated as a GBNF grammar
    assert stats["span_constraint"].get("grammar", 0) >= len(SENTENCES), stats["span_constraint"]
    assert "ungrounded" not in stats["rejections_per_reason"], stats["rejections_per_reason"]
    assert {r.lang for r in outcome.records} == {lang for lang, _ in SENTENCES.values()}, (
        stats["rejections_per_reason"])

    # the same command again: everything is done, no request
    files = [*out.glob("*/shard-*.jsonl"), out / "rejected.jsonl"]
    before = {p: p.read_bytes() for p in files if p.exists()}
    again, again_s = annotate(source, out)
    assert again["requests"] == 0 and again["skipped_already_done"] == len(SENTENCES)
    assert {p: p.read_bytes() for p in before} == before

    # a fresh folder with the same cache: every answer comes from the cache, the outcome is the same
    fresh = tmp_path / "fresh"
    cached, cached_s = annotate(source, fresh, "--cache", str(out / "cache.sqlite"))
    assert cached["requests"] == 0 and cached["cache_hits"] == stats["requests"]
    replay = Outcome(fresh)
    assert sorted(
        (r.sentence.id, r.model_dump_json(include={"extractions"})) for r in replay.records
    ) == sorted((r.sentence.id, r.model_dump_json(include={"extractions"})) for r in outcome.records)
    assert Counter((r.sentence_id, r.reason, r.field) for r in replay.rejections) == Counter(
        (r.sentence_id, r.reason, r.field) for r in outcome.rejections
    )
    print(
        f"\nlocal llama.cpp: first run {first_s:.1f}s ({stats['requests']} requests, p50 "
        f"{stats['latency_s']['p50']:.1f}s, {stats['records']['accepted']} records, rejections "
        f"{stats['rejections_per_reason']}); rerun {again_s:.1f}s; cached replay {cached_s:.1f}s"
    )
