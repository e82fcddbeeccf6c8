"""Endpoint health: when to bench one endpoint (:class:`EndpointHealth`), and a circuit breaker
for all of them (:class:`CircuitBreaker`).

Why a breaker: with every endpoint down, the retry schedule (several attempts with backoff,
benching) turned each remaining item into a minute of waiting and then a final ``request_failed``
rejection that only ``--retry-failed`` undoes. Past a point, waiting longer only costs time and
buries the cause. The breaker opens when, across all endpoints, there has been no success

* for ``after_s`` seconds since the first endpoint-side failure (connection error, timeout, 5xx), or
* for ``after_requests`` requests in a row that failed after all their attempts,

and from then on every call raises :class:`~openie4pp.errors.EndpointsDown` (it never closes
again: the run stops, finished items are kept, and rerunning the same command continues). Client
errors (4xx), rate limits and bad answers are not the endpoints being down, and do not count.

The bookkeeping is two assignments per success, so it costs nothing on the hot path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from openie4pp.errors import EndpointsDown, UsageError


class CircuitBreaker:
    def __init__(self, *, after_s: float = 120.0, after_requests: int = 20,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not (isinstance(after_s, (int, float)) and math.isfinite(after_s) and after_s > 0):
            raise UsageError(f"breaker_after_s must be a positive number of seconds, not {after_s!r}")
        if isinstance(after_requests, bool) or not isinstance(after_requests, int) or after_requests < 1:
            raise UsageError(f"breaker_after_requests must be an integer >= 1, not {after_requests!r}")
        self.after_s = float(after_s)
        self.after_requests = after_requests
        self._clock = clock
        self.failed_requests = 0
        """Requests in a row that failed endpoint-side after all their attempts."""
        self.failing_since: float | None = None
        """When the first endpoint-side failure since the last success happened (None: all is well)."""
        self.last_error = ""
        self.open_reason: str | None = None

    def success(self) -> None:
        self.failed_requests = 0
        self.failing_since = None

    def attempt_failed(self, detail: str) -> None:
        """One attempt failed endpoint-side (it may still be retried)."""
        if self.failing_since is None:
            self.failing_since = self._clock()
        self.last_error = detail

    def request_failed(self, detail: str) -> None:
        """A request gave up after all its attempts, the last of them failing endpoint-side."""
        self.attempt_failed(detail)
        self.failed_requests += 1

    def deadline(self) -> float | None:
        """When the time criterion opens the breaker (on the ``clock``), or None."""
        return None if self.failing_since is None else self.failing_since + self.after_s

    def check(self, endpoints: Sequence[str]) -> None:
        """Raise :class:`EndpointsDown` if the breaker is (or now becomes) open."""
        if self.open_reason is None:
            if self.failing_since is None:
                return
            if self.failed_requests >= self.after_requests:
                self.open_reason = f"{self.failed_requests} requests in a row failed"
            elif self._clock() - self.failing_since >= self.after_s:
                self.open_reason = f"no answer for {self.after_s:g} s"
            else:
                return
        raise EndpointsDown(
            f"stopped: every endpoint failed ({', '.join(endpoints)}): {self.open_reason}; last error: "
            f"{self.last_error or 'unknown'}. Finished items are kept; rerun the same command to continue "
            f"once the endpoint is back")


class EndpointHealth:
    """What decides benching one endpoint, kept per endpoint.

    Why not "N failures in a row": one poison request (a sentence the server always answers with
    500) fails every attempt it makes, and that alone used to bench the only endpoint for
    ``bench_s``, stalling every healthy item, several times over. So failures are counted per
    *distinct request*:

    * connection-level failures (refused, reset, timed out) in a row, with the requests they came
      from: the endpoint itself is unreachable when several requests fail that way;
    * server errors (5xx) as a rate over the last ``window`` distinct requests: a request counts as
      failed if any of its attempts on this endpoint got a 5xx, as served if none did.

    The backend benches when enough distinct requests failed (see
    :meth:`~.openai_compat.OpenAICompatBackend._should_bench`), never the last healthy endpoint
    for one request's failures. Successes cost one dict lookup (and an insert for a new request).
    """

    __slots__ = ("connection_failures", "connection_requests", "recent", "window")

    def __init__(self, window: int = 20) -> None:
        self.window = window
        self.connection_failures = 0
        self.connection_requests: set[int] = set()
        self.recent: dict[int, bool] = {}
        """request id -> whether it failed with a 5xx here; insertion-ordered, at most ``window``."""

    def succeeded(self, request_id: int) -> None:
        if self.connection_failures:
            self.connection_failures = 0
            self.connection_requests.clear()
        recent = self.recent
        if request_id not in recent:
            recent[request_id] = False
            if len(recent) > self.window:
                del recent[next(iter(recent))]

    def connection_failed(self, request_id: int) -> tuple[int, int]:
        """Record one; return (connection failures in a row, distinct requests among them)."""
        self.connection_failures += 1
        self.connection_requests.add(request_id)
        return self.connection_failures, len(self.connection_requests)

    def server_failed(self, request_id: int) -> tuple[int, int]:
        """Record one; return (distinct requests failed with a 5xx, distinct requests) in the window."""
        recent = self.recent
        recent[request_id] = True
        if len(recent) > self.window:
            del recent[next(iter(recent))]
        return sum(recent.values()), len(recent)

    def clear(self) -> None:
        """A fresh start (after a bench: the endpoint gets a clean record when it is back)."""
        self.connection_failures = 0
        self.connection_requests.clear()
        self.recent.clear()
