"""Batch rounds against the fake Batch API (tests/fake_openai_server.py), with a real response cache.

What is proved: answers reach the cache under their keys with their purpose; part files respect both
limits; every injected fault (failed line, error-object line, expired, cancelled, missing lines,
failed batch) is counted as the round loop needs it; a crash (an exception through the transport, or
a kill -9) at any step resumes without creating a second batch; and, from the server's own record,
no custom_id whose answer was ingested is ever sent again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from fake_openai_server import FakeOpenAIServer, echo_sentence, spawn

from openie4pp.annotate.backends.cache import CachedBackend
from openie4pp.annotate.batch.batch_files import SentLine, encode_line, output_path, read_results
from openie4pp.annotate.batch.rounds import BatchRounds
from openie4pp.annotate.batch.transport import (
    BatchAPIError,
    FileExchange,
    OpenAIBatchTransport,
    OutputsAwaited,
)
from openie4pp.annotate.config import BatchSettings
from openie4pp.annotate.llm import ChatRequest, ChatResponse, Message
from openie4pp.errors import UsageError

MODEL = "fake-model"
SCHEMA = {"type": "object", "properties": {"sentence": {"type": "string"}}, "required": ["sentence"]}


class Crash(BaseException):
    """A process dying mid-step (a BaseException: nothing may catch and survive it)."""


class NoBackend:
    """The cache's inner backend: batch rounds must never send a request online."""

    model = MODEL

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise AssertionError("batch rounds sent a request online")

    async def aclose(self) -> None:
        pass


@dataclass
class SpanEnum:
    """A span constraint with (or without) an enum schema, as the pipeline builds one."""

    enum: dict[str, Any] | None
    digest: str = "d1"
    gbnf: str = "root ::= x"

    @property
    def enum_schema(self) -> dict[str, Any] | None:
        return self.enum

    def violations(self, content: str) -> list[str] | None:
        return []


def request(sentence: str, purpose: str = "stage1", constraint: SpanEnum | None = None) -> ChatRequest:
    messages = (Message("system", "extract"), Message("user", f"<sentence>{sentence}</sentence>"))
    return ChatRequest(messages=messages, schema_name="extraction", schema=SCHEMA, prompt_id="extract",
                       prompt_hash="h1", purpose=purpose, constraint=constraint)


def batch_of(*sentences: str, purpose: str = "stage1") -> dict[str, ChatRequest]:
    return {r.cache_key(MODEL): r for r in (request(s, purpose) for s in sentences)}


def key(sentence: str) -> str:
    return request(sentence).cache_key(MODEL)


def assert_never_repaid(log: list[dict[str, Any]]) -> None:
    """The server's record: no custom_id answered by one batch is in any later batch."""
    answered: set[str] = set()
    for entry in log:
        again = set(entry["custom_ids"]) & answered
        assert not again, f"{len(again)} answered custom_id(s) sent again in {entry['batch_id']}"
        answered |= set(entry["answered"])


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(responder=echo_sentence, model=MODEL) as fake:
        yield fake


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[CachedBackend]:
    backend = CachedBackend(NoBackend(), tmp_path / "cache.sqlite")
    yield backend
    backend.close()


@pytest.fixture
def transport(server: FakeOpenAIServer) -> Iterator[OpenAIBatchTransport]:
    client = OpenAIBatchTransport(server.base_url, "sk-test-key-123456", 10.0)
    yield client
    client.close()


SETTINGS = BatchSettings(poll_s=1.0, poll_max_s=4.0)


def rounds(tmp_path: Path, cache: CachedBackend, transport: Any, sleeps: list[float] | None = None,
           **settings: Any) -> BatchRounds:
    waits = sleeps if sleeps is not None else []
    return BatchRounds(tmp_path / "batches", cache, MODEL, transport, SETTINGS.model_copy(update=settings),
                       sleep=waits.append)


# -- the happy path, and the files ------------------------------------------------------------------


