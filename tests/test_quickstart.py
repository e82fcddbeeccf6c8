"""``openie4pp quickstart`` end to end on test doubles, twice: the chain runs, then is reused.

The real run (embedded llama.cpp + MiniLM, about 10 minutes) is CI's README command 1. Here the
same chain runs in seconds: the LLM is the fake OpenAI-compatible server with the domain
responder, the encoder a tiny random BERT, training stops after two steps and each benchmark is
scored on its first sentences. What is asserted is the chain's contract: every step runs and
leaves its artefact, the acceptance table is read from disk, and a second run makes no LLM request
and trains nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_server import FakeServerProcess, spawn

from openie4pp.cli import main
from openie4pp.quickstart import EVAL_BENCHMARKS, LANGUAGES


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServerProcess]:
    srv = spawn("--responder", "annotate_responder:respond")
    yield srv
    srv.stop()


def quickstart(workdir: Path, server: FakeServerProcess, encoder: Path) -> int:
    from test_train_recipe import SMALL_HEAD

    return main([
        "quickstart", "--workdir", str(workdir), "--endpoint", server.base_url, "--model", "fake-model",
        "--encoder", str(encoder), "--limit", "2", "--eval-limit", "4", "--project-canaries", "1",
        "--set", "max_steps=2", "batch_size=8", "data.max_length=48", "progress=false", "moe.rank=4",
        *SMALL_HEAD,
    ])  # fmt: skip


def test_quickstart_runs_every_step_then_reuses_them(
    tmp_path: Path, server: FakeServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_train_data import tiny_encoder

    encoder = tiny_encoder()
    work = tmp_path / "qs"
    server.reset()
    assert quickstart(work, server, encoder) == 0
    first = capsys.readouterr().out
    asked = len(server.requests())
    assert asked > 0

    # the artefacts the summary names
    for folder in ("silver/extract", "silver/project", "gold/oie2016-dev"):
        assert (work / folder / "manifest.json").is_file(), folder
    for stage in (1, 2, 3):
        assert (work / f"model/stage{stage}/model.safetensors").is_file()
    assert (work / "model/stage3/experts").is_dir()
    showcase = (work / "extract/showcase.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["sentence"]["lang"] for line in showcase} == set(LANGUAGES)
    for bench in EVAL_BENCHMARKS:
        assert (work / f"eval/{bench}.png").stat().st_size > 0
        assert f"{bench} " in first.split("quickstart summary")[1]

    # the acceptance table: one row per language, counts that add up with what is on disk
    table = first.split("rejected sentences per reason")[1].split("\n\n")[0]
    rows = {line.split()[0]: line for line in table.strip().splitlines()[1:]}
    assert set(rows) == set(LANGUAGES)
    asked = {lang: int(rows[lang].split()[1]) for lang in LANGUAGES}
    assert asked["en"] == 2 and asked["de"] == 4  # --limit 2 in extract mode, + 2 projected from English
    manifests = [json.loads((work / f"silver/{m}/manifest.json").read_text(encoding="utf-8"))
                 for m in ("extract", "project")]
    records = {lang: int(rows[lang].split()[2]) for lang in LANGUAGES}
    assert sum(records.values()) == sum(m["records"] for m in manifests) > 0
    for lang, row in rows.items():  # every sentence asked ended as a record or one rejection
        reasons = " ".join(row.split()[4:])  # "ungrounded: 2, wrong_language: 1" or "-"
        rejected = sum(int(part.rsplit(": ", 1)[1]) for part in reasons.split(", ") if ": " in part)
        assert records[lang] + rejected == asked[lang], row
    assert "reused" not in first.split("quickstart summary")[1]

    # gold canaries (one per language, the default): scored in the summary, never in the shards
    canaries = first.split("gold canaries, never written to the shards")[1].split("\n\n")[0]
    canary_rows = [line.split() for line in canaries.strip().splitlines()[1:]]
    assert {(row[0], row[1]) for row in canary_rows} == {
        ("extract", lang) for lang in ("en", "de", "zh", "es", "pt")} | {
        ("project", lang) for lang in ("de", "zh", "es", "pt")}
    for mode in ("extract", "project"):
        stats = json.loads((work / f"silver/{mode}/stats.json").read_text(encoding="utf-8"))
        assert all(c["sentences"] == 1 for c in stats["canaries"].values())
        rejected = (work / f"silver/{mode}/rejected.jsonl").read_text(encoding="utf-8")
        assert "canary:" not in rejected
    assert not any("canary:" in r for r in training_ids(work))

    # a second run: every step reused, no LLM request, no training
    weights = work / "model/stage3/model.safetensors"
    mtime = weights.stat().st_mtime_ns
    server.reset()
    assert quickstart(work, server, encoder) == 0
    second = capsys.readouterr().out
    assert server.requests() == []
    assert weights.stat().st_mtime_ns == mtime
    summary = second.split("quickstart summary")[1]
    steps = [line for line in summary.splitlines()[2:] if line.strip() and not line.startswith("benchmark")]
    steps = steps[: steps.index(next(s for s in steps if s.split()[0] in EVAL_BENCHMARKS))]
    assert steps and all(" reused " in line for line in steps), summary
    assert [line for line in summary.splitlines() if line.startswith("carb-test")] == [
        line for line in first.split("quickstart summary")[1].splitlines() if line.startswith("carb-test")
    ]  # the scores are replayed from the first run, not recomputed differently


def training_ids(work: Path) -> list[str]:
    """Every sentence id in the silver shards (what training reads)."""
    from openie4pp.schema import Record
    from openie4pp.shards import iter_records

    return [item.sentence.id for mode in ("extract", "project")
            for item in iter_records(work / "silver" / mode) if isinstance(item, Record)]
