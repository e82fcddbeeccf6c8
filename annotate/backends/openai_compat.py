"""OpenAI-compatible HTTP backend: OpenAI itself, vLLM's server, llama.cpp's server, and friends.

One ``AsyncOpenAI`` client per endpoint, with the SDK's own retries switched off so that there is
exactly one retry policy (ours, via tenacity) that knows about several endpoints: a request that
fails on one endpoint is retried on another, an endpoint that keeps failing is benched for a while,
and a server's ``Retry-After`` wins over our backoff. Structured output is negotiated per endpoint
(json_schema -> json_object+schema -> schema in the prompt) because servers differ in what they
accept, and a 400 for an unsupported ``response_format`` must not fail the request.

Span constraints (issue 11, ``--constrain spans``) and structured output are negotiated per
endpoint in the same way (:mod:`.negotiation`); the body each endpoint gets is built by :mod:`.wire`.
Grounding stays the safety net either way.

Limits (issue 10): an endpoint URL is checked when the backend is built (http/https, a host, no
user:password); its query (``?api-version=``) stays on every request and out of everything
written (:mod:`openie4pp.redact`); an answer larger than ``max_response_bytes`` is not read;
benching looks at distinct requests (:class:`~.breaker.EndpointHealth`), so one poison request
cannot bench the only endpoint; and a :class:`~.breaker.CircuitBreaker` stops the run with
:class:`~openie4pp.errors.EndpointsDown` when nothing answers any more.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from openie4pp.errors import UsageError
from openie4pp.redact import redactor, scrub_logs, url_secrets
from openie4pp.schema import SpanConstraintKind

from ..llm import ChatRequest, ChatResponse, RequestFailed, StructuredMode
from .breaker import CircuitBreaker, EndpointHealth
from .negotiation import (
    CONSTRAINT_ORDER,
    MODE_ORDER,
    EndpointFormat,
    check_obeyed,
    constraint_for,
    error_text,
    negotiate_constraint,
    negotiate_mode,
)
from .transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    AiohttpTransport,
    AnswerTooLarge,
    HTTPAnswer,
    Transport,
    TransportConnectionError,
    TransportTimeout,
    check_endpoint_url,
    endpoint_name,
    is_loopback,
    parse_retry_after,
)
from .wire import BadCompletion, encode_body, parse_completion

__all__ = ["OpenAICompatBackend", "check_endpoint_url", "endpoint_name", "is_loopback", "parse_retry_after"]

log = logging.getLogger(__name__)

StructuredSetting = Literal["auto", "json_schema", "json_object", "none"]
ConstraintSetting = Literal["auto", "grammar", "structured_outputs", "guided_grammar", "json_schema_enum",
                            "none"]
HTTPClientSetting = Literal["auto", "aiohttp", "openai"]
_RETRY_STATUSES = frozenset({408, 409, 429})
_LIBRARY_LOGGERS = ("openai", "openai._base_client", "httpx", "httpx2", "httpcore", "aiohttp.client")
"""Loggers of the HTTP libraries below us that print request URLs (query included) at INFO/DEBUG."""


class _Retryable(Exception):
    """An attempt failed in a way that another attempt may fix (429, 5xx, timeout, connection)."""

    def __init__(self, detail: str, *, status: int | None, endpoint: _Endpoint,
                 retry_after: float | None = None, endpoint_fault: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.endpoint = endpoint
        self.retry_after = retry_after
        self.endpoint_fault = endpoint_fault


class _Fatal(Exception):
    """An attempt failed in a way that repeating cannot fix (400, 401, 403, 404, 422...)."""

    def __init__(self, detail: str, *, status: int | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(eq=False, kw_only=True)
class _Endpoint(EndpointFormat):
    """One endpoint: how to reach it, what it accepts (negotiated), how loaded and healthy it is."""

    transport: Transport
    in_flight: int = 0
    benched_until: float = 0.0
    health: EndpointHealth = field(default_factory=EndpointHealth)


def _check_number(name: str, value: Any, *, integer: bool = False, minimum: float = 0.0,
                  strict: bool = True) -> None:
    """``value`` must be a finite number above (``strict``) or at least ``minimum``."""
    kind_ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not kind_ok or not math.isfinite(value) or (
            value <= minimum if strict else value < minimum):
        what = "an integer" if integer else "a finite number"
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        flag = {"timeout_s": " (--timeout)"}.get(name, "")
        raise UsageError(f"{name}{flag} must be {what} {bound}, not {value!r}")


def resolve_http_client(setting: str) -> Literal["aiohttp", "openai"]:
    """``auto`` is aiohttp where it is installed (see :mod:`.transport` for why), else the SDK."""
    if setting not in ("auto", "aiohttp", "openai"):
        raise UsageError(f"http client must be auto, aiohttp or openai, not {setting!r}")
    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    if setting == "aiohttp" and not has_aiohttp:
        raise UsageError("the aiohttp HTTP client is not installed: pip install 'openai[aiohttp]'")
    if setting == "auto":
        return "aiohttp" if has_aiohttp else "openai"
    return setting  # type: ignore[return-value]


def make_transport(kind: Literal["aiohttp", "openai"], base_url: str, api_key: str | None, *,
                   timeout_s: float, max_in_flight: int,
                   max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> Transport:
    if kind == "aiohttp":
        return AiohttpTransport(base_url, api_key, timeout_s=timeout_s, max_response_bytes=max_response_bytes)
    from .sdk_transport import OpenAISDKTransport  # needs the SDK's HTTP library: only when chosen

    return OpenAISDKTransport(base_url, api_key, timeout_s=timeout_s, max_in_flight=max_in_flight,
                              max_response_bytes=max_response_bytes)


class OpenAICompatBackend:
    """:class:`~openie4pp.annotate.llm.Backend` over one or more OpenAI-compatible endpoints.

    ``backoff_base_s``/``backoff_max_s`` shape the exponential backoff with full jitter (tests make
    them tiny); ``bench_after`` failures from distinct requests bench an endpoint for ``bench_s``
    (see :class:`~.breaker.EndpointHealth`). ``latency_s`` in the answer is the wall time of
    :meth:`complete`, retries included: what the pipeline waited. ``max_response_bytes`` caps an
    answer's body (over it: a failed request, not retried). ``breaker_after_s`` /
    ``breaker_after_requests``: see :class:`~.breaker.CircuitBreaker`. ``http_client``: ``auto``
    (aiohttp when installed, else the SDK), ``aiohttp`` or ``openai`` (see :mod:`.transport`);
    ``max_in_flight`` (the caller's concurrency) sizes the SDK's connection pools; more requests
    than that still work.
    """

    def __init__(self, endpoints: list[str], model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 timeout_s: float = 60, max_attempts: int = 6, structured: StructuredSetting = "auto",
                 bench_s: float = 30, max_retry_wait_s: float = 60, backoff_base_s: float = 0.5,
                 backoff_max_s: float = 20, bench_after: int = 3, max_in_flight: int = 16,
                 http_client: HTTPClientSetting = "auto",
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, breaker_after_s: float = 120,
                 breaker_after_requests: int = 20, constrain_via: ConstraintSetting = "auto") -> None:
        if not endpoints:
            raise UsageError("OpenAICompatBackend needs at least one endpoint URL")
        for url in endpoints:
            check_endpoint_url(url, api_key_env)
        if structured not in ("auto", *MODE_ORDER):
            raise UsageError(f"structured must be auto, json_schema, json_object or none, not {structured!r}")
        if constrain_via not in ("auto", *CONSTRAINT_ORDER):
            raise UsageError(f"constrain_via must be auto or one of {', '.join(CONSTRAINT_ORDER)}, "
                             f"not {constrain_via!r}")
        _check_number("timeout_s", timeout_s)
        for name, value in (("bench_s", bench_s), ("max_retry_wait_s", max_retry_wait_s),
                            ("backoff_base_s", backoff_base_s), ("backoff_max_s", backoff_max_s)):
            _check_number(name, value, strict=False)
        for name, value in (("max_attempts", max_attempts), ("bench_after", bench_after),
                            ("max_in_flight", max_in_flight), ("max_response_bytes", max_response_bytes)):
            _check_number(name, value, integer=True, minimum=1, strict=False)
        self._breaker = CircuitBreaker(after_s=breaker_after_s, after_requests=breaker_after_requests)
        self.model = model
        self.structured = structured
        self.constrain_via = constrain_via
        self.max_attempts = max_attempts
        self.bench_s = bench_s
        self.bench_after = bench_after
        self.max_retry_wait_s = max_retry_wait_s
        self._backoff = wait_random_exponential(multiplier=backoff_base_s, max=backoff_max_s)
        key = os.environ.get(api_key_env) or None
        remote = [endpoint_name(url) for url in endpoints if not is_loopback(url)]
        if key is None and remote:
            raise UsageError(
                f"no API key for {', '.join(remote)}: set the environment variable {api_key_env}")
        secrets = [key, *(secret for url in endpoints for secret in url_secrets(url))]
        self._redact = redactor(secrets)  # a server may echo the key (OpenAI's 401 does) or our URL
        scrub_logs(_LIBRARY_LOGGERS, secrets)
        start_mode: StructuredMode = "json_schema" if structured == "auto" else structured
        start_constraint: SpanConstraintKind = "grammar" if constrain_via == "auto" else constrain_via
        self.http_client = resolve_http_client(http_client)
        self._endpoints = [
            _Endpoint(name=endpoint_name(url), mode=start_mode, constraint=start_constraint,
                      transport=make_transport(
                self.http_client, url, key, timeout_s=timeout_s, max_in_flight=max_in_flight,
                max_response_bytes=max_response_bytes))
            for url in endpoints
        ]
        self._names = [ep.name for ep in self._endpoints]
        self._rr = 0
        self._request_ids = 0

    def __repr__(self) -> str:
        names = ", ".join(ep.name for ep in self._endpoints)
        return (f"OpenAICompatBackend(model={self.model!r}, endpoints=[{names}], "
                f"structured={self.structured!r}, http_client={self.http_client!r})")

    async def aclose(self) -> None:
        for ep in self._endpoints:
            await ep.transport.aclose()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """The answer, or :class:`RequestFailed`; :class:`~openie4pp.errors.EndpointsDown` once
        the circuit breaker is open (for this and every later request)."""
        start = time.monotonic()
        self._request_ids += 1
        rid = self._request_ids  # tells the attempts of one request from those of many
        try:
            # the common case, one attempt that works, skips the retry machinery (tenacity costs
            # ~0.15 ms of CPU per loop, a twentieth of the client's budget at 300 requests/s)
            response, attempts = await self._attempt(request, None, rid), 1
        except _Retryable as first:
            response, attempts = await self._retry(request, first, rid)
        except _Fatal as exc:
            raise RequestFailed(exc.detail, status=exc.status, retries=0) from None
        response.latency_s = time.monotonic() - start
        response.retries = attempts - 1
        return response

    async def _retry(self, request: ChatRequest, first: _Retryable, rid: int) -> tuple[ChatResponse, int]:
        """Attempts 2.. after ``first`` failed: tenacity's loop, whose first iteration replays the
        failure it did not see, so waits, attempt numbers and logs are as if it had run them all."""
        attempts = 0
        avoid: _Endpoint | None = first.endpoint
        replay: _Retryable | None = first
        retrying = AsyncRetrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait,
                                 retry=retry_if_exception_type(_Retryable), before_sleep=self._log_retry,
                                 reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    if replay is not None:
                        failed, replay = replay, None
                        raise failed
                    try:
                        response = await self._attempt(request, avoid, rid)
                    except _Retryable as exc:
                        avoid = exc.endpoint
                        raise
        except _Retryable as exc:
            if exc.endpoint_fault:
                self._breaker.request_failed(exc.detail)
                self._breaker.check(self._names)  # this failure may be the one that opens it
            transient = exc.endpoint_fault or exc.status in _RETRY_STATUSES
            raise RequestFailed(f"{exc.detail} (gave up after {attempts} attempts)", status=exc.status,
                                retries=attempts - 1, transient=transient) from None
        except _Fatal as exc:
            raise RequestFailed(exc.detail, status=exc.status, retries=attempts - 1) from None
        return response, attempts

    # -- retry policy -------------------------------------------------------------------------

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable):
            if exc.retry_after is not None:
                return min(exc.retry_after, self.max_retry_wait_s)
            if exc.endpoint_fault and self._healthy(exclude=exc.endpoint):
                return 0.0  # fail over to another endpoint at once; the broken one is not the bottleneck
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("attempt %d failed: %s; retrying in %.2fs", state.attempt_number,
                    getattr(exc, "detail", type(exc).__name__), wait)

    # -- endpoint choice ----------------------------------------------------------------------

    def _healthy(self, exclude: _Endpoint | None = None) -> list[_Endpoint]:
        now = time.monotonic()
        return [ep for ep in self._endpoints if ep.benched_until <= now and ep is not exclude]

    async def _acquire(self, avoid: _Endpoint | None) -> _Endpoint:
        """Least in flight among unbenched endpoints (ties round-robin), preferring not ``avoid``.

        With every endpoint benched, waits for the first one back, or for the breaker's deadline
        if that comes first (a bench must not outlast the breaker)."""
        while True:
            candidates = self._healthy(exclude=avoid) or self._healthy()
            if candidates:
                least = min(ep.in_flight for ep in candidates)
                tied = [ep for ep in candidates if ep.in_flight == least]
                self._rr += 1
                chosen = tied[self._rr % len(tied)]
                chosen.in_flight += 1  # no await since the choice: atomic under asyncio
                return chosen
            wake = min(ep.benched_until for ep in self._endpoints)
            deadline = self._breaker.deadline()
            if deadline is not None:
                wake = min(wake, deadline)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))
            self._breaker.check(self._names)

    def _should_bench(self, ep: _Endpoint, failures: int, distinct: int) -> bool:
        """``failures`` (from ``distinct`` requests) are enough to bench ``ep``: at least
        ``bench_after`` of them, from two requests or more unless ``bench_after`` is 1, and never the
        last healthy endpoint for one request's failures (a poison request is not the endpoint)."""
        return (failures >= self.bench_after and distinct >= min(2, self.bench_after)
                and (distinct >= 2 or bool(self._healthy(exclude=ep))))

    def _bench(self, ep: _Endpoint, why: str) -> None:
        ep.benched_until = time.monotonic() + self.bench_s
        ep.health.clear()
        log.warning("endpoint %s benched for %.1fs: %s", ep.name, self.bench_s, why)

    def _connection_failed(self, ep: _Endpoint, rid: int, detail: str) -> _Retryable:
        self._breaker.attempt_failed(detail)
        failures, distinct = ep.health.connection_failed(rid)
        if self._should_bench(ep, failures, distinct):
            self._bench(ep, f"{failures} connection failures in a row from {distinct} requests")
        return _Retryable(detail, status=None, endpoint=ep, endpoint_fault=True)

    def _server_failed(self, ep: _Endpoint, rid: int, detail: str) -> None:
        self._breaker.attempt_failed(detail)
        failed, seen = ep.health.server_failed(rid)
        if 2 * failed >= seen and self._should_bench(ep, failed, failed):
            self._bench(ep, f"server errors for {failed} of its last {seen} requests")

    # -- one attempt --------------------------------------------------------------------------

    async def _attempt(self, request: ChatRequest, avoid: _Endpoint | None, rid: int) -> ChatResponse:
        if self._breaker.failing_since is not None:
            self._breaker.check(self._names)
        ep = await self._acquire(avoid)
        try:
            return await self._call(ep, request, rid)
        finally:
            ep.in_flight -= 1

    async def _call(self, ep: _Endpoint, request: ChatRequest, rid: int) -> ChatResponse:
        mode: StructuredMode = ep.mode if request.schema is not None else "none"
        constraint = constraint_for(request, ep.constraint)
        while True:
            try:
                answer = await ep.transport.post(encode_body(self.model, ep, request, mode, constraint))
            except TransportTimeout:
                raise self._connection_failed(ep, rid, f"{ep.name}: timed out") from None
            except TransportConnectionError as exc:
                raise self._connection_failed(
                    ep, rid, f"{ep.name}: connection error ({self._redact(str(exc))})") from None
            except AnswerTooLarge as exc:  # the same request would get the same answer: not retried
                raise _Fatal(f"{ep.name}: {exc} (max_response_bytes)", status=None) from None
            if 200 <= answer.status < 300:
                break
            if constraint != "none":
                lower_constraint = negotiate_constraint(ep, request, constraint, answer,
                                                        pinned=self.constrain_via != "auto")
                if lower_constraint is not None:
                    constraint = lower_constraint
                    continue
            lower = negotiate_mode(ep, request, mode, answer, pinned=self.structured != "auto")
            if lower is None:
                raise self._classify(ep, answer, rid)
            mode = lower
        ep.health.succeeded(rid)
        if self._breaker.failing_since is not None:
            self._breaker.success()
        try:
            content, prompt_tokens, completion_tokens = parse_completion(answer.content)
        except BadCompletion as exc:  # retried without blaming the endpoint
            raise _Retryable(f"{ep.name}: {exc}", status=None, endpoint=ep) from None
        if constraint != "none":
            constraint = check_obeyed(ep, request, constraint, content, pinned=self.constrain_via != "auto")
        structured: StructuredMode = "json_schema" if constraint == "json_schema_enum" else (
            "none" if constraint != "none" else mode)
        return ChatResponse(content=content, model=self.model, endpoint=ep.name, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, structured=structured, constraint=constraint)

    def _classify(self, ep: _Endpoint, answer: HTTPAnswer, rid: int) -> Exception:
        status = answer.status
        detail = f"{ep.name}: HTTP {status}: {self._redact(error_text(answer))[:500]}"
        if status >= 500:
            self._server_failed(ep, rid, detail)
            return _Retryable(detail, status=status, endpoint=ep, endpoint_fault=True,
                              retry_after=parse_retry_after(answer.headers))
        if status in _RETRY_STATUSES:
            return _Retryable(detail, status=status, endpoint=ep,
                              retry_after=parse_retry_after(answer.headers))
        return _Fatal(detail, status=status)
