"""``--execution batch`` when runs are stopped, mixed or misused: signals while polling, the folder's
lock, a batch still in flight under another engine, switching between ``batch`` and ``batch-files``,
``--retry-failed`` of given-up lines, canaries and counters equal to an online run's whatever rounds a
fault costs. Each of these was a bug found in review; each test failed before its fix."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import Outcome, annotate_args, write_jsonl
from fake_openai_server import FakeServerProcess
from test_batch_execution import FAST, sentences

from openie4pp.app.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bs(server: FakeServerProcess) -> FakeServerProcess:
    server.set_batch(reset=True, polls=1, rules=[])
    return server


def test_retry_failed_in_batch_mode_retries_a_given_up_line(bs: FakeServerProcess, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A line given up (request_failed) must be asked again by `--retry-failed` once the fault is gone."""
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    out = tmp_path / "out"
    bs.set_batch(rules=[{"fault": "error_lines", "match": "Worker1 "}])
    assert main(annotate_args(bs, source, out, *FAST, "--batch-attempts", "2")) == 0
    assert Outcome(out).by_id()["s001"].reason.value == "request_failed"
    bs.set_batch(reset=True, polls=1, rules=[])  # the provider is fixed
    # same --batch-attempts as the first run (with the default 3 the ledger's 2 leave one more try)
    code = main(annotate_args(bs, source, out, *FAST, "--batch-attempts", "2",
                              "--retry-failed", "request_failed"))
    assert code == 0
    assert bs.batch_log(), "no batch was created: the given-up key is still given up"
    assert not hasattr(Outcome(out).by_id()["s001"], "reason"), "s001 is still rejected after --retry-failed"


def _spawn_polling(bs: FakeServerProcess, source: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    bs.set_batch(polls=10_000)
    command = [sys.executable, "-m", "openie4pp.app.cli", *annotate_args(bs, source, out, *FAST, *extra)]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    deadline = time.monotonic() + 60
    while not bs.batch_log():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # polling now
    return child


def test_sigterm_while_polling_exits_130(bs: FakeServerProcess, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    child = _spawn_polling(bs, source, tmp_path / "out")
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=20)
    assert b"interrupted" in err and b"Traceback" not in err
    assert child.returncode == 130, f"SIGTERM while polling: exit {child.returncode}"


def test_sigint_while_polling_exits_130(bs: FakeServerProcess, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    child = _spawn_polling(bs, source, tmp_path / "out")
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=20)
    assert child.returncode == 130, err.decode()


def test_the_folder_is_locked_while_polling(bs: FakeServerProcess, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A second run on the same --out while the first polls a paid batch must be refused (busy)."""
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    out = tmp_path / "out"
    child = _spawn_polling(bs, source, out)
    try:
        bs.reset()  # online request log
        # an online run on the same folder: it pays again for everything the batch is answering
        code = main(annotate_args(bs, source, out))
        err = capsys.readouterr().err
        online = len(bs.requests())
    finally:
        child.kill()
        child.wait()
    assert code == 2 and "another process" in err, (
        f"online run on a folder whose batch is being polled: exit {code}, {online} online requests sent")


def test_another_engine_refuses_a_folder_whose_batch_is_still_in_flight(
        bs: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A batch run stopped while polling (kill -9): its batch still runs and will be paid. An online
    run on that folder would send every one of its requests again; it is refused, with the way out."""
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    out = tmp_path / "out"
    child = _spawn_polling(bs, source, out)
    child.kill()
    child.wait()
    bs.reset()
    code = main(annotate_args(bs, source, out))
    err = capsys.readouterr().err
    assert code == 2 and "still in flight" in err and "--execution batch" in err
    assert bs.requests() == []
    bs.set_batch(polls=1)
    assert main(annotate_args(bs, source, out, *FAST)) == 0  # the batch run's rerun finishes it
    assert len(Outcome(out).records) == 3


def _summary(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def test_canaries_score_the_same_in_batch_as_online_even_when_a_round_is_lost(
        bs: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Canaries are re-annotated on every pass; CanaryBook.accept appends, so a canary finished
    before the last pass is counted once per later pass."""
    source = write_jsonl(tmp_path / "in.jsonl", sentences(6))
    canaries = ("--canaries", "2")
    assert main(annotate_args(bs, source, tmp_path / "online", *canaries)) == 0
    online = _summary(capsys.readouterr().out)
    bs.set_batch(reset=True, polls=1, rules=[{"fault": "expire", "answered": 2, "times": 1}])
    assert main(annotate_args(bs, source, tmp_path / "batch", *canaries, *FAST)) == 0
    batch = _summary(capsys.readouterr().out)
    assert batch["rounds"] > 2  # the expired batch cost a round
    assert batch["canaries"] == online["canaries"]


@pytest.mark.parametrize("rules", [
    [{"fault": "expire", "answered": 2, "times": 1}],
    [{"fault": "error_lines", "match": "Worker2 ", "times": 1}],
    [{"fault": "drop_lines", "match": "Worker3 ", "times": 1}],
], ids=["expire", "error", "drop"])
def test_batch_summary_counts_match_online(bs: FakeServerProcess, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], rules: Any) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(6))
    extra = ("--canaries", "1")
    assert main(annotate_args(bs, source, tmp_path / "online", *extra)) == 0
    online = _summary(capsys.readouterr().out)
    bs.set_batch(reset=True, polls=1, rules=rules)
    assert main(annotate_args(bs, source, tmp_path / "batch", *extra, *FAST)) == 0
    batch = _summary(capsys.readouterr().out)
    keys = ("requests", "requests_by_purpose", "cache_hits", "reasks", "failed_requests", "tokens", "items",
            "records", "extractions", "candidates", "rejections_per_reason")
    diff = {k: (online[k], batch[k]) for k in keys if online[k] != batch[k]}
    assert diff == {}


def test_switching_batch_to_batch_files_mid_round_is_a_clear_error(
        bs: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    out = tmp_path / "out"
    child = _spawn_polling(bs, source, out)
    child.kill()
    child.wait()
    args = ["annotate", "--input", str(source), "--out", str(out), "--model", "fake-model",
            "--execution", "batch-files", "--no-progress", "--canaries", "0"]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, f"exit {code}: {captured.out}"


def test_switching_batch_files_to_batch_mid_round_is_a_clear_error(
        bs: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    out = tmp_path / "out"
    args = ["annotate", "--input", str(source), "--out", str(out), "--model", "fake-model",
            "--execution", "batch-files", "--no-progress", "--canaries", "0"]
    assert main(args) == 3
    capsys.readouterr()
    code = main(annotate_args(bs, source, out, *FAST))
    captured = capsys.readouterr()
    assert code == 2 and "batch-files" in captured.err, captured.err


def test_a_folder_waiting_for_batch_outputs_is_not_marked_complete(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    out = tmp_path / "out"
    args = ["annotate", "--input", str(source), "--out", str(out), "--model", "fake-model",
            "--execution", "batch-files", "--no-progress", "--canaries", "0"]
    assert main(args) == 3
    manifest = json.loads((out / "manifest.json").read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert manifest["complete"] is False and stats["complete"] is False
    assert not (out / "README.md").exists()  # no dataset card for an unfinished folder
