"""The HTTP library the ``openai`` SDK is built on: ``httpx2`` from openai 3, ``httpx`` before.

``cast_to=Response`` makes the SDK hand back the raw answer; :class:`CappedStream` bounds what is
read of it (see :class:`~.transport.OpenAISDKTransport`); the exception types are those the body
read may raise once the SDK has handed the response over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

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

from .transport import AnswerTooLarge

__all__ = ["CappedStream", "HTTPError", "Response", "StreamError", "TimeoutException"]


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
