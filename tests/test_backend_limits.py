"""Limits and failure policy of the HTTP backend (issue 10): URL queries and their secrets, the
response size cap, benching on error rates instead of one poison request, the circuit breaker,
endpoint URL and option validation. Against real server processes (tests/fake_openai_server.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_server import FakeServerProcess, spawn

from openie4pp.annotate.backends import OpenAICompatBackend
from openie4pp.annotate.backends.local_server import free_port
from openie4pp.annotate.llm import ChatRequest, ChatResponse, Message, RequestFailed
from openie4pp.errors import EndpointsDown, UsageError
from openie4pp.redact import looks_secret, redact_url, redactor, scrub_config

SCHEMA = {"type": "object", "properties": {"triples": {"type": "array", "items": {"type": "string"}}},
          "required": ["triples"]}
FAST: dict[str, Any] = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5}
QUERY_SECRET = "QuErYsEcReT-0123456789"


def request(text: str = "Extract: <sentence>Paris is the capital of France.</sentence>") -> ChatRequest:
    return ChatRequest(messages=(Message("system", "You extract triples."), Message("user", text)),
                       schema_name="extraction", schema=SCHEMA, prompt_id="t", prompt_hash="h")


async def gather(backend: OpenAICompatBackend, *requests: ChatRequest) -> list[ChatResponse | BaseException]:
    try:
        return list(await asyncio.gather(*(backend.complete(r) for r in requests), return_exceptions=True))
    finally:
        await backend.aclose()




def backend(urls: list[str], http_client: str = "auto", **kwargs: Any) -> OpenAICompatBackend:
    return OpenAICompatBackend(urls, "fake-model", http_client=http_client, **{**FAST, **kwargs})


# -- item 10: URL queries ----------------------------------------------------------------------


def test_query_string_is_kept_after_the_path(http_client: str, plain: FakeServerProcess) -> None:
    """Azure-style ``?api-version=`` endpoints: the path is joined before the query (was a 404)."""
    url = f"{plain.base_url}/?api-version=2024-06-01&sig={QUERY_SECRET}"
    (resp,) = asyncio.run(gather(backend([url], http_client), request()))
    assert isinstance(resp, ChatResponse), resp
    (logged,) = plain.requests()
    assert logged["status"] == 200 and logged["query"] == f"api-version=2024-06-01&sig={QUERY_SECRET}"


def test_query_secret_never_in_details_or_logs(http_client: str, plain: FakeServerProcess,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's own logs (they print request URLs)
    good = f"{plain.base_url}?api-version=1&token={QUERY_SECRET}"
    wrong = f"http://127.0.0.1:{plain.port}/nowhere?token={QUERY_SECRET}"  # the server echoes the path
    echo = {"status": 500, "message": f"bad /v1?token={QUERY_SECRET}"}
    plain.set_script([{"match": "echo", "fault": echo}])
    ok, echoed = asyncio.run(gather(backend([good], http_client, max_attempts=2),
                                    request(), request("echo <sentence>x</sentence>")))
    (not_found,) = asyncio.run(gather(backend([wrong], http_client), request()))
    assert isinstance(ok, ChatResponse)
    assert isinstance(echoed, RequestFailed) and isinstance(not_found, RequestFailed)
    assert not_found.status == 404 and "/nowhere/chat/completions" in not_found.detail
    for text in (echoed.detail, str(echoed), not_found.detail, str(not_found), caplog.text):
        assert QUERY_SECRET not in text
    assert "REDACTED" in not_found.detail


def test_redact_url_keeps_the_endpoint_and_drops_every_secret() -> None:
    url = f"https://me:pw@Example.com:8443/openai/d?api-version=2024-06-01&sig={QUERY_SECRET}&x=1#frag"
    assert redact_url(url) == "https://example.com:8443/openai/d?api-version=2024-06-01&sig=REDACTED&x=REDACTED"
    assert redact_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    assert redact_url("not a url") == "not a url"
    scrub = redactor(["sk-key-abcdef", QUERY_SECRET])
    text = f"key sk-key-abcdef at http://u:p@h/v1?code=zzz and /v1/x?token={QUERY_SECRET}&api-version=2"
    assert scrub(text) == ("key [REDACTED] at http://h/v1?code=REDACTED and /v1/x?token=[REDACTED]"
                           "&api-version=2")


def test_one_credential_test_for_config_schema_and_urls() -> None:
    from openie4pp import shards
    from openie4pp.schema import Provenance

    assert shards.scrub_config is scrub_config
    for key, value in [("token", "x"), ("hfToken", "x"), ("OPENAI_API_KEY", "x"), ("url", "http://u:p@h/v1"),
                       ("endpoint", f"http://h/v1?token={QUERY_SECRET}"), ("x", "sk-abcdefghijkl"),
                       ("x", f"https://h/x?X-Amz-Signature={QUERY_SECRET}")]:
        assert looks_secret(key, value), (key, value)
    harmless: list[tuple[str, object]] = [("max_tokens", 5), ("endpoint", "http://h/v1?token=REDACTED"),
                                          ("model", "gpt-4o")]
    for name, setting in harmless:
        assert not looks_secret(name, setting), (name, setting)
    config = {"endpoint": [f"http://127.0.0.1:8000/v1?api-version=1&token={QUERY_SECRET}"], "concurrency": 4}
    assert scrub_config(config) == {"endpoint": ["http://127.0.0.1:8000/v1?api-version=1&token=REDACTED"],
                                    "concurrency": 4}
    with pytest.raises(ValueError, match="credential"):
        Provenance(source="llm", endpoint=f"h/v1?sig={QUERY_SECRET}")  # type: ignore[arg-type]


def test_query_secret_is_in_no_file_the_run_writes(server: FakeServerProcess, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """End to end: manifest.json (the build config has the endpoint) and rejected.jsonl (a server
    that quotes the request path in its error) never hold the query's secret."""
    from openie4pp.app.cli import main

    rows = [{"id": "ok", "lang": "en", "text": "Worker0 repairs old bicycles."},
            {"id": "echo", "lang": "en", "text": "The server echoes the path back."}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    server.set_script([{"match": "echoes the path", "fault": {
        "status": 400, "message": f"bad request /v1/chat/completions?api-version=1&token={QUERY_SECRET}"}}])
    out = tmp_path / "out"
    main(["annotate", "--input", str(source), "--out", str(out), "--endpoint",
          f"{server.base_url}?api-version=1&token={QUERY_SECRET}", "--model", "fake-model", "--no-progress",
          "--canaries", "0"])
    printed = capsys.readouterr()
    assert len(server.requests()) >= 2 and all(r["query"] == f"api-version=1&token={QUERY_SECRET}"
                                               for r in server.requests())
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"manifest.json", "rejected.jsonl"} <= {p.name for p in files}
    for path in files:
        assert QUERY_SECRET.encode() not in path.read_bytes(), path
    assert QUERY_SECRET not in printed.out + printed.err
    assert f"127.0.0.1:{server.port}" in (out / "manifest.json").read_text()


