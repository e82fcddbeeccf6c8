"""``openie4pp quickstart`` end to end on test doubles, twice: the chain runs, then is reused.

The real run (embedded llama.cpp + multilingual-e5-small, about 20 minutes) is CI's README command 1. Here the
same chain runs in seconds: the LLM is the fake OpenAI-compatible server with the domain
responder, the encoder a tiny random BERT, training stops after two steps and each benchmark is
scored on its first sentences. What is asserted is the chain's contract, on the typed
:class:`~openie4pp.app.quickstart.QuickstartResult`: every step runs and leaves its artefact, the
acceptance table is read from disk, and a second run makes no LLM request, trains nothing and
still has every step's numbers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_server import FakeServerProcess, spawn

from openie4pp.app.cli import main
from openie4pp.app.quickstart import QuickstartOptions, QuickstartResult, run_quickstart
from openie4pp.app.quickstart_inputs import LANGUAGES
from openie4pp.app.quickstart_report import format_summary
from openie4pp.benchmarks import REPORTED


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServerProcess]:
    srv = spawn("--responder", "annotate_responder:respond")
    yield srv
    srv.stop()


def options(workdir: Path, server: FakeServerProcess, encoder: Path) -> QuickstartOptions:
    from helpers import SMALL_HEAD

    return QuickstartOptions(
        workdir=workdir, endpoint=server.base_url, model="fake-model", encoder=str(encoder), limit=2,
        eval_limit=4, project_canaries=1,
        set=("max_steps=2", "batch_size=8", "data.max_length=48", "progress=false", "moe.rank=4",
             *SMALL_HEAD),
    )


def test_quickstart_runs_every_step_then_reuses_them(
    tmp_path: Path, server: FakeServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers import tiny_encoder

    encoder = tiny_encoder()
    work = tmp_path / "qs"
    server.reset()
    first = run_quickstart(options(work, server, encoder))
    assert first.ok, first.failure
    assert len(server.requests()) > 0
    assert all(step.status == "ran" for step in first.steps), [(s.name, s.status) for s in first.steps]
    printed = capsys.readouterr().out
    assert "$ openie4pp annotate --input" in printed  # every step shows the command it stands for

    # the artefacts the summary names
    for folder in ("silver/extract", "silver/project", "gold/oie2016-dev"):
        assert (work / folder / "manifest.json").is_file(), folder
    for stage in (1, 2, 3):
        assert (work / f"model/stage{stage}/model.safetensors").is_file()
        assert first.step(f"train stage {stage}").result["steps"] == 2
    assert (work / "model/stage3/experts").is_dir()
    showcase = (work / "extract/showcase.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["sentence"]["lang"] for line in showcase} == set(LANGUAGES)
    assert list(first.scores) == list(REPORTED)
    for bench, score in first.scores.items():
        png = work / f"eval/{bench}.png"
        assert png.stat().st_size > 0 and score.plot == str(png)
        assert 0.0 <= score.f1 <= 1.0
        assert int(score.seen.split("/")[1]) == 4  # --eval-limit 4: what was scored is what is counted
    assert int(first.scores["carb-dev"].seen.split("/")[0]) > 0  # it shares sentences with OIE2016 dev
    assert first.scores["benchie-zh"].auc is None  # BenchIE has no confidence curve

    # the acceptance table: one row per language, counts that add up with what is on disk
    rows = first.acceptance
    assert set(rows) == set(LANGUAGES)
    assert rows["en"].asked == 2 and rows["de"].asked == 4  # --limit 2 in extract mode, + 2 projected
    manifests = [json.loads((work / f"silver/{m}/manifest.json").read_text(encoding="utf-8"))
                 for m in ("extract", "project")]
    assert sum(row.records for row in rows.values()) == sum(m["records"] for m in manifests) > 0
    for lang, row in rows.items():  # every sentence asked ended as a record or one rejection
        assert row.records + sum(row.rejected.values()) == row.asked, (lang, row)
    validated = first.step("validate").result
    assert validated["ok"] and validated["records"] == sum(m["records"] for m in manifests)

    # gold canaries (one per language, the default): scored in the result, never in the shards
    assert {(mode, lang) for mode, scores in first.canaries.items() for lang in scores} == {
        ("extract", lang) for lang in ("en", "de", "zh", "es", "pt")} | {
        ("project", lang) for lang in ("de", "zh", "es", "pt")}
    assert all(score["sentences"] == 1 for scores in first.canaries.values() for score in scores.values())
    for mode in ("extract", "project"):
        rejected = (work / f"silver/{mode}/rejected.jsonl").read_text(encoding="utf-8")
        assert "canary:" not in rejected
    assert not any("canary:" in r for r in training_ids(work))

    # the HTML reports: the silver data of both modes and the model, named in the summary
    assert list(first.reports) == ["silver data (extract mode)", "silver data (project mode)", "model"]
    for path in first.reports.values():
        assert Path(path).parent == work / "reports" and path in format_summary(first)
    model_page = Path(first.reports["model"]).read_text(encoding="utf-8")
    assert all(f"<td>{bench}</td>" in model_page for bench in REPORTED)  # the held-out evaluations
    project_page = Path(first.reports["silver data (project mode)"]).read_text(encoding="utf-8")
    assert 'class="source"' in project_page  # the English sources beside the translations

    # a second run: every step reused, no LLM request, no training, the same numbers
    weights = work / "model/stage3/model.safetensors"
    mtime = weights.stat().st_mtime_ns
    server.reset()
    second = run_quickstart(options(work, server, encoder))
    assert second.ok, second.failure
    assert server.requests() == []
    assert weights.stat().st_mtime_ns == mtime
    assert [s.name for s in second.steps] == [s.name for s in first.steps]
    assert all(step.status == "reused" for step in second.steps)
    assert [s.result for s in second.steps] == [s.result for s in first.steps]  # replayed from the record
    assert second.scores == first.scores and second.canaries == first.canaries
    assert_summary_printed(work, server, encoder, capsys, first)


def assert_summary_printed(work: Path, server: FakeServerProcess, encoder: Path,
                           capsys: pytest.CaptureFixture[str], expected: QuickstartResult) -> None:
    """The command itself (all reused by now): exit 0, and its summary table shows the result."""
    capsys.readouterr()
    chosen = options(work, server, encoder)
    argv = ["quickstart", "--workdir", str(work), "--endpoint", server.base_url, "--model", "fake-model",
            "--encoder", str(encoder), "--limit", "2", "--eval-limit", "4", "--project-canaries", "1",
            "--set", *chosen.set]
    assert main(argv) == 0
    summary = capsys.readouterr().out.split("quickstart summary")[1]
    carb = expected.scores["carb-test"]
    assert any(line.startswith("carb-test") and f"{carb.f1:.3f}" in line for line in summary.splitlines())
    assert "gold canaries, never written to the shards" in summary


def test_a_failed_step_stops_the_chain_with_its_reason(tmp_path: Path) -> None:
    """A step the chain cannot go on from ends it: the result names the step, nothing after it ran."""
    result = run_quickstart(QuickstartOptions(workdir=tmp_path / "qs", endpoint="http://127.0.0.1:9",
                                              limit=1, max_tokens=0))
    assert not result.ok and result.failure and "annotate (extract mode) failed" in result.failure
    assert [(s.name, s.status) for s in result.steps] == [("annotate (extract mode)", "failed")]


def test_the_command_line_defaults_are_the_options_defaults() -> None:
    from openie4pp.app import quickstart_command
    from openie4pp.app.parsing import command_parser

    parsed = command_parser("quickstart", quickstart_command).parse_args([])
    assert quickstart_command.options_from_args(parsed) == QuickstartOptions()


def training_ids(work: Path) -> list[str]:
    """Every sentence id in the silver shards (what training reads)."""
    from openie4pp.schema import Record
    from openie4pp.shards import iter_records

    return [item.sentence.id for mode in ("extract", "project")
            for item in iter_records(work / "silver" / mode) if isinstance(item, Record)]


def test_an_unexpected_error_in_a_step_still_ends_the_chain_with_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the project's own errors: a bug or a torch error in a step is recorded as that
    step's failure, with its type, and the chain stops there (no bare traceback, no lost summary)."""
    from openie4pp.app import quickstart_steps

    def broken(args: object) -> dict[str, object]:
        raise RuntimeError("CUDA out of memory")

    module, _ = quickstart_steps.STEPS["annotate"]
    monkeypatch.setitem(quickstart_steps.STEPS, "annotate", (module, broken))
    result = run_quickstart(QuickstartOptions(workdir=tmp_path / "qs", endpoint="http://127.0.0.1:9",
                                              model="m"))
    assert not result.ok and result.failure is not None
    assert "annotate (extract mode) failed: RuntimeError: CUDA out of memory" in result.failure
    assert [(s.name, s.status) for s in result.steps] == [("annotate (extract mode)", "failed")]


