"""How a chat-completions body reaches one endpoint: what every transport says, and plain aiohttp.

:class:`~.openai_compat.OpenAICompatBackend` owns everything that is policy (retries, benching,
structured-output negotiation, error classification); a transport only moves bytes and says what
came back. Both transports turn the same exchange into the same :class:`HTTPAnswer` (any status)
or raise :class:`TransportTimeout` / :class:`TransportConnectionError` /
:class:`AnswerTooLarge`, so the policy code has one path and the tests can run the same fault
matrix over both.

Both read at most ``max_response_bytes`` of an answer: a body announced (``Content-Length``) or
found to be larger is abandoned as soon as that is known, so a misbehaving server or proxy cannot
make one request hold hundreds of megabytes (a chat completion is a few kilobytes).

Why two. The SDK is the reference client, but it does a lot per request that a pre-serialised
body does not need (request-options models, URL objects, header merging, the httpx layers). On
two CPU cores, 64 requests in flight at 200 ms latency (``benchmarks/annotate_throughput.py``),
the whole pipeline reaches 0.94-0.97 of the ideal rate over aiohttp (1.0-1.2 ms of client CPU
per request, of which aiohttp and the loopback are ~0.4; a bare aiohttp loop with no pipeline at
all reaches 0.96-0.97 on the same machine) and 0.69 over the SDK (4.1 ms per request, measured
before the pipeline's own costs were cut). aiohttp is also what the SDK itself uses for high concurrency
(``openai[aiohttp]``), so ``auto`` picks it when it is installed and the SDK otherwise; the wire
format is the same (a JSON POST with a bearer token), and the tests run both. The SDK's transport
lives in :mod:`.sdk_transport` (it needs the SDK's HTTP library); this module, which it builds on,
needs no optional dependency to be imported.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from openie4pp.errors import UsageError
from openie4pp.redact import redact_url


@dataclass(frozen=True)
class HTTPAnswer:
    status: int
    headers: Mapping[str, str]
    """Case-insensitive (both libraries' header types are)."""
    content: bytes


class TransportTimeout(Exception):
    """No complete answer within the timeout."""


class TransportConnectionError(Exception):
    """The connection failed, broke or was closed before a complete answer."""


class AnswerTooLarge(Exception):
    """The answer is larger than the transport's ``max_response_bytes``; it was not read whole."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {limit} bytes")
        self.limit = limit


DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024


def completions_url(base_url: str) -> tuple[str, str]:
    """``(url, path_and_query)`` of the chat-completions route under ``base_url``: the path is
    joined *before* the query, so ``https://x.openai.azure.com/openai/deployments/d?api-version=V``
    becomes ``.../d/chat/completions?api-version=V``. The fragment is dropped (never sent)."""
    parts = urlsplit(base_url)
    path = parts.path.rstrip("/") + "/chat/completions"
    url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    return url, f"/chat/completions?{parts.query}" if parts.query else "/chat/completions"


class Transport(Protocol):
    name: str

    async def post(self, body: bytes) -> HTTPAnswer: ...

    async def aclose(self) -> None: ...


def endpoint_name(url: str) -> str:
    """``host:port`` of an endpoint URL: safe to log (no user:password, no path, no query)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def check_endpoint_url(url: str, api_key_env: str) -> None:
    """Refuse an endpoint URL that cannot work, before the first request: a scheme other than
    http/https, no host, a port that is not a number, or a user:password (which aiohttp refused
    per request, and which would end up in logs and files: the key belongs in the environment)."""
    shown = redact_url(url) if isinstance(url, str) else repr(url)
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except (TypeError, ValueError) as exc:
        raise UsageError(f"endpoint {shown!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"endpoint {shown!r} must start with http:// or https:// "
                         "(e.g. http://127.0.0.1:8000/v1)")
    if not host:
        raise UsageError(f"endpoint {shown!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"endpoint {shown!r} contains a user name or password: remove it from the URL "
                         f"and put the API key in the environment variable {api_key_env} (sent as a "
                         "Bearer token)")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def env_proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, minus ``NO_PROXY``), or None."""
    parts = urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme) or None


class AiohttpTransport:
    """One ``aiohttp.ClientSession`` per endpoint, keep-alive connections, no pool limit (the
    pipeline's concurrency bounds what is in flight). The session is created on first use, inside
    the running event loop, as aiohttp requires, and anew if a later call runs in another loop.
    Proxy settings (``HTTPS_PROXY``, ``NO_PROXY``) apply as they do for the SDK, resolved once per
    endpoint: aiohttp's ``trust_env`` looks them up on every request, ~1 ms of CPU each time."""

    name = "aiohttp"

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.url = completions_url(base_url)[0]
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        self.headers = {"Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": "openie4pp (aiohttp)"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.proxy = env_proxy_for(self.url)
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _open(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers=self.headers,
                raise_for_status=False,
            )
        return self._session

    async def post(self, body: bytes) -> HTTPAnswer:
        import aiohttp

        session = self._open()
        try:
            async with session.post(self.url, data=body, proxy=self.proxy) as response:
                content = await self._read(response)
                return HTTPAnswer(response.status, response.headers, content)
        except asyncio.TimeoutError:  # aiohttp's ServerTimeoutError is one too
            raise TransportTimeout("timed out") from None
        except aiohttp.ClientError as exc:
            raise TransportConnectionError(f"{type(exc).__name__}: {exc}") from None

    async def _read(self, response: Any) -> bytes:
        """The body, at most ``max_response_bytes`` of it (decoded). The common case, an
        uncompressed body with a small ``Content-Length``, is one ``read()`` as before."""
        limit = self.max_response_bytes
        length = response.content_length
        if length is not None and length > limit:
            response.close()  # do not drain it: the connection is dropped, not reused
            raise AnswerTooLarge(limit)
        if length is not None and "Content-Encoding" not in response.headers:
            return bytes(await response.read())
        return await read_capped(response.content.iter_any(), limit, on_abort=response.close)

    async def aclose(self) -> None:
        same_loop = self._loop is asyncio.get_running_loop()
        if self._session is not None and not self._session.closed and same_loop:
            await self._session.close()
        self._session = self._loop = None


async def read_capped(chunks: AsyncIterator[bytes], limit: int, *, on_abort: Any = None) -> bytes:
    """Join ``chunks`` unless they add up to more than ``limit`` bytes: then :class:`AnswerTooLarge`
    (after ``on_abort()``, which drops the connection)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            if on_abort is not None:
                on_abort()
            raise AnswerTooLarge(limit)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)

