"""OpenAI-compatible HTTP backend: OpenAI itself, vLLM's server, llama.cpp's server, and friends.

One ``AsyncOpenAI`` client per endpoint, with the SDK's own retries switched off so that there is
exactly one retry policy (ours, via tenacity) that knows about several endpoints: a request that
fails on one endpoint is retried on another, an endpoint that keeps failing is benched for a while,
and a server's ``Retry-After`` wins over our backoff. Structured output is negotiated per endpoint
(json_schema -> json_object+schema -> schema in the prompt) because servers differ in what they
accept, and a 400 for an unsupported ``response_format`` must not fail the request.

Span constraints (issue 11, ``--constrain spans``): a request that carries a
:class:`~openie4pp.annotate.constraints.SpanConstraint` is sent, per endpoint, with the first kind
that endpoint accepts: llama.cpp's top-level ``grammar`` (no ``response_format`` then), vLLM's
``structured_outputs: {"grammar": ...}``, vLLM's older ``guided_grammar``, a strict ``json_schema``
whose strings are enums of the spans (where the enum fits OpenAI's limits), else none (today's
request). A 400/422 (or llama-cpp-python's 500 quoting its validation error) that names the field
steps down, remembered per endpoint. Servers that *ignore* an unknown field (vLLM, llama.cpp) answer
200 unconstrained: an answer with a string that is not a span of the sentence is taken as that, and
the endpoint steps down for later requests. Grounding stays the safety net either way.

Limits (issue 10): an endpoint URL is checked when the backend is built (http/https, a host, no
user:password); its query (``?api-version=``) stays on every request and out of everything
written (:mod:`openie4pp.redact`); an answer larger than ``max_response_bytes`` is not read;
benching looks at distinct requests (:class:`~.breaker.EndpointHealth`), so one poison request
cannot bench the only endpoint; and a :class:`~.breaker.CircuitBreaker` stops the run with
:class:`~openie4pp.errors.EndpointsDown` when nothing answers any more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from openie4pp.errors import UsageError
from openie4pp.redact import redactor, scrub_logs, url_secrets

from ..llm import ChatRequest, ChatResponse, ConstraintKind, RequestFailed, StructuredMode
from . import append_schema_instruction
from .breaker import CircuitBreaker, EndpointHealth
from .transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    AnswerTooLarge,
    HTTPAnswer,
    HTTPClientSetting,
    Transport,
    TransportConnectionError,
    TransportTimeout,
    check_endpoint_url,
    endpoint_name,
    is_loopback,
    make_transport,
    parse_retry_after,
    resolve_http_client,
)

__all__ = ["OpenAICompatBackend", "check_endpoint_url", "endpoint_name", "is_loopback", "parse_retry_after"]

log = logging.getLogger(__name__)

StructuredSetting = Literal["auto", "json_schema", "json_object", "none"]
_MODE_ORDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "none")
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "grammar", "structured")
ConstraintSetting = Literal["auto", "grammar", "structured_outputs", "guided_grammar", "json_schema_enum",
                            "none"]
_CONSTRAINT_ORDER: tuple[ConstraintKind, ...] = (
    "grammar", "structured_outputs", "guided_grammar", "json_schema_enum", "none")
_CONSTRAINT_WORDS: dict[ConstraintKind, tuple[str, ...]] = {
    "grammar": ("grammar",),
    "structured_outputs": ("structured_outputs", "grammar"),
    "guided_grammar": ("guided_grammar", "guided", "grammar"),
    "json_schema_enum": ("response_format", "json_schema", "schema", "enum", "strict"),
}
"""Words in an error body that show it rejects the constraint field sent (not something else)."""
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


@dataclass(eq=False)
class _Endpoint:
    name: str
    transport: Transport
    mode: StructuredMode
    in_flight: int = 0
    failures: int = 0
    """Failed attempts in a row (for :meth:`OpenAICompatBackend.endpoint_stats`)."""
    benched_until: float = 0.0
    served: int = 0
    max_tokens_field: str = "max_tokens"
    health: EndpointHealth = field(default_factory=EndpointHealth)
    constraint: ConstraintKind = "grammar"
    """The span-constraint kind to send next (stepped down as the endpoint rejects or ignores kinds)."""


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


def _schema_name(name: str) -> str:
    """OpenAI wants ``^[a-zA-Z0-9_-]{1,64}$`` for json_schema names."""
    return (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "answer")[:64]


def _error_text(answer: HTTPAnswer) -> str:
    """The error body as text (servers put their reason there, as JSON or plain text)."""
    return answer.content[:2000].decode("utf-8", errors="replace").strip()


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
        if structured not in ("auto", *_MODE_ORDER):
            raise UsageError(f"structured must be auto, json_schema, json_object or none, not {structured!r}")
        if constrain_via not in ("auto", *_CONSTRAINT_ORDER):
            raise UsageError(f"constrain_via must be auto or one of {', '.join(_CONSTRAINT_ORDER)}, "
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
        start_constraint: ConstraintKind = "grammar" if constrain_via == "auto" else constrain_via
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

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per endpoint: requests served, in flight, structured mode, and whether it is benched now."""
        now = time.monotonic()
        return [{"endpoint": ep.name, "served": ep.served, "in_flight": ep.in_flight, "mode": ep.mode,
                 "benched": ep.benched_until > now, "failures": ep.failures, "constraint": ep.constraint}
                for ep in self._endpoints]

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
        ep.failures += 1
        self._breaker.attempt_failed(detail)
        failures, distinct = ep.health.connection_failed(rid)
        if self._should_bench(ep, failures, distinct):
            self._bench(ep, f"{failures} connection failures in a row from {distinct} requests")
        return _Retryable(detail, status=None, endpoint=ep, endpoint_fault=True)

    def _server_failed(self, ep: _Endpoint, rid: int, detail: str) -> None:
        ep.failures += 1
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
        constraint = self._constraint_for(ep, request, ep.constraint)
        while True:
            try:
                answer = await ep.transport.post(self._body(ep, request, mode, constraint))
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
                lower_constraint = self._negotiate_constraint(ep, request, constraint, answer)
                if lower_constraint is not None:
                    constraint = lower_constraint
                    continue
            lower = self._negotiate(ep, request, mode, answer)
            if lower is None:
                raise self._classify(ep, answer, rid)
            mode = lower
        ep.failures = 0
        ep.health.succeeded(rid)
        if self._breaker.failing_since is not None:
            self._breaker.success()
        ep.served += 1
        content, prompt_tokens, completion_tokens = _parse_completion(ep, answer.content)
        if constraint != "none":
            constraint = self._check_obeyed(ep, request, constraint, content)
        structured: StructuredMode = "json_schema" if constraint == "json_schema_enum" else (
            "none" if constraint != "none" else mode)
        return ChatResponse(content=content, model=self.model, endpoint=ep.name, prompt_tokens=prompt_tokens,
                            completion_tokens=completion_tokens, structured=structured, constraint=constraint)

    # -- span constraints ---------------------------------------------------------------------

    def _constraint_for(self, ep: _Endpoint, request: ChatRequest, kind: ConstraintKind) -> ConstraintKind:
        """``kind`` or the first kind below it that can carry ``request``'s constraint ("none" for a
        request without one; the enum kind needs an enum schema, which long sentences do not get)."""
        if request.constraint is None:
            return "none"
        if kind == "json_schema_enum" and (request.constraint.enum_schema is None or request.schema is None):
            return "none"
        return kind

    def _step_down(self, ep: _Endpoint, request: ChatRequest, kind: ConstraintKind,
                   why: str) -> ConstraintKind:
        """The kind after ``kind`` for this request; the endpoint remembers it (never upgraded again)."""
        following = _CONSTRAINT_ORDER[_CONSTRAINT_ORDER.index(kind) + 1]
        if _CONSTRAINT_ORDER.index(following) > _CONSTRAINT_ORDER.index(ep.constraint):
            log.info("endpoint %s %s span constraint %s; using %s from now on", ep.name, why, kind, following)
            ep.constraint = following
        return self._constraint_for(ep, request, following)

    def _negotiate_constraint(self, ep: _Endpoint, request: ChatRequest, kind: ConstraintKind,
                              answer: HTTPAnswer) -> ConstraintKind | None:
        """The next constraint kind after a 400/422 (or llama-cpp-python's quoting 500) that rejects
        the field sent, or None when the error is about something else (or the kind is pinned)."""
        text = _error_text(answer).lower()
        words = _CONSTRAINT_WORDS.get(kind, ())
        if answer.status not in (400, 422, 500) or not any(word in text for word in words):
            return None
        if answer.status == 500 and not ("validation" in text or "grammar" in text):
            return None  # any other 500 is a server fault, for the retry policy
        if "max_completion_tokens" in text and ep.max_tokens_field == "max_tokens":
            return None  # the other negotiation's business; the constraint stays
        if self.constrain_via != "auto":
            return None
        return self._step_down(ep, request, kind, f"rejected (HTTP {answer.status})")

    def _check_obeyed(self, ep: _Endpoint, request: ChatRequest, kind: ConstraintKind,
                      content: str) -> ConstraintKind:
        """``kind``, or "none" if the answer shows the endpoint ignored it (a string that is no span,
        or an answer that does not even start as JSON: both impossible under the constraint); then
        later requests to it step down. An answer that starts as JSON but does not parse was cut
        off at ``max_tokens``: that says nothing about the endpoint."""
        assert request.constraint is not None
        bad = request.constraint.violations(content)
        if bad is None and content.lstrip().startswith("{"):
            return kind
        if not bad and bad is not None:
            return kind
        if self.constrain_via == "auto":
            why = f"{bad[0][:40]!r} is not a span of the sentence" if bad else f"prose: {content[:40]!r}"
            self._step_down(ep, request, kind, f"ignored ({why})")
        return "none"

    def _negotiate(self, ep: _Endpoint, request: ChatRequest, mode: StructuredMode,
                   answer: HTTPAnswer) -> StructuredMode | None:
        """The next structured mode to try after a 400/422 that rejects the current one, or None.

        Remembered per endpoint (never upgraded again), so the next request goes straight to the
        mode that works. Negotiation steps are not retries: they do not use up attempts. Also
        switches ``max_tokens`` to ``max_completion_tokens`` where a server asks for that.
        """
        text = _error_text(answer).lower()
        status = answer.status
        # llama-cpp-python's server answers an unsupported response_format with a 500 that quotes
        # its own validation error; any other 500 is a server fault and goes to the retry policy.
        if status not in (400, 422) and not (status == 500 and "response_format" in text):
            return None
        if "max_completion_tokens" in text and ep.max_tokens_field == "max_tokens":
            ep.max_tokens_field = "max_completion_tokens"
            return mode
        if self.structured != "auto" or request.schema is None or mode == "none":
            return None
        if not any(word in text for word in _FORMAT_WORDS):
            return None
        lower = _MODE_ORDER[_MODE_ORDER.index(mode) + 1]
        if _MODE_ORDER.index(lower) > _MODE_ORDER.index(ep.mode):
            log.info("endpoint %s rejected response_format %s (HTTP %d); using %s from now on",
                     ep.name, mode, status, lower)
            ep.mode = lower
        return lower

    def _classify(self, ep: _Endpoint, answer: HTTPAnswer, rid: int) -> Exception:
        status = answer.status
        detail = f"{ep.name}: HTTP {status}: {self._redact(_error_text(answer))[:500]}"
        if status >= 500:
            self._server_failed(ep, rid, detail)
            return _Retryable(detail, status=status, endpoint=ep, endpoint_fault=True,
                              retry_after=parse_retry_after(answer.headers))
        if status in _RETRY_STATUSES:
            return _Retryable(detail, status=status, endpoint=ep,
                              retry_after=parse_retry_after(answer.headers))
        return _Fatal(detail, status=status)

    def _body(self, ep: _Endpoint, request: ChatRequest, mode: StructuredMode,
              constraint: ConstraintKind = "none") -> bytes:
        """The chat-completions request body, serialised once, as the SDK would (compact UTF-8 JSON)."""
        return json.dumps(self._build(ep, request, mode, constraint), ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False).encode()

    def _build(self, ep: _Endpoint, request: ChatRequest, mode: StructuredMode,
               constraint: ConstraintKind = "none") -> dict[str, Any]:
        """The JSON body of the chat-completions request."""
        messages = [m.as_dict() for m in request.messages]
        kwargs: dict[str, Any] = {"model": self.model, "temperature": request.temperature,
                                  ep.max_tokens_field: request.max_tokens}
        if request.seed is not None:
            kwargs["seed"] = request.seed
        schema = request.schema
        span = request.constraint
        if span is not None and constraint in ("grammar", "structured_outputs", "guided_grammar"):
            # a grammar replaces response_format (llama.cpp refuses both; vLLM takes one). The
            # schema is not added to the prompt: the grammar fixes the shape, the prompt says what
            # each field means, and the schema's ~400 tokens at the prompt's end (past any cached
            # prefix) cost 8 s per request on two cores with the embedded 1.5B model
            if constraint == "grammar":
                kwargs["grammar"] = span.gbnf
            elif constraint == "structured_outputs":
                kwargs["structured_outputs"] = {"grammar": span.gbnf}
            else:
                kwargs["guided_grammar"] = span.gbnf
        elif span is not None and span.enum_schema is not None and constraint == "json_schema_enum":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": _schema_name(request.schema_name), "schema": span.enum_schema, "strict": True}}
        elif schema is not None and mode == "json_schema":
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": _schema_name(request.schema_name), "schema": schema, "strict": False}}
        elif schema is not None and mode == "json_object":
            # llama.cpp's extension (the schema next to the type): not in OpenAI's API
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        elif schema is not None:
            messages = append_schema_instruction(messages, request.schema_name, schema)
        kwargs["messages"] = messages
        return kwargs


def _parse_completion(ep: _Endpoint, raw: bytes) -> tuple[str, int, int]:
    """Content, prompt tokens and completion tokens of a chat-completions answer body.

    As lenient as the SDK's ``ChatCompletion``, which it builds without validation: a missing or
    null ``content`` is "", a missing ``usage`` is 0 tokens. An answer that is not a JSON object
    or has no choice is a bad response, retried without blaming the endpoint.
    """
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: an envelope nested thousands deep
        data = None
    if not isinstance(data, dict):
        raise _Retryable(f"{ep.name}: bad response (not a JSON object)", status=None, endpoint=ep)
    choices = data.get("choices")
    if not choices or not isinstance(choices, list):
        raise _Retryable(f"{ep.name}: answer without choices", status=None, endpoint=ep)
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return (content if isinstance(content, str) else "", _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0

