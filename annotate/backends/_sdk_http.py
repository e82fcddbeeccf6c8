"""The HTTP library the ``openai`` SDK is built on: ``httpx2`` from openai 3, ``httpx`` before.

Only :class:`Response` is needed: ``cast_to=Response`` makes the SDK hand back the raw answer."""

try:
    from httpx2 import Response
except ImportError:  # pragma: no cover - older openai
    from httpx import Response  # type: ignore[no-redef]

__all__ = ["Response"]
