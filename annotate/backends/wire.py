"""The chat-completions wire format: the request body as it goes out, the answer as it comes back.

Pure functions of the request and of what an endpoint was found to accept
(:class:`~.negotiation.EndpointFormat`), so the body an endpoint gets after any negotiation can be
read (and tested) without a server. The body is serialised once, as the SDK would (compact UTF-8
JSON); the answer is read as leniently as the SDK's ``ChatCompletion``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from openie4pp.schema import SpanConstraintKind

from ..llm import ChatRequest, StructuredMode
from . import append_schema_instruction
from .negotiation import EndpointFormat

__all__ = ["BadCompletion", "encode_body", "parse_completion"]

GRAMMAR_KINDS = ("grammar", "structured_outputs", "guided_grammar")


class BadCompletion(ValueError):
    """A 200 whose body is no chat completion: retried without blaming the endpoint."""


def _schema_name(name: str) -> str:
    """OpenAI wants ``^[a-zA-Z0-9_-]{1,64}$`` for json_schema names."""
    return (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "answer")[:64]


def encode_body(model: str, fmt: EndpointFormat, request: ChatRequest, mode: StructuredMode,
                constraint: SpanConstraintKind = "none") -> bytes:
    """The chat-completions request body, serialised."""
    return json.dumps(build_body(model, fmt, request, mode, constraint), ensure_ascii=False,
                      separators=(",", ":"), allow_nan=False).encode()


def build_body(model: str, fmt: EndpointFormat, request: ChatRequest, mode: StructuredMode,
               constraint: SpanConstraintKind = "none") -> dict[str, Any]:
    """The JSON body of the chat-completions request, sent with structured mode ``mode`` and span
    constraint kind ``constraint`` (the backend's negotiation picks both)."""
    messages = [m.as_dict() for m in request.messages]
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
    elif span is not None and span.enum_schema is not None and constraint == "json_schema_enum":
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {
            "name": _schema_name(request.schema_name), "schema": span.enum_schema, "strict": True}}
    elif schema is not None and mode == "json_schema":
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {
            "name": _schema_name(request.schema_name), "schema": schema, "strict": False}}
    elif schema is not None and mode == "json_object":
        # llama.cpp's extension (the schema next to the type): not in OpenAI's API
        kwargs["response_format"] = {"type": "json_object", "schema": schema}
    elif schema is not None:
        messages = append_schema_instruction(messages, request.schema_name, schema)
    kwargs["messages"] = messages
    return kwargs


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
