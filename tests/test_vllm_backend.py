"""VLLMBackend's batching, prompt building, sampling parameters and output mapping, with a fake engine
that has vLLM's ``LLM.chat`` signature; plus one end-to-end run on a real GPU when vLLM is there."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any

import pytest

from openie4pp.annotate.backends.vllm_engine import (
    SamplingSpec,
    VLLMBackend,
    build_conversation,
    parse_output,
    sampling_spec,
    vllm_params_factory,
)
from openie4pp.annotate.llm import ChatRequest, ChatResponse, Message, RequestFailed

SCHEMA = {"type": "object", "properties": {"triples": {"type": "array"}}, "required": ["triples"]}


def request(text: str, *, schema: dict[str, Any] | None = SCHEMA, temperature: float = 0.0,
            max_tokens: int = 64, seed: int | None = 0) -> ChatRequest:
    return ChatRequest(messages=(Message("system", "sys"), Message("user", text)), schema_name="extraction",
                       schema=schema, temperature=temperature, max_tokens=max_tokens, seed=seed)


def fake_output(text: str, prompt_tokens: int, completion_tokens: int) -> Any:
    completion = types.SimpleNamespace(text=text, token_ids=list(range(completion_tokens)))
    return types.SimpleNamespace(outputs=[completion], prompt_token_ids=list(range(prompt_tokens)))


@dataclass
class FakeEngine:
    """Answers each conversation with ``echo:<last user message>``; records every call."""

    fail: Exception | None = None
    delay_s: float = 0.0
    drop_last: bool = False
    calls: list[tuple[list[list[dict[str, str]]], list[Any]]] = field(default_factory=list)
    threads: list[str] = field(default_factory=list)

    def chat(self, messages: list[list[dict[str, str]]], sampling_params: Any = None,
             use_tqdm: bool = True, **kwargs: Any) -> list[Any]:
        self.calls.append((messages, list(sampling_params)))
        self.threads.append(threading.current_thread().name)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        outputs = [fake_output(f"echo:{conv[-1]['content']}", 3 * len(conv), len(conv[-1]["content"]))
                   for conv in messages]
        return outputs[:-1] if self.drop_last else outputs


def make_backend(engine: FakeEngine, **kwargs: Any) -> VLLMBackend:
    return VLLMBackend("fake/model", engine=engine, params_factory=lambda spec: spec, **kwargs)


async def ask_all(backend: VLLMBackend, requests: list[ChatRequest]) -> list[ChatResponse | BaseException]:
    try:
        return list(await asyncio.gather(*(backend.complete(r) for r in requests), return_exceptions=True))
    finally:
        await backend.aclose()


def test_concurrent_completes_become_one_engine_call_in_order() -> None:
    engine = FakeEngine()
    backend = make_backend(engine)
    requests = [request(f"sentence {i}") for i in range(10)]
    responses = asyncio.run(ask_all(backend, requests))
    assert len(engine.calls) == 1 and len(engine.calls[0][0]) == 10
    assert backend.batch_sizes == [10]
    for i, resp in enumerate(responses):
        assert isinstance(resp, ChatResponse)
        assert resp.content == f"echo:sentence {i}"
        assert resp.prompt_tokens == 6 and resp.completion_tokens == len(f"sentence {i}")
        assert resp.endpoint == "vllm" and resp.model == "fake/model" and resp.structured == "json_schema"
    assert engine.threads[0] != threading.main_thread().name  # the blocking call ran off the loop


def test_per_request_sampling_params_include_guided_json() -> None:
    engine = FakeEngine()
    requests = [request("a", temperature=0.0, max_tokens=10, seed=1),
                request("b", schema=None, temperature=0.7, max_tokens=20, seed=None)]
    asyncio.run(ask_all(make_backend(engine), requests))
    (conversations, params), = engine.calls
    assert params == [SamplingSpec(0.0, 10, 1, SCHEMA), SamplingSpec(0.7, 20, None, None)]
    assert conversations[0] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "a"}]


def test_max_batch_splits_the_queue() -> None:
    engine = FakeEngine(delay_s=0.05)
    backend = make_backend(engine, max_batch=4)
    responses = asyncio.run(ask_all(backend, [request(f"s{i}") for i in range(10)]))
    assert backend.batch_sizes == [4, 4, 2]
    assert [r.content for r in responses if isinstance(r, ChatResponse)] == [f"echo:s{i}" for i in range(10)]


def test_requests_arriving_during_a_batch_form_the_next_batch() -> None:
    engine = FakeEngine(delay_s=0.2)
    backend = make_backend(engine, batch_window_ms=5)

    async def scenario() -> None:
        try:
            first = asyncio.ensure_future(backend.complete(request("first")))
            await asyncio.sleep(0.05)  # the first batch is running now
            rest = await asyncio.gather(*(backend.complete(request(f"late {i}")) for i in range(5)))
            assert (await first).content == "echo:first"
            assert [r.content for r in rest] == [f"echo:late {i}" for i in range(5)]
        finally:
            await backend.aclose()

    asyncio.run(scenario())
    assert backend.batch_sizes == [1, 5]


def test_engine_exception_fails_the_whole_batch_then_recovers() -> None:
    engine = FakeEngine(fail=RuntimeError("CUDA out of memory"))
    backend = make_backend(engine)

    async def scenario() -> tuple[list[Any], ChatResponse]:
        try:
            failed = await asyncio.gather(*(backend.complete(request(f"s{i}")) for i in range(3)),
                                          return_exceptions=True)
            engine.fail = None
            return failed, await backend.complete(request("again"))
        finally:
            await backend.aclose()

    failed, recovered = asyncio.run(scenario())
    assert all(isinstance(f, RequestFailed) for f in failed)
    assert "CUDA out of memory" in str(failed[0]) and "batch of 3" in str(failed[0])
    assert recovered.content == "echo:again"


def test_output_count_mismatch_fails_the_batch() -> None:
    responses = asyncio.run(ask_all(make_backend(FakeEngine(drop_last=True)), [request("a"), request("b")]))
    assert all(isinstance(r, RequestFailed) for r in responses)


def test_without_guided_decoding_the_schema_goes_into_the_prompt() -> None:
    engine = FakeEngine()
    backend = VLLMBackend("m", engine=engine, params_factory=lambda spec: spec, guided=False)
    (resp,) = asyncio.run(ask_all(backend, [request("x")]))
    assert isinstance(resp, ChatResponse) and resp.structured == "none"
    assert '"triples"' in engine.calls[0][0][0][-1]["content"]


def test_pure_helpers() -> None:
    req = request("hello", schema=None)
    assert build_conversation(req, guided=True) == [m.as_dict() for m in req.messages]
    assert sampling_spec(req) == SamplingSpec(0.0, 64, 0, None)
    assert parse_output(fake_output("t", 4, 2)) == ("t", 4, 2)
    with pytest.raises(ValueError):
        parse_output(types.SimpleNamespace(outputs=[]))


def _fake_vllm(monkeypatch: pytest.MonkeyPatch, structured_cls: str | None) -> None:
    """Install a stand-in ``vllm`` package exposing one of the two structured-output APIs."""

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    class Params:  # vLLM's signature: one of json / grammar / regex / choice
        def __init__(self, json: Any = None, grammar: str | None = None) -> None:
            self.json, self.grammar = json, grammar

    vllm = types.ModuleType("vllm")
    vllm.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    sampling = types.ModuleType("vllm.sampling_params")
    if structured_cls is not None:
        setattr(sampling, structured_cls, Params)
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.sampling_params", sampling)


@pytest.mark.parametrize("cls_name, field_name", [("StructuredOutputsParams", "structured_outputs"),
                                                  ("GuidedDecodingParams", "guided_decoding")])
def test_params_factory_uses_the_installed_structured_output_api(monkeypatch: pytest.MonkeyPatch,
                                                                 cls_name: str, field_name: str) -> None:
    _fake_vllm(monkeypatch, cls_name)
    make, guided = vllm_params_factory()
    assert guided
    params = make(SamplingSpec(0.2, 32, 7, SCHEMA))
    assert params.kwargs["temperature"] == 0.2 and params.kwargs["max_tokens"] == 32
    assert params.kwargs["seed"] == 7 and params.kwargs[field_name].json == SCHEMA
    assert field_name not in make(SamplingSpec(0.2, 32, 7, None)).kwargs


@pytest.mark.parametrize("cls_name, field_name", [("StructuredOutputsParams", "structured_outputs"),
                                                  ("GuidedDecodingParams", "guided_decoding")])
def test_a_span_constraint_becomes_the_engines_grammar(monkeypatch: pytest.MonkeyPatch,
                                                       cls_name: str, field_name: str) -> None:
    """Issue 11: the in-process engine decodes under the sentence's GBNF grammar (vLLM's
    ``StructuredOutputsParams(grammar=...)``, or ``GuidedDecodingParams`` before 0.11), which
    replaces the JSON schema; responses report the constraint as ``structured_outputs``."""
    from dataclasses import replace

    from openie4pp.annotate.constraints import build_constraint
    from openie4pp.schema import Sentence

    constraint = build_constraint(Sentence.from_text("Goethe schrieb den Faust.", "de"))
    constrained = replace(request("a"), constraint=constraint)
    spec = sampling_spec(constrained)
    assert spec.grammar == constraint.gbnf and spec.json_schema is None
    _fake_vllm(monkeypatch, cls_name)
    make, _ = vllm_params_factory()
    params = make(spec).kwargs[field_name]
    assert params.grammar == constraint.gbnf and params.json is None

    engine = FakeEngine()
    plain, bound = asyncio.run(ask_all(make_backend(engine), [request("b"), constrained]))
    assert isinstance(plain, ChatResponse) and isinstance(bound, ChatResponse)
    assert (plain.structured, plain.constraint) == ("json_schema", "none")
    assert (bound.structured, bound.constraint) == ("none", "structured_outputs")
    (_, params_seen), = engine.calls
    assert params_seen[1].grammar == constraint.gbnf


def test_params_factory_without_structured_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vllm(monkeypatch, None)
    make, guided = vllm_params_factory()
    assert not guided and set(make(SamplingSpec(0.0, 8, None, SCHEMA)).kwargs) == {
        "temperature", "max_tokens", "seed"}


def test_missing_vllm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    from openie4pp.errors import UsageError

    with pytest.raises(UsageError, match=r"openie4pp\[vllm\]"):
        vllm_params_factory()


@pytest.mark.gpu
@pytest.mark.slow
def test_vllm_end_to_end_on_gpu() -> None:
    pytest.importorskip("vllm", reason="vLLM not installed: pip install 'openie4pp[vllm]'")
    torch = pytest.importorskip("torch", reason="torch not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU: vLLM needs one")
    model = os.environ.get("OPENIE4PP_VLLM_TEST_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    backend = VLLMBackend(model, engine_kwargs={"gpu_memory_utilization": 0.5, "max_model_len": 2048})
    schema = {"type": "object", "properties": {"subject": {"type": "string"}, "object": {"type": "string"}},
              "required": ["subject", "object"]}
    requests = [ChatRequest(messages=(Message("user", f"Give subject and object as JSON: {s}"),),
                            schema_name="pair", schema=schema, max_tokens=64)
                for s in ("Paris is in France.", "Cats chase mice.", "Water boils at 100 degrees.")]
    responses = asyncio.run(ask_all(backend, requests))
    for resp in responses:
        assert isinstance(resp, ChatResponse) and resp.structured == "json_schema"
        assert set(json.loads(resp.content)) >= {"subject", "object"}
    assert backend.batch_sizes == [3]