# -- item 8: response size ---------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_answer_is_a_failure_not_a_memory_hog(http_client: str, plain: FakeServerProcess,
                                                        chunked: bool) -> None:
    plain.set_script([{"match": "big", "fault": {"huge_body": 24 * 1024 * 1024, "chunked": chunked}}])
    b = backend([plain.base_url], http_client, max_response_bytes=1024 * 1024)
    start = time.monotonic()
    big, small = asyncio.run(gather(b, request("big <sentence>x</sentence>"), request()))
    assert isinstance(small, ChatResponse)
    assert isinstance(big, RequestFailed) and big.retries == 0, big
    assert "answer larger than 1048576 bytes" in big.detail and f"127.0.0.1:{plain.port}" in big.detail
    assert sum(r["last_user"].startswith("big") for r in plain.requests()) == 1  # not retried
    assert time.monotonic() - start < 3


def test_oversized_error_body_is_not_read_either(http_client: str, plain: FakeServerProcess) -> None:
    plain.set_script([{"match": "*", "fault": {"status": 500, "message": "x" * 3_000_000}}])
    (result,) = asyncio.run(gather(backend([plain.base_url], http_client, max_response_bytes=1_000_000),
                                   request()))
    assert isinstance(result, RequestFailed) and "answer larger than 1000000 bytes" in result.detail
    assert result.retries == 0 and len(plain.requests()) == 1