def test_a_record_of_the_previous_version_resumes_instead_of_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``quickstart.json`` written before steps kept their results has the same signature but no
    result: the step runs again as itself (``resume=true``), not as a changed one (``overwrite``)."""
    from openie4pp.app import quickstart, quickstart_steps

    seen: list[list[str]] = []

    def train(args: object) -> dict[str, object]:
        seen.append(list(args.overrides))
        return {"steps": 1}

    module, _ = quickstart_steps.STEPS["train"]
    monkeypatch.setitem(quickstart_steps.STEPS, "train", (module, train))
    chain = quickstart.Quickstart(QuickstartOptions(workdir=tmp_path))
    argv = ["train", "--stage", "1", f"run_dir={tmp_path}", "resume=true"]
    changed = [a if a != "resume=true" else "overwrite=true" for a in argv]
    chain.state["train stage 1"] = {"signature": quickstart._signature(argv, []), "stdout": ""}
    assert chain.step("train stage 1", argv, [], [], tmp_path, changed_argv=changed) == {"steps": 1}
    chain.state["train stage 1"] = {"signature": "other options", "result": {"steps": 1}}
    chain.step("train stage 1", argv, [], [], tmp_path, changed_argv=changed)
    assert seen == [[f"run_dir={tmp_path}", "resume=true"], [f"run_dir={tmp_path}", "overwrite=true"]]
