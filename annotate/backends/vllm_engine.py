"""In-process vLLM engine behind the ``Backend`` contract, with request batching.

Why batching by hand: the pipeline awaits one ``complete()`` per item from many tasks, but vLLM's
offline ``LLM`` is fastest (and only thread-safe) when it gets *all* pending prompts in one
``chat()`` call and schedules them itself. So ``complete()`` only enqueues; one background task
drains the queue (up to ``max_batch``, waiting at most ``batch_window_ms`` for stragglers) into a
single blocking engine call on a worker thread, and resolves each request's future from the
outputs. Prompt building, sampling-parameter building, batching and output parsing are plain
functions, testable with a fake engine and without a GPU.

Structured output uses vLLM's constrained decoding: ``StructuredOutputsParams(json=schema)``
(vLLM >= 0.11; ``guided_*`` was removed in 0.12), else the older ``GuidedDecodingParams``, else
the schema goes into the prompt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from ...schema import SpanConstraintKind
from ..llm import ChatRequest, ChatResponse, RequestFailed, StructuredMode
from . import append_schema_instruction

INSTALL_HINT = "pip install 'openie4pp[vllm]' (needs a CUDA GPU)"


@dataclass(frozen=True)
class SamplingSpec:
    """What one request asks of the sampler, independent of the vLLM version."""

    temperature: float
    max_tokens: int
    seed: int | None
    json_schema: dict[str, Any] | None
    grammar: str | None = None
    """A span constraint's GBNF grammar (:mod:`openie4pp.annotate.constraints`): it replaces the
    JSON schema, as on vLLM's server, where ``structured_outputs`` takes one of them."""


ParamsFactory = Callable[[SamplingSpec], Any]


@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future[ChatResponse]
    enqueued: float


def sampling_spec(request: ChatRequest) -> SamplingSpec:
    grammar = request.constraint.gbnf if request.constraint is not None else None
    return SamplingSpec(temperature=request.temperature, max_tokens=request.max_tokens, seed=request.seed,
                        json_schema=None if grammar else request.schema, grammar=grammar)


def build_conversation(request: ChatRequest, *, guided: bool) -> list[dict[str, str]]:
    """Chat messages for ``LLM.chat``; without constrained decoding the schema goes into the prompt."""
    messages = [m.as_dict() for m in request.messages]
    if request.schema is not None and not guided:
        return append_schema_instruction(messages, request.schema_name, request.schema)
    return messages


def parse_output(output: Any) -> tuple[str, int, int]:
    """(text, prompt tokens, completion tokens) from a vLLM ``RequestOutput``."""
    if not getattr(output, "outputs", None):
        raise ValueError("engine output without completions")
    first = output.outputs[0]
    return (first.text or "", len(getattr(output, "prompt_token_ids", None) or ()),
            len(getattr(first, "token_ids", None) or ()))


def vllm_params_factory() -> tuple[ParamsFactory, bool]:
    """A ``SamplingSpec -> vllm.SamplingParams`` converter for the installed vLLM, and whether it can
    constrain decoding to a JSON schema."""
    try:
        from vllm import SamplingParams
    except ImportError as exc:
        raise UsageError(f"vLLM is not installed: {INSTALL_HINT}") from exc
    so_cls: Any = None
    field_name = ""
    try:
        from vllm.sampling_params import StructuredOutputsParams

        so_cls, field_name = StructuredOutputsParams, "structured_outputs"
    except ImportError:
        try:
            from vllm.sampling_params import GuidedDecodingParams

            so_cls, field_name = GuidedDecodingParams, "guided_decoding"
        except ImportError:
            pass

    def make(spec: SamplingSpec) -> Any:
        kwargs: dict[str, Any] = {"temperature": spec.temperature, "max_tokens": spec.max_tokens,
                                  "seed": spec.seed}
        if spec.grammar is not None and so_cls is not None:
            kwargs[field_name] = so_cls(grammar=spec.grammar)
        elif spec.json_schema is not None and so_cls is not None:
            kwargs[field_name] = so_cls(json=spec.json_schema)
        return SamplingParams(**kwargs)

    return make, so_cls is not None