def test_round_stores_every_answer_with_its_purpose_and_backs_off(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
        transport: OpenAIBatchTransport) -> None:
    server.set_batch(polls=4)
    sleeps: list[float] = []
    batch = rounds(tmp_path, cache, transport, sleeps, poll_max_s=3.0)
    todo = {**batch_of("Alpha one", "Beta two"), **batch_of("Gamma three", purpose="verify")}
    report = batch.run_round(todo)
    assert sleeps == [1.0, 2.0, 3.0]  # doubling, capped at poll_max_s
    for sentence in ("Alpha one", "Beta two", "Gamma three"):
        answer = cache.lookup(key(sentence)) or cache.lookup(request(sentence, "verify").cache_key(MODEL))
        assert answer is not None and json.loads(answer.content) == {"sentence": sentence}
        assert answer.endpoint == f"127.0.0.1:{server.port}" and answer.structured == "json_schema"
        assert answer.completion_tokens == len(sentence.split()) + 3 and answer.prompt_tokens > 0
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        purposes = dict(db.execute("SELECT key, purpose FROM responses"))
    assert purposes == {k: r.purpose for k, r in todo.items()}
    assert batch.fresh == set(todo)
    assert (report.stats.lines_sent, report.stats.lines_ok, report.stats.batches) == (3, 3, 1)
    assert batch.stats.as_dict()["lines_ok"] == 3 and report.rounds == [1]
    assert str(report).startswith("round 1: 1 part(s), 1 batch(es), 3 sent, 3 ok, 0 failed")
    log = server.batch_log()
    assert len(log) == 1 and sorted(log[0]["custom_ids"]) == sorted(todo)
    assert log[0]["metadata"]["openie4pp_name"] == "round-0001/part-000"
    line = json.loads((tmp_path / "batches/round-0001/part-000.input.jsonl").read_text().splitlines()[0])
    assert line["method"] == "POST" and line["url"] == "/v1/chat/completions" and line["custom_id"] in todo
    assert line["body"]["response_format"]["type"] == "json_schema" and "purpose" not in json.dumps(line)
    again = batch.run_round(todo)  # everything cached: nothing is sent
    assert again.skipped_cached == 3 and again.rounds == [] and len(server.batch_log()) == 1
    assert_never_repaid(server.batch_log())


def test_parts_split_by_count_and_by_bytes(tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
                                           transport: OpenAIBatchTransport) -> None:
    todo = batch_of(*(f"Sentence number {i}" for i in range(5)))
    report = rounds(tmp_path / "count", cache, transport, max_requests_per_file=2).run_round(todo)
    assert report.parts == 3 and [len(e["custom_ids"]) for e in server.batch_log()] == [2, 2, 1]
    more = batch_of(*(f"Another sentence {i}" for i in range(5)))
    sizes = [len(encode_line(MODEL, k, r)[0]) for k, r in more.items()]
    assert len(set(sizes)) == 1
    limit = sizes[0] * 2 + 1  # two lines fit, three do not
    report = rounds(tmp_path / "bytes", cache, transport, max_bytes_per_file=limit).run_round(more)
    files = sorted((tmp_path / "bytes/batches/round-0001").glob("part-*.input.jsonl"))
    assert report.parts == len(files) == 3
    assert all(f.stat().st_size <= limit for f in files)
    assert sum(len(f.read_text().splitlines()) for f in files) == 5 and all(cache.lookup(k) for k in more)


def test_a_line_larger_than_a_file_is_given_up_unsent(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
        transport: OpenAIBatchTransport) -> None:
    todo = batch_of("short", "a much much much longer sentence " * 20)
    big = key("a much much much longer sentence " * 20)
    limit = len(encode_line(MODEL, key("short"), request("short"))[0]) + 10
    batch = rounds(tmp_path, cache, transport, max_bytes_per_file=limit)
    report = batch.run_round(todo)
    assert report.given_up == [big] and "exceeds max_bytes_per_file" in (batch.given_up(big) or "")
    assert server.batch_log()[0]["custom_ids"] == [key("short")]
    assert "exceeds" in (rounds(tmp_path, cache, transport).given_up(big) or "")  # persisted


