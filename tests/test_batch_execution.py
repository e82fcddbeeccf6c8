"""``annotate --execution batch`` / ``batch-files`` end to end: the rounds over the pipeline, against
the fake Batch API of ``tests/fake_openai_server.py`` (a real HTTP server, the same responder as the
online tests), with the faults the issue names injected.

What every test holds to: each input id ends exactly once, in a shard or in ``rejected.jsonl``; a
request whose answer reached the cache is never sent again (in no later batch, by no rerun); the
records are the ones an online run writes for the same input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import annotate_responder
from annotate_responder import Outcome, annotate_args, write_jsonl
from fake_openai_server import FakeServerProcess

from openie4pp.annotate.config import AnnotationConfig
from openie4pp.app.cli import main
from openie4pp.errors import EXIT_WAITING, UsageError

ROOT = Path(__file__).resolve().parents[1]
FAST = ("--execution", "batch", "--batch-poll-s", "0.01")


def sentences(count: int) -> list[dict[str, str]]:
    verbs = ("repairs", "buys", "writes", "paints", "sells")
    objects = ("old bicycles", "red apples", "short poems", "wooden chairs", "green tea")
    return [{"id": f"s{i:03d}", "lang": "en", "text": f"Worker{i} {verbs[i % 5]} {objects[i % 5]}."}
            for i in range(count)]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def summary(stdout: str) -> dict[str, Any]:
    return json.loads(stdout.strip().splitlines()[-1])


def extractions(out: Path) -> dict[str, list[str]]:
    """id -> its extractions as text, what an online and a batch run must agree on."""
    return {r.sentence.id: sorted(str(e.model_dump(include={"predicate", "arguments"}))
                                  for e in r.extractions)
            for r in Outcome(out).records}


def paid_ids(server: FakeServerProcess) -> Counter[str]:
    """custom_id -> how many batches answered it with a 200 (each of those was paid for)."""
    return Counter(cid for batch in server.batch_log() for cid in batch.get("answered") or [])


def sent_ids(server: FakeServerProcess) -> Counter[str]:
    return Counter(cid for batch in server.batch_log() for cid in batch["custom_ids"])


def assert_exactly_once(out: Path, ids: list[str]) -> None:
    done = Outcome(out)
    assert Counter(done.accounted_ids) == Counter(ids)


@pytest.fixture
def batch_server(server: FakeServerProcess) -> FakeServerProcess:
    server.set_batch(reset=True, polls=1, rules=[])
    return server


def test_a_batch_run_writes_what_an_online_run_writes_at_batch_prices(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = sentences(8)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    prices = ("--price-in", "2", "--price-out", "4")
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "online", *prices), capsys)
    assert code == 0
    online = summary(stdout)
    batch_server.reset()
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "batch", *prices, *FAST), capsys)
    assert code == 0, stdout
    batch = summary(stdout)
    assert extractions(tmp_path / "batch") == extractions(tmp_path / "online") != {}
    assert_exactly_once(tmp_path / "batch", [r["id"] for r in rows])
    assert batch_server.requests() == []  # no online request: everything went through batches
    assert batch["requests"] == online["requests"] == sum(paid_ids(batch_server).values())
    assert batch["requests_by_purpose"] == online["requests_by_purpose"]
    assert batch["tokens"] == online["tokens"]
    assert batch["cost_usd"] == pytest.approx(online["cost_usd"] / 2, rel=1e-6)
    assert batch["complete"] and batch["execution"] == "batch" and batch["rounds"] == 2  # extract, judge
    assert max(paid_ids(batch_server).values()) == 1
    manifest = json.loads((tmp_path / "batch" / "manifest.json").read_text())
    assert manifest["complete"] is True
    # a rerun makes no request and creates no batch
    before = len(batch_server.batch_log())
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "batch", *prices, *FAST), capsys)
    assert code == 0 and summary(stdout)["requests"] == 0
    assert len(batch_server.batch_log()) == before


def test_project_mode_goes_through_translate_project_and_judge_rounds(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"id": f"p{i}", "lang": "en", "text": text, "triples": triples}
            for i, (text, triples) in enumerate([
                ("The cat sleeps on the sofa.", [["The cat", "sleeps", "on the sofa"]]),
                ("The baker sells fresh bread.", [["The baker", "sells", "fresh bread"]])])]
    source = write_jsonl(tmp_path / "en.jsonl", rows)
    args = annotate_args(batch_server, source, tmp_path / "out", "--mode", "project",
                         "--target-lang", "de,es", *FAST)
    code, stdout, _ = run(args, capsys)
    assert code == 0, stdout
    assert summary(stdout)["rounds"] == 3
    assert_exactly_once(tmp_path / "out", [f"{r['id']}.{lang}" for r in rows for lang in ("de", "es")])
    assert max(paid_ids(batch_server).values()) == 1


@pytest.mark.parametrize("fault", [
    {"fault": "error_lines", "match": "Worker2 ", "times": 1},
    {"fault": "drop_lines", "match": "Worker3 ", "times": 1},
    {"fault": "expire", "answered": 2, "times": 1},
    {"fault": "cancel", "answered": 1, "times": 1},
], ids=["failed-line", "missing-lines", "expired", "cancelled"])
def test_faulty_batches_lose_nothing_and_pay_nothing_twice(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fault: dict[str, Any]) -> None:
    rows = sentences(6)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    batch_server.set_batch(rules=[fault])
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "out", *FAST), capsys)
    assert code == 0, stdout
    assert_exactly_once(tmp_path / "out", [r["id"] for r in rows])
    assert len(Outcome(tmp_path / "out").records) == len(rows)  # the fault cost a round, not an item
    paid, sent = paid_ids(batch_server), sent_ids(batch_server)
    assert max(paid.values()) == 1
    assert any(n > 1 for n in sent.values())  # what the fault lost was sent again...
    assert all(paid[cid] == 1 for cid in sent)  # ...until it was answered, once
    assert summary(stdout)["rounds"] > 2


def test_a_line_that_keeps_failing_rejects_its_item_once(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = sentences(4)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    batch_server.set_batch(rules=[{"fault": "error_lines", "match": "Worker1 "}])
    args = annotate_args(batch_server, source, tmp_path / "out", *FAST, "--batch-attempts", "2")
    code, stdout, _ = run(args, capsys)
    assert code == 0, stdout
    assert_exactly_once(tmp_path / "out", [r["id"] for r in rows])
    rejected = Outcome(tmp_path / "out").by_id()["s001"]
    assert rejected.reason.value == "request_failed" and "batch" in rejected.detail
    assert sent_ids(batch_server).most_common(1)[0][1] == 2  # two attempts, then given up


def test_an_invalid_answer_is_re_asked_and_never_bought_again(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The pipeline forgets an answer that fails validation; a batch run must still replay it on the
    next pass (else it would buy it again every round) and drop it only when the run ends."""
    rows = sentences(3)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    batch_server.set_script([{"match": "Worker1 ", "times": 1, "fault": {"truncate": True}}])
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "out", *FAST), capsys)
    assert code == 0, stdout
    assert summary(stdout)["reasks"] == 1
    assert max(sent_ids(batch_server).values()) == 1
    assert len(Outcome(tmp_path / "out").records) == 3