def test_answer_under_the_cap_is_read_whole(http_client: str, plain: FakeServerProcess) -> None:
    plain.set_script([{"match": "*", "fault": {"huge_body": 300_000, "chunked": True}}])
    b = backend([plain.base_url], http_client, max_response_bytes=400_000)
    (resp,) = asyncio.run(gather(b, request()))
    assert isinstance(resp, ChatResponse) and len(resp.content) > 299_000


# -- item 9: one poison request ------------------------------------------------------------------


def test_poison_request_does_not_bench_the_only_endpoint(http_client: str, plain: FakeServerProcess) -> None:
    """One sentence always gets a 500; healthy requests (0.2 s each) must not wait out ``bench_s``."""
    plain.set_script([{"match": "POISON", "fault": {"status": 500}},
                      {"match": "healthy", "fault": {"delay_s": 0.2}}])
    b = backend([plain.base_url], http_client, bench_s=5, max_attempts=6)

    async def healthy_lane(lane: int) -> list[ChatResponse]:
        return [await b.complete(request(f"healthy {lane}.{i}")) for i in range(3)]

    async def scenario() -> tuple[BaseException | None, list[list[ChatResponse]], float]:
        start = time.monotonic()
        try:
            results = await asyncio.gather(b.complete(request("POISON")),
                                           *(healthy_lane(lane) for lane in range(4)), return_exceptions=True)
        finally:
            await b.aclose()
        poison, *lanes = results
        assert all(isinstance(lane, list) for lane in lanes), lanes
        return poison if isinstance(poison, BaseException) else None, lanes, time.monotonic() - start

    poison, lanes, elapsed = asyncio.run(scenario())
    assert isinstance(poison, RequestFailed) and poison.status == 500 and poison.retries == 5
    assert sum(len(lane) for lane in lanes) == 12
    assert elapsed < 2.5  # 3 x 0.2 s of work; a bench would add 5 s


def test_an_endpoint_failing_most_requests_is_benched(plain: FakeServerProcess) -> None:
    """The error *rate* over distinct requests benches: a server answering 500 to everything, next
    to a healthy one, is taken out after ``bench_after`` failed requests and stays out."""
    dead, live = plain, spawn()
    try:
        dead.set_script([{"match": "*", "fault": {"status": 500}}])
        b = backend([dead.base_url, live.base_url], bench_after=3, bench_s=30)

        async def scenario() -> list[ChatResponse]:
            try:
                return [await b.complete(request(f"s{i}")) for i in range(12)]
            finally:
                await b.aclose()

        responses = asyncio.run(scenario())
        assert {r.endpoint for r in responses} == {f"127.0.0.1:{live.port}"}
        assert len(dead.requests()) == 3  # benched after 3 failed requests: the other 9 never reach it
    finally:
        live.stop()