async def collect_batch(queue: asyncio.Queue[_Pending], max_batch: int, window_s: float) -> list[_Pending]:
    """Wait for one item, then take whatever arrives within ``window_s`` (up to ``max_batch``)."""
    batch = [await queue.get()]
    deadline = time.monotonic() + window_s
    while len(batch) < max_batch:
        while not queue.empty() and len(batch) < max_batch:
            batch.append(queue.get_nowait())
        remaining = deadline - time.monotonic()
        if len(batch) >= max_batch or remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), remaining))
        except asyncio.TimeoutError:
            break
    return batch


def run_batch(engine: Any, conversations: Sequence[list[dict[str, str]]], params: Sequence[Any]) -> list[Any]:
    """One blocking engine call for the whole batch (runs on a worker thread)."""
    return list(engine.chat(list(conversations), sampling_params=list(params), use_tqdm=False))


class VLLMBackend:
    """:class:`~openie4pp.annotate.llm.Backend` over an in-process ``vllm.LLM``.

    ``engine``/``params_factory``/``guided`` exist for tests (a fake engine with vLLM's ``chat``
    signature); by default the engine is built from ``model`` and ``engine_kwargs`` at once, so a
    missing GPU or model fails here and not in the middle of a run.
    """

    def __init__(self, model: str, *, max_batch: int = 256, batch_window_ms: float = 20,
                 engine_kwargs: dict[str, Any] | None = None, engine: Any = None,
                 params_factory: ParamsFactory | None = None, guided: bool = True) -> None:
        self.model = model
        self.max_batch = max(1, max_batch)
        self.window_s = batch_window_ms / 1000
        if params_factory is None:
            params_factory, guided = vllm_params_factory()
        self._make_params = params_factory
        self.guided = guided
        if engine is None:
            from vllm import LLM

            engine = LLM(model=model, **(engine_kwargs or {}))
        self.engine = engine
        self.batch_sizes: list[int] = []
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, max_batch={self.max_batch})"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._drain(self._queue), name="vllm-batcher")
        future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(request, future, time.monotonic()))
        return await future

    async def _drain(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = await collect_batch(queue, self.max_batch, self.window_s)
            live = [item for item in batch if not item.future.done()]  # callers may have given up
            if live:
                await self._run(live)

    async def _run(self, batch: list[_Pending]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            conversations = [build_conversation(item.request, guided=self.guided) for item in batch]
            params = [self._make_params(sampling_spec(item.request)) for item in batch]
            outputs = await asyncio.to_thread(run_batch, self.engine, conversations, params)
            if len(outputs) != len(batch):
                raise ValueError(f"engine returned {len(outputs)} outputs for {len(batch)} prompts")
            parsed = [parse_output(output) for output in outputs]
        except asyncio.CancelledError:
            _fail(batch, "vLLM backend closed while the batch was running")
            raise
        except Exception as exc:
            _fail(batch, f"vLLM engine failed on a batch of {len(batch)}: {type(exc).__name__}: {exc}")
            return
        now = time.monotonic()
        for item, (text, prompt_tokens, completion_tokens) in zip(batch, parsed, strict=True):
            if item.future.done():
                continue
            item.future.set_result(ChatResponse(
                content=text, model=self.model, endpoint="vllm", prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens, latency_s=now - item.enqueued,
                structured=_structured(item.request, self.guided),
                constraint=_constraint(item.request, self.guided)))

    async def aclose(self) -> None:
        """Stop the batcher and fail whatever is still queued; the engine itself is left to the GC."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while self._queue is not None and not self._queue.empty():
            _fail([self._queue.get_nowait()], "vLLM backend closed")


def _structured(request: ChatRequest, guided: bool) -> StructuredMode:
    return "json_schema" if guided and request.schema is not None and request.constraint is None else "none"


def _constraint(request: ChatRequest, guided: bool) -> SpanConstraintKind:
    """The engine's span constraint is its ``structured_outputs`` grammar (or the older
    ``guided_decoding``): the server's field name, so stats read the same for both."""
    return "structured_outputs" if guided and request.constraint is not None else "none"


def _fail(batch: list[_Pending], detail: str) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(RequestFailed(detail))