def test_a_crash_between_upload_and_create_resumes_without_a_second_batch(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from openie4pp.annotate.batch import transport

    rows = sentences(5)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    real_create = transport.OpenAIBatchTransport.create

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # the process ends here: after the upload, before the batch exists

    monkeypatch.setattr(transport.OpenAIBatchTransport, "create", crash)
    code, _, _ = run(annotate_args(batch_server, source, tmp_path / "out", *FAST), capsys)
    assert code == 130 and batch_server.batch_log() == []
    monkeypatch.setattr(transport.OpenAIBatchTransport, "create", real_create)
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "out", *FAST), capsys)
    assert code == 0, stdout
    assert_exactly_once(tmp_path / "out", [r["id"] for r in rows])
    assert max(sent_ids(batch_server).values()) == 1


def test_kill_9_while_polling_resumes_polling_and_never_resubmits(
        batch_server: FakeServerProcess, tmp_path: Path) -> None:
    rows = sentences(5)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    batch_server.set_batch(polls=10_000)  # the first batch stays in progress
    command = [sys.executable, "-m", "openie4pp.app.cli", *annotate_args(batch_server, source, out, *FAST)]
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "tests")})
    deadline = time.monotonic() + 60
    while not batch_server.batch_log():
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # polling now
    child.kill()
    child.wait(timeout=10)
    batch_server.set_batch(polls=1)
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert_exactly_once(out, [r["id"] for r in rows])
    assert max(sent_ids(batch_server).values()) == 1  # the stage-1 batch was polled again, not resubmitted


