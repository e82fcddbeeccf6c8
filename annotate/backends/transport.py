"""How a chat-completions body reaches one endpoint: the ``openai`` SDK's client, or plain aiohttp.

:class:`~.openai_compat.OpenAICompatBackend` owns everything that is policy (retries, benching,
structured-output negotiation, error classification); a transport only moves bytes and says what
came back. Both transports turn the same exchange into the same :class:`HTTPAnswer` (any status)
or raise :class:`TransportTimeout` / :class:`TransportConnectionError`, so the policy code has
one path and the tests can run the same fault matrix over both.

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
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

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


class Transport(Protocol):
    name: str

    async def post(self, body: bytes) -> HTTPAnswer: ...

    async def aclose(self) -> None: ...


def resolve_http_client(setting: str) -> Literal["aiohttp", "openai"]:
    if setting not in ("auto", "aiohttp", "openai"):
        raise ValueError(f"http client must be auto, aiohttp or openai, not {setting!r}")
    has_aiohttp = importlib.util.find_spec("aiohttp") is not None
    if setting == "aiohttp" and not has_aiohttp:
        raise RuntimeError("the aiohttp HTTP client is not installed: pip install 'openai[aiohttp]'")
    if setting == "auto":
        return "aiohttp" if has_aiohttp else "openai"
    return setting  # type: ignore[return-value]


def make_transport(setting: str, base_url: str, api_key: str | None, *, timeout_s: float,
                   max_in_flight: int) -> Transport:
    kind = resolve_http_client(setting)
    if kind == "aiohttp":
        return AiohttpTransport(base_url, api_key, timeout_s=timeout_s)
    return OpenAISDKTransport(base_url, api_key, timeout_s=timeout_s, max_in_flight=max_in_flight)


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

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.timeout_s = timeout_s
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
                content = await response.read()
                return HTTPAnswer(response.status, response.headers, content)
        except asyncio.TimeoutError:  # aiohttp's ServerTimeoutError is one too
            raise TransportTimeout("timed out") from None
        except aiohttp.ClientError as exc:
            raise TransportConnectionError(f"{type(exc).__name__}: {exc}") from None

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

    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float, max_in_flight: int) -> None:
        self.base_url, self.api_key, self.timeout_s = base_url, api_key, timeout_s
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
                                   timeout=self.timeout_s, max_retries=0)
                for _ in range(self.shards)
            ]
        return self.clients

    async def post(self, body: bytes) -> HTTPAnswer:
        import openai

        from ._sdk_http import Response  # the HTTP library the SDK is built on

        clients = self._open()
        self.turn += 1
        client = clients[self.turn % len(clients)]
        try:
            response = await client.post("/chat/completions", cast_to=Response, content=body)
        except openai.APIStatusError as exc:
            return HTTPAnswer(exc.status_code, exc.response.headers, exc.response.content)
        except openai.APITimeoutError:
            raise TransportTimeout("timed out") from None
        except openai.APIConnectionError as exc:
            raise TransportConnectionError(str(exc.__cause__ or exc)) from None
        return HTTPAnswer(response.status_code, response.headers, response.content)

    async def aclose(self) -> None:
        if self._loop is asyncio.get_running_loop():
            for client in self.clients:
                await client.close()
        self.clients, self._loop = [], None
