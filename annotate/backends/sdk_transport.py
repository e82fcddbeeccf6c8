"""The ``openai`` SDK's client as a :class:`~.transport.Transport`.

The HTTP library the SDK is built on is ``httpx2`` from openai 3, ``httpx`` before.
``cast_to=Response`` makes the SDK hand back the raw answer; :class:`CappedStream` bounds what is
read of it; the exception types are those the body read may raise once the SDK has handed the
response over. See :mod:`.transport` for why there are two transports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    from httpx2 import AsyncByteStream, HTTPError, Response, StreamError, TimeoutException
except ImportError:  # pragma: no cover - older openai
    from httpx import (  # type: ignore[no-redef]
        AsyncByteStream,
        HTTPError,
        Response,
        StreamError,
        TimeoutException,
    )

from .transport import (
    DEFAULT_MAX_RESPONSE_BYTES,
    AnswerTooLarge,
    HTTPAnswer,
    TransportConnectionError,
    TransportTimeout,
    completions_url,
    read_capped,
)

__all__ = ["CappedStream", "OpenAISDKTransport"]

POOL_SHARD = 8
"""Connections per SDK client. An endpoint gets several clients (used in turn) rather than one big
pool: httpx's pool checks every idle connection (a ``poll`` syscall each) whenever a request
starts or ends, so its cost per request grows with the pool; at 64 requests in flight one pool
took about a quarter of the client's CPU (cProfile of benchmarks/annotate_throughput.py)."""


class CappedStream(AsyncByteStream):
    """A response byte stream that raises :class:`AnswerTooLarge` after ``limit`` bytes off the wire."""

    def __init__(self, inner: Any, limit: int) -> None:
        self.inner, self.limit = inner, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        async for chunk in self.inner:
            size += len(chunk)
            if size > self.limit:
                raise AnswerTooLarge(self.limit)
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


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
        response.stream = CappedStream(response.stream, self.max_response_bytes)

    async def post(self, body: bytes) -> HTTPAnswer:
        import openai

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