def test_span_constraint_goes_as_strict_enum_schema_or_plain_schema(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
        transport: OpenAIBatchTransport) -> None:
    enum = {"type": "object", "properties": {"sentence": {"enum": ["Cats purr"]}}, "required": ["sentence"]}
    with_enum = request("Cats purr", constraint=SpanEnum(enum))
    without = request("Dogs bark", constraint=SpanEnum(None))
    line, sent = encode_line(MODEL, "k", with_enum)
    fmt = json.loads(line)["body"]["response_format"]["json_schema"]
    assert fmt["strict"] is True and fmt["schema"] == enum and sent.constraint == "json_schema_enum"
    line, sent = encode_line(MODEL, "k", without)
    fmt = json.loads(line)["body"]["response_format"]["json_schema"]
    assert fmt["strict"] is False and fmt["schema"] == SCHEMA and sent.constraint == "none"
    todo = {r.cache_key(MODEL): r for r in (with_enum, without)}
    rounds(tmp_path, cache, transport).run_round(todo)
    answers = {k: cache.lookup(k) for k in todo}
    assert [a.constraint if a else None for a in answers.values()] == ["json_schema_enum", "none"]


# -- faults -------------------------------------------------------------------------------------------


def test_failed_lines_count_an_attempt_and_are_sent_again(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
        transport: OpenAIBatchTransport) -> None:
    server.set_script([{"match": "Broken", "fault": {"status": 500, "message": "model overloaded"}}])
    server.set_batch(rules=[{"fault": "error_lines", "match": "Odd", "times": 1}])
    batch = rounds(tmp_path, cache, transport, max_line_attempts=2)
    todo = batch_of("Fine one", "Broken two", "Odd three")
    report = batch.run_round(todo)
    assert (report.stats.lines_ok, report.stats.lines_failed) == (1, 2)
    assert cache.lookup(key("Broken two")) is None and cache.lookup(key("Odd three")) is None
    assert batch.given_up(key("Broken two")) is None  # one attempt of two
    result = json.loads((tmp_path / "batches/round-0001/part-000.result.json").read_text())
    assert "HTTP 500: model overloaded" in result["failed"][key("Broken two")]
    assert result["failed"][key("Odd three")] == "server_error: scripted line error"
    second = batch.run_round(todo)  # the next pass: the odd line now works, the broken one fails again
    assert second.skipped_cached == 1 and sorted(server.batch_log()[1]["custom_ids"]) == sorted(
        [key("Broken two"), key("Odd three")])
    assert second.given_up == [key("Broken two")]
    assert "model overloaded" in (batch.given_up(key("Broken two")) or "")
    third = batch.run_round(todo)
    assert third.skipped_given_up == 1 and third.skipped_cached == 2 and len(server.batch_log()) == 2
    assert_never_repaid(server.batch_log())


@pytest.mark.parametrize("fault, status, silent", [
    ("expire", "expired", False), ("cancel", "cancelled", False), ("expire", "expired", True)])
def test_expired_or_cancelled_batch_keeps_its_answers_and_resubmits_the_rest(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend, transport: OpenAIBatchTransport,
        fault: str, status: str, silent: bool) -> None:
    server.set_batch(rules=[{"fault": fault, "answered": 2, "times": 1, "silent": silent}])
    batch = rounds(tmp_path, cache, transport, max_line_attempts=1)
    todo = batch_of(*(f"Line {i}" for i in range(5)))
    report = batch.run_round(todo)
    assert (report.stats.lines_ok, report.stats.resubmitted, getattr(report.stats, status)) == (2, 3, 1)
    assert report.stats.lines_failed == report.stats.lines_missing == 0
    assert all(batch.given_up(k) is None for k in todo)  # not the lines' fault: no attempt counted
    batch.run_round(todo)
    assert all(cache.lookup(k) for k in todo) and len(server.batch_log()[1]["custom_ids"]) == 3
    assert_never_repaid(server.batch_log())


