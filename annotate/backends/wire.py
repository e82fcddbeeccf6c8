"""The chat-completions wire format: the request body as it goes out, the answer as it comes back.

Pure functions of the request and of what an endpoint was found to accept
(:class:`~.negotiation.EndpointFormat`), so the body an endpoint gets after any negotiation can be
read (and tested) without a server. The body is serialised once, as the SDK would (compact UTF-8
JSON); the answer is read as leniently as the SDK's ``ChatCompletion``.

Why :func:`encode_body` serialises piecewise: of a ~6 KB extract body, ~5.5 KB (the system prompt,
the few-shot pairs, the answer schema) is the same for every request of a prompt and language, and
``json.dumps`` of the whole body was the client's largest single CPU cost (~90 µs a request, at
300 requests/s on two cores). Those shared parts are serialised once and joined with the few that
change; the bytes are exactly those of ``json.dumps(build_body(...))`` (compact, UTF-8), which
``tests/test_throughput_wire.py`` checks.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from openie4pp.schema import SpanConstraintKind

from ..llm import ChatRequest, Message, StructuredMode
from . import append_schema_instruction
from .negotiation import EndpointFormat

__all__ = ["BadCompletion", "encode_body", "parse_completion"]

GRAMMAR_KINDS = ("grammar", "structured_outputs", "guided_grammar")


class BadCompletion(ValueError):
    """A 200 whose body is no chat completion: retried without blaming the endpoint."""


def _schema_name(name: str) -> str:
    """OpenAI wants ``^[a-zA-Z0-9_-]{1,64}$`` for json_schema names."""
    return (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "answer")[:64]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
"""``json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)``, without
building an encoder per call (a few microseconds each, a dozen times per body)."""


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def encode_body(model: str, fmt: EndpointFormat, request: ChatRequest, mode: StructuredMode,
                constraint: SpanConstraintKind = "none") -> bytes:
    """The chat-completions request body, serialised: ``json.dumps(build_body(...))``, compact
    UTF-8, with the parts that many requests share serialised once (see the module docstring)."""
    fields, schema_via = _fields(model, fmt, request, mode, constraint)
    if schema_via == "prompt":  # a server without structured output: rare, serialised as a whole
        return _dumps(build_body(model, fmt, request, mode, constraint)).encode()
    parts = [b"{", _head_json(fields)]
    if schema_via is not None:
        parts += (b',"response_format":', _format_json(request, schema_via))
    parts.append(b',"messages":[')
    messages = request.messages
    if len(messages) > 1:
        parts += (_prefix_json(tuple(messages[:-1])), b",")
    if messages:
        parts.append(_dumps(messages[-1].as_dict()).encode())
    parts.append(b"]}")
    return b"".join(parts)


def build_body(model: str, fmt: EndpointFormat, request: ChatRequest, mode: StructuredMode,
               constraint: SpanConstraintKind = "none") -> dict[str, Any]:
    """The JSON body of the chat-completions request, sent with structured mode ``mode`` and span
    constraint kind ``constraint`` (the backend's negotiation picks both)."""
    kwargs, schema_via = _fields(model, fmt, request, mode, constraint)
    messages = [m.as_dict() for m in request.messages]
    if schema_via is not None:
        assert request.schema is not None
        if schema_via == "prompt":
            messages = append_schema_instruction(messages, request.schema_name, request.schema)
        else:
            kwargs["response_format"] = _response_format(request.schema, schema_via, request.schema_name)
    kwargs["messages"] = messages
    return kwargs


SchemaVia = Literal["json_schema", "json_object", "prompt"]


def _fields(model: str, fmt: EndpointFormat, request: ChatRequest, mode: StructuredMode,
            constraint: SpanConstraintKind) -> tuple[dict[str, Any], SchemaVia | None]:
    """The body's fields before ``messages``, in the body's order, except a ``response_format``
    carrying the request's own schema; and how that schema is sent: in that ``response_format``
    (``json_schema``, ``json_object``), appended to the prompt (``prompt``), or not at all (None:
    none, or a span constraint replaced it)."""
    kwargs: dict[str, Any] = {"model": model, "temperature": request.temperature,
                              fmt.max_tokens_field: request.max_tokens}
    if request.seed is not None:
        kwargs["seed"] = request.seed
    schema = request.schema
    span = request.constraint
    if span is not None and constraint in GRAMMAR_KINDS:
        # a grammar replaces response_format (llama.cpp refuses both; vLLM takes one). The
        # schema is not added to the prompt: the grammar fixes the shape, the prompt says what
        # each field means, and the schema's ~400 tokens at the prompt's end (past any cached
        # prefix) cost 8 s per request on two cores with the embedded 1.5B model
        if constraint == "grammar":
            kwargs["grammar"] = span.gbnf
        elif constraint == "structured_outputs":
            kwargs["structured_outputs"] = {"grammar": span.gbnf}
        else:
            kwargs["guided_grammar"] = span.gbnf
        return kwargs, None
    if span is not None and span.enum_schema is not None and constraint == "json_schema_enum":
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {
            "name": _schema_name(request.schema_name), "schema": span.enum_schema, "strict": True}}
        return kwargs, None
    if schema is None:
        return kwargs, None
    return kwargs, mode if mode in ("json_schema", "json_object") else "prompt"


