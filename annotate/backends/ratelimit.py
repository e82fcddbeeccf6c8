"""Client-side rate limits (requests and tokens per minute) as an async token bucket.

Why on the client: hosted APIs answer 429 once a limit is crossed, and every 429 costs a round
trip plus a backoff; pacing ourselves keeps a big run just under the limit instead of bouncing
off it. Kept as a wrapper (:class:`LimitedBackend`) so it composes with any backend and sits
*inside* the cache: ``CachedBackend(LimitedBackend(OpenAICompatBackend(...)))`` — cache hits
cost no budget.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ..llm import Backend, ChatRequest, ChatResponse, RequestFailed


class _Bucket:
    """Refills at ``rate`` per second up to ``capacity``; may go into debt for a big single need."""

    def __init__(self, per_minute: float, burst_s: float, min_capacity: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(min_capacity, self.rate * burst_s)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, need: float) -> float:
        """Seconds until ``need`` fits (a need above capacity only waits for a full bucket)."""
        self.refill()
        missing = min(need, self.capacity) - self.level
        return max(0.0, missing / self.rate)


class RateLimiter:
    """``await acquire(estimated_tokens)`` before a request, ``record(actual, estimated_tokens=...)``
    after it: the token bucket is charged the estimate up front and corrected by the difference.

    ``burst_s`` is how many seconds' worth of budget may be spent at once (default 1 s: smooth
    pacing). Waiters are served first come, first served.
    """

    def __init__(self, max_rpm: float | None, max_tpm: float | None, *, burst_s: float = 1.0) -> None:
        if (max_rpm is not None and max_rpm <= 0) or (max_tpm is not None and max_tpm <= 0):
            raise ValueError("rate limits must be positive (or None for no limit)")
        self.max_rpm = max_rpm
        self.max_tpm = max_tpm
        self._requests = _Bucket(max_rpm, burst_s, 1.0) if max_rpm else None
        self._tokens = _Bucket(max_tpm, burst_s, 1.0) if max_tpm else None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RateLimiter(max_rpm={self.max_rpm}, max_tpm={self.max_tpm})"

    async def acquire(self, estimated_tokens: int = 0) -> None:
        async with self._lock:  # FIFO: the head waiter sleeps, later ones queue behind it
            while True:
                wait = 0.0
                if self._requests is not None:
                    wait = max(wait, self._requests.wait_for(1))
                if self._tokens is not None:
                    wait = max(wait, self._tokens.wait_for(estimated_tokens))
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            if self._requests is not None:
                self._requests.level -= 1
            if self._tokens is not None:
                self._tokens.level -= estimated_tokens

    def record(self, actual_tokens: int, *, estimated_tokens: int = 0) -> None:
        """Correct the token bucket once the real usage is known (refund or extra charge)."""
        if self._tokens is not None:
            self._tokens.refill()
            self._tokens.level = min(self._tokens.capacity,
                                     self._tokens.level + estimated_tokens - actual_tokens)


def estimate_tokens(request: ChatRequest) -> int:
    """A cheap upper-ish guess: ~4 characters per token for the prompt plus the whole answer budget."""
    chars = sum(len(m.content) for m in request.messages)
    return chars // 4 + 8 * len(request.messages) + request.max_tokens


class LimitedBackend:
    """Paces ``inner`` with a :class:`RateLimiter`; otherwise transparent."""

    def __init__(self, inner: Backend, limiter: RateLimiter,
                 estimate: Callable[[ChatRequest], int] = estimate_tokens) -> None:
        self.inner = inner
        self.model = inner.model
        self.limiter = limiter
        self._estimate = estimate

    def __repr__(self) -> str:
        return f"LimitedBackend({self.inner!r}, {self.limiter!r})"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        estimated = self._estimate(request)
        await self.limiter.acquire(estimated)
        try:
            response = await self.inner.complete(request)
        except RequestFailed:
            self.limiter.record(0, estimated_tokens=estimated)
            raise
        used = 0 if response.cached else response.prompt_tokens + response.completion_tokens
        self.limiter.record(used, estimated_tokens=estimated)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
