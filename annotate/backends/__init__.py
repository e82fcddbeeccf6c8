"""LLM backends behind the :class:`~openie4pp.annotate.llm.Backend` contract.

* :class:`OpenAICompatBackend` — any OpenAI-compatible HTTP server(s), with retries, balancing,
  benching and structured-output negotiation;
* :class:`CachedBackend` — content-addressed SQLite cache around any backend;
* :class:`RateLimiter` / :class:`LimitedBackend` — client-side requests/tokens-per-minute pacing;
* :class:`LocalLlamaServer` — the embedded llama.cpp server (``[local]`` extra);
* :class:`VLLMBackend` — in-process vLLM with batched, guided decoding (``[vllm]`` extra).

Exports are resolved lazily so that importing the package needs none of the optional
dependencies (``openai`` is only needed for the HTTP backend, ``vllm`` only for its engine).
Typical stack: ``CachedBackend(LimitedBackend(OpenAICompatBackend(...), limiter), path)``.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

__all__ = [
    "CachedBackend",
    "LimitedBackend",
    "LocalLlamaServer",
    "OpenAICompatBackend",
    "RateLimiter",
    "VLLMBackend",
    "append_schema_instruction",
]

_LAZY = {
    "OpenAICompatBackend": "openai_compat",
    "CachedBackend": "cache",
    "RateLimiter": "ratelimit",
    "LimitedBackend": "ratelimit",
    "LocalLlamaServer": "local_server",
    "VLLMBackend": "vllm_engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def append_schema_instruction(messages: list[dict[str, str]], name: str,
                              schema: dict[str, Any]) -> list[dict[str, str]]:
    """Without structured output, the schema goes into the prompt (appended to the last user turn).

    Shared by every backend that may lack constrained decoding, so the fallback prompt is the same
    whichever server answered."""
    note = (f"\n\nAnswer with one JSON object ({name}) only, no prose, matching this JSON schema:\n"
            f"{json.dumps(schema, ensure_ascii=False)}")
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message["role"] == "user":
            message["content"] += note
            return out
    return [*out, {"role": "user", "content": note.strip()}]
