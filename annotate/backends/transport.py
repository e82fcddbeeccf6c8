"""How a chat-completions body reaches one endpoint: the ``openai`` SDK's client, or plain aiohttp.

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
the whole pipeline reaches 0.93 of the ideal rate over aiohttp (1.6 ms of client CPU per
request; a bare aiohttp loop with no pipeline at all reaches 0.96 on the same machine) and 0.69
over the SDK (4.1 ms per request). aiohttp is also what the SDK itself uses for high concurrency
(``openai[aiohttp]``), so ``auto`` picks it when it is installed and the SDK otherwise; the wire
format is the same (a JSON POST with a bearer token), and the tests run both.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib.util
import ipaddress
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from openie4pp.errors import UsageError
from openie4pp.redact import redact_url

HTTPClientSetting = Literal["auto", "aiohttp", "openai"]

POOL_SHARD = 8
"""Connections per SDK client. An endpoint gets several clients (used in turn) rather than one big
pool: httpx's pool checks every idle connection (a ``poll`` syscall each) whenever a request
starts or ends, so its cost per request grows with the pool; at 64 requests in flight one pool
took about a quarter of the client's CPU (cProfile of benchmarks/annotate_throughput.py)."""


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


def resolve_http_client(setting: str) -> Literal["aiohttp", "openai"]:
    if setting not in ("auto", "aiohttp", "openai"):
        raise UsageError(f"http client must be auto, aiohttp or openai, not {setting!r}")
    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    if setting == "aiohttp" and not has_aiohttp:
        raise UsageError("the aiohttp HTTP client is not installed: pip install 'openai[aiohttp]'")
    if setting == "auto":
        return "aiohttp" if has_aiohttp else "openai"
    return setting  # type: ignore[return-value]


def make_transport(setting: str, base_url: str, api_key: str | None, *, timeout_s: float,
                   max_in_flight: int, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> Transport:
    kind = resolve_http_client(setting)
    if kind == "aiohttp":
        return AiohttpTransport(base_url, api_key, timeout_s=timeout_s, max_response_bytes=max_response_bytes)
    return OpenAISDKTransport(base_url, api_key, timeout_s=timeout_s, max_in_flight=max_in_flight,
                              max_response_bytes=max_response_bytes)


def env_proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTP(S)_PROXY``, minus ``NO_PROXY``), or None."""
    import urllib.request
    from urllib.parse import urlsplit

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


class OpenAISDKTransport:
    """The official SDK's ``AsyncOpenAI.post`` with the body as raw content (the SDK's recursive,
    type-driven transform of params cost ~2.5 ms of CPU per request) and the raw response back.
    SDK retries are off: the backend's policy is the only one. The clients' connection pools
    belong to one event loop, so a call from another loop gets fresh clients."""

    name = "openai"

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float, max_in_flight: int,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        parts = urlsplit(base_url)
        # the query goes on the request path (the SDK would append paths after it: a 404)
        self.base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self.path = completions_url(base_url)[1]
        self.api_key, self.timeout_s = api_key, timeout_s
        self.max_response_bytes = max_response_bytes
        self.shards = max(1, -(-max_in_flight // POOL_SHARD))
        self.clients: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.turn = 0

    def _open(self) -> list[Any]:
        import openai

        loop = asyncio.get_running_loop()
        if not self.clients or self._loop is not loop:
            self._loop = loop
            self.clients = [
                openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "not-needed",
                                   timeout=self.timeout_s, max_retries=0,
                                   http_client=openai.DefaultAsyncHttpxClient(
                                       timeout=self.timeout_s, event_hooks={"response": [self._cap]}))
                for _ in range(self.shards)
            ]
        return self.clients

    async def _cap(self, response: Any) -> None:
        """httpx response hook, run when the headers are in and before any of the body is read:
        refuse a too-large ``Content-Length`` at once and bound what is read off the wire, also
        for the error bodies the SDK reads itself."""
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > self.max_response_bytes:
            raise AnswerTooLarge(self.max_response_bytes)
        from ._sdk_http import CappedStream

        response.stream = CappedStream(response.stream, self.max_response_bytes)

    async def post(self, body: bytes) -> HTTPAnswer:
        import openai

        from ._sdk_http import HTTPError, Response, StreamError, TimeoutException  # the SDK's HTTP library

        clients = self._open()
        self.turn += 1
        client = clients[self.turn % len(clients)]
        try:
            # stream=True: the SDK hands back the response unread, and the body is read here,
            # decoded and capped (a compressed answer cannot expand past the cap either)
            response = await client.post(self.path, cast_to=Response, content=body,
                                         stream=True, stream_cls=None)
            try:
                content = await read_capped(response.aiter_bytes(), self.max_response_bytes)
            finally:
                await response.aclose()
        except openai.APIStatusError as exc:
            return HTTPAnswer(exc.status_code, exc.response.headers, exc.response.content)
        except openai.APITimeoutError:
            raise TransportTimeout("timed out") from None
        except openai.APIConnectionError as exc:
            raise TransportConnectionError(str(exc.__cause__ or exc)) from None
        except TimeoutException:  # reading the body, after the SDK handed the response over
            raise TransportTimeout("timed out") from None
        except (HTTPError, StreamError) as exc:
            raise TransportConnectionError(f"{type(exc).__name__}: {exc}") from None
        return HTTPAnswer(response.status_code, response.headers, content)

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():
            for client in self.clients:
                await client.close()
        self.clients, self._loop = [], None


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