def test_lines_missing_from_a_completed_output_count_an_attempt(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
        transport: OpenAIBatchTransport) -> None:
    server.set_batch(rules=[{"fault": "drop_lines", "match": "Lost", "times": 1}])
    batch = rounds(tmp_path, cache, transport, max_line_attempts=1)
    report = batch.run_round(batch_of("Kept line", "Lost line"))
    assert (report.stats.lines_ok, report.stats.lines_missing) == (1, 1)
    assert "missing from the output" in (batch.given_up(key("Lost line")) or "")


def test_a_failed_batch_counts_an_attempt_for_all_its_keys_until_given_up(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend, transport: OpenAIBatchTransport,
        caplog: pytest.LogCaptureFixture) -> None:
    server.set_batch(rules=[{"fault": "fail", "message": "model not batchable", "times": 2}])
    todo = batch_of("One here", "Two here")
    first = rounds(tmp_path, cache, transport, max_line_attempts=2).run_round(todo)
    assert first.stats.lines_failed == 2 and first.given_up == []
    assert any("failed as a whole" in r.message and "model not batchable" in r.message
               for r in caplog.records)
    second = rounds(tmp_path, cache, transport, max_line_attempts=2)  # attempts survive a new process
    report = second.run_round(todo)
    assert sorted(report.given_up) == sorted(todo)
    assert "model not batchable" in (second.given_up(key("One here")) or "")
    assert second.run_round(todo).skipped_given_up == 2 and len(server.batch_log()) == 2


# -- crashes ------------------------------------------------------------------------------------------


class CrashingTransport:
    """The real transport, with one call made to crash once: before or after doing its work."""

    def __init__(self, inner: OpenAIBatchTransport, method: str, *, after: bool = False) -> None:
        self.inner, self.method, self.after, self.armed = inner, method, after, True
        self.name, self.max_tokens_field = inner.name, inner.max_tokens_field

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if name != self.method:
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            if self.armed and not self.after:
                self.armed = False
                raise Crash(name)
            result = target(*args, **kwargs)
            if self.armed:
                self.armed = False
                raise Crash(name)
            return result
        return call


@pytest.mark.parametrize("method, after", [("upload", True), ("create", False), ("create", True),
                                           ("retrieve", False), ("download", True)])