# -- item 3: the circuit breaker ------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failed_requests(http_client: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    b = backend([dead], http_client, max_attempts=2, bench_after=99, breaker_after_requests=3)

    async def scenario() -> tuple[list[Any], float, BaseException]:
        results = await asyncio.gather(*(b.complete(request(f"s{i}")) for i in range(10)),
                                       return_exceptions=True)
        start = time.monotonic()
        try:
            await b.complete(request("later"))
        except BaseException as exc:
            later: BaseException = exc
        finally:
            await b.aclose()
        return results, time.monotonic() - start, later

    start = time.monotonic()
    results, later_s, later = asyncio.run(scenario())
    assert time.monotonic() - start < 3
    kinds = [type(r).__name__ for r in results]
    assert kinds.count("RequestFailed") == 2 and kinds.count("EndpointsDown") == 8, kinds
    assert isinstance(later, EndpointsDown) and later_s < 0.1
    assert not isinstance(later, RequestFailed)  # the pipeline must not turn it into a rejection
    message = str(later)
    assert dead.split("//")[1].split("/")[0] in message and "3 requests in a row" in message
    assert "connection error" in message and "rerun" in message


def test_breaker_opens_after_seconds_without_an_answer(http_client: str, plain: FakeServerProcess) -> None:
    plain.set_script([{"match": "*", "fault": {"status": 503}}])
    b = backend([plain.base_url], http_client, max_attempts=10_000, bench_after=99, breaker_after_s=0.5)
    start = time.monotonic()
    (result,) = asyncio.run(gather(b, request()))
    assert isinstance(result, EndpointsDown) and "HTTP 503" in str(result)
    assert 0.45 <= time.monotonic() - start < 2.5


def test_everything_down_with_default_benching_ends_in_seconds() -> None:
    """The issue's case: the only endpoint down, five items, default retry and bench settings (took
    152 s). The bench (30 s) must not outlast the breaker."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    b = OpenAICompatBackend([dead], "fake-model", breaker_after_s=1.0)
    start = time.monotonic()
    results = asyncio.run(gather(b, *(request(f"s{i}") for i in range(5))))
    assert time.monotonic() - start < 4
    assert all(isinstance(r, EndpointsDown) for r in results), results


def test_a_success_closes_the_failure_streak(plain: FakeServerProcess) -> None:
    plain.set_script([{"match": "bad", "fault": {"status": 500}}])
    b = backend([plain.base_url], max_attempts=1, bench_after=99, breaker_after_requests=2)

    async def scenario() -> list[str]:
        kinds = []
        try:
            for text in ("bad 1", "good", "bad 2", "good", "bad 3", "bad 4", "good"):
                try:
                    await b.complete(request(text))
                    kinds.append("ok")
                except (RequestFailed, EndpointsDown) as exc:
                    kinds.append(type(exc).__name__)
        finally:
            await b.aclose()
        return kinds

    assert asyncio.run(scenario()) == ["RequestFailed", "ok", "RequestFailed", "ok", "RequestFailed",
                                       "EndpointsDown", "EndpointsDown"]


# -- items 5 and 6: configuration is checked before the first request ------------------------------


@pytest.mark.parametrize("url, words", [
    ("http://user:hunter2@127.0.0.1:9/v1", "OPENAI_API_KEY"),
    ("https://user@api.example.com/v1", "OPENAI_API_KEY"),
    ("ftp://127.0.0.1/v1", "http:// or https://"),
    ("localhost:8000/v1", "http:// or https://"),
    ("http:///v1", "no host"),
    ("http://127.0.0.1:port/v1", "not a valid URL"),
])
def test_bad_endpoint_urls_are_usage_errors(url: str, words: str) -> None:
    with pytest.raises(UsageError, match=words) as info:
        OpenAICompatBackend([url], "m")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("option, value", [
    ("timeout_s", 0), ("timeout_s", -1), ("timeout_s", math.nan), ("timeout_s", math.inf),
    ("max_attempts", 0), ("max_response_bytes", 0), ("bench_after", 0), ("bench_s", -1),
    ("breaker_after_s", 0), ("breaker_after_requests", 0), ("max_in_flight", 0),
])
def test_nonsense_numbers_are_usage_errors(option: str, value: float) -> None:
    with pytest.raises(UsageError, match=option):
        OpenAICompatBackend(["http://127.0.0.1:9/v1"], "m", **{option: value})