def _response_format(schema: dict[str, Any], mode: SchemaVia, name: str) -> dict[str, Any]:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": _schema_name(name), "schema": schema,
                                                       "strict": False}}
    # llama.cpp's extension (the schema next to the type): not in OpenAI's API
    return {"type": "json_object", "schema": schema}


_CACHE_MAX = 256
_FORMATS: dict[tuple[int, str, str], tuple[dict[str, Any], bytes]] = {}
"""(id of the schema dict, mode, name) -> (that dict, its ``response_format`` JSON). Keyed by
identity, checked on every hit (an id can be reused once a dict is gone): a prompt hands the same
read-only schema dict to all its requests (:attr:`ChatRequest.schema`)."""
_PREFIXES: dict[tuple[Message, ...], bytes] = {}
"""The messages before the last (system prompt, few-shot pairs) -> their JSON. Frozen messages,
keyed by value: each request has a new tuple of the same message objects, which hash and compare
in a microsecond or two."""
_HEADS: dict[tuple[Any, ...], bytes] = {}
"""The scalar fields (model, temperature, max_tokens, seed) -> their JSON: the same for a whole
run. Keyed with each value's type, since ``0 == 0.0 == False`` would otherwise share one entry."""


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:  # keep the newer half: a run uses a handful of prompts and languages
        for old in list(cache)[: _CACHE_MAX // 2]:
            cache.pop(old, None)
    cache[key] = value


def _head_json(fields: dict[str, Any]) -> bytes:
    """The fields before ``response_format`` and ``messages``, as JSON without the braces."""
    try:
        key = tuple((name, type(value), value) for name, value in fields.items())
        text = _HEADS.get(key)
    except TypeError:  # an unhashable value (a structured_outputs grammar dict): not kept
        return ",".join(f"{_dumps(name)}:{_dumps(value)}" for name, value in fields.items()).encode()
    if text is None:
        text = ",".join(f"{_dumps(name)}:{_dumps(value)}" for name, value in fields.items()).encode()
        if not any(isinstance(v, str) and len(v) > 256 for v in fields.values()):  # not a grammar
            _bounded_put(_HEADS, key, text)
    return text


def _format_json(request: ChatRequest, mode: SchemaVia) -> bytes:
    schema, name = request.schema, request.schema_name
    assert schema is not None
    key = (id(schema), mode, name)
    hit = _FORMATS.get(key)
    if hit is not None and hit[0] is schema:
        return hit[1]
    text = _dumps(_response_format(schema, mode, name)).encode()
    _bounded_put(_FORMATS, key, (schema, text))
    return text


def _prefix_json(prefix: tuple[Message, ...]) -> bytes:
    text = _PREFIXES.get(prefix)
    if text is None:
        text = ",".join(_dumps(m.as_dict()) for m in prefix).encode()
        _bounded_put(_PREFIXES, prefix, text)
    return text


def parse_completion(raw: bytes) -> tuple[str, int, int]:
    """Content, prompt tokens and completion tokens of a chat-completions answer body.

    As lenient as the SDK's ``ChatCompletion``, which it builds without validation: a missing or
    null ``content`` is "", a missing ``usage`` is 0 tokens. An answer that is not a JSON object
    or has no choice raises :class:`BadCompletion`.
    """
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: an envelope nested thousands deep
        data = None
    if not isinstance(data, dict):
        raise BadCompletion("bad response (not a JSON object)")
    choices = data.get("choices")
    if not choices or not isinstance(choices, list):
        raise BadCompletion("answer without choices")
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return (content if isinstance(content, str) else "", _count(usage.get("prompt_tokens")),
            _count(usage.get("completion_tokens")))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