def test_a_crash_at_any_step_resumes_without_a_second_batch(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend, transport: OpenAIBatchTransport,
        method: str, after: bool) -> None:
    todo = batch_of(*(f"Crash case {i}" for i in range(4)))
    with pytest.raises(Crash):
        rounds(tmp_path, cache, CrashingTransport(transport, method, after=after),
               max_requests_per_file=2).run_round(todo)
    if method == "create" and after:  # newer batches push ours onto the second page of batches.list
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
        other = client.files.create(file=("other.jsonl", b'{"custom_id":"x","body":{}}\n'), purpose="batch")
        for _ in range(105):
            client.batches.create(input_file_id=other.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    resumed = rounds(tmp_path, cache, transport)
    report = resumed.resume()
    assert report is not None and report.rounds == [1]
    ours = [e for e in server.batch_log() if e["metadata"]]
    names = sorted(e["metadata"]["openie4pp_name"] for e in ours)
    assert names == ["round-0001/part-000", "round-0001/part-001"]
    files = server._httpd.state.batch_api.files.values()
    uploads = [f for f in files if f["filename"].startswith("openie4pp-")]
    assert len(uploads) == 2  # a crash right after an upload finds it instead of uploading again
    assert all(cache.lookup(k) for k in todo) and resumed.fresh == set(todo)
    assert resumed.resume() is None and resumed.run_round(todo).skipped_cached == 4
    assert_never_repaid(server.batch_log())


def test_an_unfinished_round_is_finished_before_a_new_one(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
        transport: OpenAIBatchTransport) -> None:
    todo = batch_of("Left over", "Still here")
    with pytest.raises(Crash):
        rounds(tmp_path, cache, CrashingTransport(transport, "retrieve")).run_round(todo)
    report = rounds(tmp_path, cache, transport).run_round(todo)  # the lead forgot resume(): still no repay
    assert report.rounds == [1] and report.skipped_cached == 2 and len(server.batch_log()) == 1


_KILLED_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_batch_rounds import NoBackend, batch_of, MODEL, SETTINGS
from openie4pp.annotate.backends.cache import CachedBackend
from openie4pp.annotate.batch.rounds import BatchRounds
from openie4pp.annotate.batch.transport import OpenAIBatchTransport
def sleep(seconds):
    Path({marker!r}).write_text("polling")
    time.sleep(600)
cache = CachedBackend(NoBackend(), {cache!r})
transport = OpenAIBatchTransport({url!r}, "sk-test-key-123456", 10.0)
BatchRounds(Path({folder!r}), cache, MODEL, transport, SETTINGS, sleep=sleep).run_round(
    batch_of("Killed one", "Killed two"))
"""


def test_kill_9_while_polling_resumes_polling(tmp_path: Path, server: FakeOpenAIServer,
                                              cache: CachedBackend, transport: OpenAIBatchTransport) -> None:
    marker = tmp_path / "polling"
    code = _KILLED_CHILD.format(tests=str(Path(__file__).parent), marker=str(marker), url=server.base_url,
                                cache=str(tmp_path / "cache.sqlite"), folder=str(tmp_path / "batches"))
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), f"child exited {child.poll()} before polling"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    report = rounds(tmp_path, cache, transport).resume()
    assert report is not None and report.stats.lines_ok == 2 and len(server.batch_log()) == 1
    assert all(cache.lookup(k) for k in batch_of("Killed one", "Killed two"))


# -- batch-files (vllm run-batch) -----------------------------------------------------------------------


def test_file_exchange_round_trip_in_vllm_run_batch_format(tmp_path: Path, cache: CachedBackend) -> None:
    todo = batch_of("Files one", "Files two", "Files three")
    exchange = FileExchange(MODEL)
    with pytest.raises(OutputsAwaited) as awaited:
        rounds(tmp_path, cache, exchange).run_round(todo)
    [source], [target] = awaited.value.inputs, awaited.value.outputs
    assert target == output_path(source) and target.name == "part-000.output.jsonl" and not target.exists()
    assert f"vllm run-batch -i {source} -o {target} --model {MODEL}" in awaited.value.command_hint
    with pytest.raises(OutputsAwaited):  # a rerun before the outputs exist waits again, sends nothing
        rounds(tmp_path, cache, exchange).resume()
    lines = []
    for raw in source.read_text(encoding="utf-8").splitlines():  # what vllm run-batch writes
        line = json.loads(raw)
        sentence = line["body"]["messages"][-1]["content"][len("<sentence>"):-len("</sentence>")]
        if sentence == "Files two":
            response = {"status_code": 400, "request_id": "r2", "body": {"object": "error",
                        "message": "context too long", "type": "BadRequestError", "code": 400}}
        else:
            response = {"status_code": 200, "request_id": "r1", "body": {
                "id": "cmpl-1", "object": "chat.completion", "model": MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": sentence}}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}}
        lines.append(json.dumps({"id": "vllm-x", "custom_id": line["custom_id"], "response": response,
                                 "error": None}))
    target.write_text("\n".join([*lines, "not json", '{"custom_id": "unknown"}']) + "\n")
    batch = rounds(tmp_path, cache, exchange)
    report = batch.resume()
    assert report is not None and (report.stats.lines_ok, report.stats.lines_failed) == (2, 1)
    answer = cache.lookup(key("Files one"))
    assert answer is not None and answer.content == "Files one" and answer.endpoint == "batch-files"
    assert (answer.prompt_tokens, answer.completion_tokens) == (7, 2)
    result = json.loads((source.parent / "part-000.result.json").read_text())
    assert result["malformed"] == 2 and "HTTP 400: context too long" in result["failed"][key("Files two")]


def test_reading_results_never_crashes_on_bad_lines(tmp_path: Path) -> None:
    sent = {"a": SentLine("stage1", "json_schema", "none"), "b": SentLine("stage1", "json_schema", "none"),
            "c": SentLine("verify", "none", "none")}
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"\n".join([
        b"\xff\xfe not utf8", b"[1, 2]", b'{"custom_id": 5}', b'{"custom_id": "zz", "response": {}}',
        b'{"custom_id": "a", "response": {"status_code": 200, "body": {"choices": []}}}',
        b'{"custom_id": "a", "response": {"status_code": 200, "body": {}}}',
        b'{"custom_id": "b", "response": "nope"}', b"[" * 100_000,
        b'{"custom_id": "c", "response": {"status_code": 200, "body": {"choices": [{"message": '
        b'{"content": null}}], "usage": {"prompt_tokens": true}}}}']))
    parsed = read_results([path, tmp_path / "absent.jsonl"], sent, model=MODEL, endpoint="e")
    assert parsed.malformed == 6  # undecodable, a list, a number id, an unknown id, a duplicate, too deep
    assert parsed.results["a"].error == "answer without choices"
    assert parsed.results["b"].error == "line without response or error"
    answer = parsed.results["c"].response
    assert answer is not None and (answer.content, answer.prompt_tokens, answer.structured) == ("", 0, "none")


# -- the transport's errors ---------------------------------------------------------------------------


def test_transport_errors_are_one_line_without_the_key(tmp_path: Path) -> None:
    with FakeOpenAIServer(expected_key="sk-right-key-0000000") as guarded:
        wrong = OpenAIBatchTransport(guarded.base_url, "sk-wrong-key-1111111", 5.0, max_retries=0)
        with pytest.raises(UsageError) as denied:
            wrong.retrieve("batch_1")
        assert "HTTP 401" in str(denied.value) and "sk-wrong" not in str(denied.value)
        assert "\n" not in str(denied.value)
        right = OpenAIBatchTransport(guarded.base_url, "sk-right-key-0000000", 5.0, max_retries=0)
        with pytest.raises(UsageError, match="HTTP 404"):
            right.retrieve("batch_missing")
        port = guarded.port
    gone = OpenAIBatchTransport(f"http://127.0.0.1:{port}/v1", "sk-right-key-0000000", 2.0, max_retries=0)
    with pytest.raises(BatchAPIError, match="connection error"):
        gone.retrieve("batch_1")


class FlakyTransport(CrashingTransport):
    """The real transport whose ``retrieve`` fails ``times`` times in a row with a transient error."""

    def __init__(self, inner: OpenAIBatchTransport, times: int) -> None:
        super().__init__(inner, "retrieve")
        self.times = times

    def retrieve(self, batch_id: str) -> Any:
        if self.times > 0:
            self.times -= 1
            raise BatchAPIError("batch API: batches.retrieve failed: HTTP 503", status=503)
        return self.inner.retrieve(batch_id)


def test_polling_rides_out_transient_errors_but_not_endless_ones(
        tmp_path: Path, server: FakeOpenAIServer, cache: CachedBackend,
        transport: OpenAIBatchTransport) -> None:
    todo = batch_of("Flaky one")
    report = rounds(tmp_path / "a", cache, FlakyTransport(transport, 3)).run_round(todo)
    assert report.stats.lines_ok == 1
    with pytest.raises(BatchAPIError, match="503"):
        rounds(tmp_path / "b", cache, FlakyTransport(transport, 100)).run_round(batch_of("Flaky two"))
    report = rounds(tmp_path / "b", cache, transport).resume()  # the state was kept: polling goes on
    assert report is not None and report.stats.lines_ok == 1 and len(server.batch_log()) == 2


def test_the_server_process_fakes_the_batch_api_too(tmp_path: Path, cache: CachedBackend) -> None:
    with spawn("--responder", "fake_openai_server:echo_sentence") as process:
        process.set_batch(polls=1, rules=[{"fault": "drop_lines", "match": "Gone", "times": 1}])
        client = OpenAIBatchTransport(process.base_url, None, 10.0)
        report = rounds(tmp_path, cache, client).run_round(batch_of("Here it is", "Gone it is"))
        client.close()
        [entry] = process.batch_log()
    assert (report.stats.lines_ok, report.stats.lines_missing) == (1, 1)
    assert entry["answered"] == [key("Here it is")] and entry["status"] == "completed"