def answer_batch_files(folder: Path) -> int:
    """What ``vllm run-batch -i IN -o OUT`` does with the round's files: each line answered (by the
    test's deterministic LLM) into an output file in OpenAI's batch output format."""
    answered = 0
    for source in sorted(folder.rglob("*.input.jsonl")):
        target = source.with_name(source.name.replace(".input.jsonl", ".output.jsonl"))
        if target.exists():
            continue
        lines = []
        for raw in source.read_text(encoding="utf-8").splitlines():
            line = json.loads(raw)
            answer = annotate_responder.respond(line["body"])
            content = answer["content"] if isinstance(answer, dict) else answer
            lines.append(json.dumps({
                "id": f"vllm-{answered}", "custom_id": line["custom_id"], "error": None,
                "response": {"status_code": 200, "request_id": f"req-{answered}", "body": {
                    "id": "cmpl", "object": "chat.completion", "model": line["body"]["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}}}))
            answered += 1
        target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return answered


def test_batch_files_are_answered_elsewhere_and_read_back_on_the_rerun(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's self-hosted recipe: no server at all; exit 3 while the outputs are missing."""
    rows = sentences(4)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    args = ["annotate", "--input", str(source), "--out", str(out), "--model", "Qwen/Qwen2.5-7B-Instruct",
            "--execution", "batch-files", "--no-progress", "--canaries", "0"]
    rounds = 0
    while True:
        code, stdout, _ = run(args, capsys)
        if code == 0:
            break
        assert code == EXIT_WAITING and "vllm run-batch -i " in stdout, stdout
        assert answer_batch_files(out / "batches") > 0
        rounds += 1
        assert rounds < 6
    assert rounds == 2  # extract, judge
    assert_exactly_once(out, [r["id"] for r in rows])
    assert len(Outcome(out).records) == 4


@pytest.mark.parametrize("backend, message", [
    ({"endpoints": ["local"]}, "no batch API"),
    ({"endpoints": ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], "model": "m"}, "one --endpoint"),
    ({"kind": "vllm", "model": "m"}, "in this process"),
])
def test_batch_configuration_mistakes_fail_before_anything(tmp_path: Path, backend: dict[str, Any],
                                                           message: str) -> None:
    with pytest.raises(UsageError, match=message):
        AnnotationConfig(input={"path": str(tmp_path / "in.jsonl")}, out=tmp_path / "out", backend=backend,
                         execution={"kind": "batch"})


def test_bad_input_lines_are_rejected_once_over_all_rounds(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[Any] = [*sentences(3), {"id": "e", "lang": "en", "text": ""}, sentences(1)[0]]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "out", *FAST), capsys)
    assert code == 0, stdout
    done = Outcome(tmp_path / "out")
    assert sorted((r.line, r.reason.value) for r in done.inputs) == [(4, "empty_sentence"), (5, "duplicate")]
    numbers = summary(stdout)
    assert numbers["input_rejections"] == 2 and numbers["items"] == 3 and numbers["rounds"] == 2
    assert "2 input lines rejected" in stdout


def test_a_batch_the_provider_refuses_stops_the_run_with_its_reason(
        batch_server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A batch failed as a whole (OpenAI's validation: a model it does not batch, a bad file) would fail
    again every round: the run stops with the provider's reason and leaves every item unfinished."""
    rows = sentences(3)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    batch_server.set_batch(rules=[{"fault": "fail", "message": "model not batchable"}])
    code, _, err = run(annotate_args(batch_server, source, tmp_path / "out", *FAST), capsys)
    assert code == 1 and "model not batchable" in err and "Traceback" not in err
    assert len(batch_server.batch_log()) == 1
    assert Outcome(tmp_path / "out").accounted_ids == []  # unfinished, not rejected
    batch_server.set_batch(rules=[])  # fixed: the rerun finishes
    code, stdout, _ = run(annotate_args(batch_server, source, tmp_path / "out", *FAST), capsys)
    assert code == 0, stdout
    assert_exactly_once(tmp_path / "out", [r["id"] for r in rows])
