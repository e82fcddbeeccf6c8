"""What an OpenAI-compatible endpoint accepts, found out from its answers and only ever stepped down.

Servers differ in what they take: OpenAI's ``json_schema`` response format, llama.cpp's
``json_object`` with the schema attached, or neither (the schema then goes into the prompt); a
llama.cpp ``grammar``, vLLM's ``structured_outputs`` or older ``guided_grammar``, a strict enum
schema, or no span constraint at all. A 400/422 (or llama-cpp-python's 500 quoting its validation
error) that names the field sent steps that endpoint down to the next kind, remembered in its
:class:`EndpointFormat` so the next request goes straight to what works. Servers that *ignore* an
unknown field (vLLM, llama.cpp) answer 200 unconstrained: :func:`check_obeyed` sees it in the
answer. Negotiation steps are not retries: they use up no attempt.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from openie4pp.schema import SpanConstraintKind

from ..llm import ChatRequest, StructuredMode
from .transport import HTTPAnswer

__all__ = [
    "CONSTRAINT_ORDER",
    "MODE_ORDER",
    "EndpointFormat",
    "check_obeyed",
    "constraint_for",
    "error_text",
    "negotiate_constraint",
    "negotiate_mode",
]

log = logging.getLogger(__name__)

MODE_ORDER: tuple[StructuredMode, ...] = ("json_schema", "json_object", "none")
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "grammar", "structured")
CONSTRAINT_ORDER: tuple[SpanConstraintKind, ...] = (
    "grammar", "structured_outputs", "guided_grammar", "json_schema_enum", "none")
_CONSTRAINT_WORDS: dict[SpanConstraintKind, tuple[str, ...]] = {
    "grammar": ("grammar",),
    "structured_outputs": ("structured_outputs", "grammar"),
    "guided_grammar": ("guided_grammar", "guided", "grammar"),
    "json_schema_enum": ("response_format", "json_schema", "schema", "enum", "strict"),
}
"""Words in an error body that show it rejects the constraint field sent (not something else)."""


@dataclass(kw_only=True)
class EndpointFormat:
    """What one endpoint has been found to accept (each only ever stepped down)."""

    name: str
    mode: StructuredMode
    """The structured-output mode to send next."""
    constraint: SpanConstraintKind = "grammar"
    """The span-constraint kind to send next."""
    max_tokens_field: str = "max_tokens"
    """``max_completion_tokens`` for servers that ask for it instead."""


def error_text(answer: HTTPAnswer) -> str:
    """The error body as text (servers put their reason there, as JSON or plain text)."""
    return answer.content[:2000].decode("utf-8", errors="replace").strip()


def constraint_for(request: ChatRequest, kind: SpanConstraintKind) -> SpanConstraintKind:
    """``kind`` or the first kind below it that can carry ``request``'s constraint ("none" for a
    request without one; the enum kind needs an enum schema, which long sentences do not get)."""
    if request.constraint is None:
        return "none"
    if kind == "json_schema_enum" and (request.constraint.enum_schema is None or request.schema is None):
        return "none"
    return kind


def _step_down(fmt: EndpointFormat, request: ChatRequest, kind: SpanConstraintKind,
               why: str) -> SpanConstraintKind:
    """The kind after ``kind`` for this request; the endpoint remembers it (never upgraded again)."""
    following = CONSTRAINT_ORDER[CONSTRAINT_ORDER.index(kind) + 1]
    if CONSTRAINT_ORDER.index(following) > CONSTRAINT_ORDER.index(fmt.constraint):
        log.info("endpoint %s %s span constraint %s; using %s from now on", fmt.name, why, kind, following)
        fmt.constraint = following
    return constraint_for(request, following)


def negotiate_constraint(fmt: EndpointFormat, request: ChatRequest, kind: SpanConstraintKind,
                         answer: HTTPAnswer, *, pinned: bool) -> SpanConstraintKind | None:
    """The next constraint kind after a 400/422 (or llama-cpp-python's quoting 500) that rejects
    the field sent, or None when the error is about something else (or the kind is ``pinned``)."""
    text = error_text(answer).lower()
    words = _CONSTRAINT_WORDS.get(kind, ())
    if answer.status not in (400, 422, 500) or not any(word in text for word in words):
        return None
    if answer.status == 500 and not ("validation" in text or "grammar" in text):
        return None  # any other 500 is a server fault, for the retry policy
    if "max_completion_tokens" in text and fmt.max_tokens_field == "max_tokens":
        return None  # the other negotiation's business; the constraint stays
    if pinned:
        return None
    return _step_down(fmt, request, kind, f"rejected (HTTP {answer.status})")


def check_obeyed(fmt: EndpointFormat, request: ChatRequest, kind: SpanConstraintKind, content: str,
                 *, pinned: bool) -> SpanConstraintKind:
    """``kind``, or "none" if the answer shows the endpoint ignored it (a string that is no span,
    or an answer that does not even start as JSON: both impossible under the constraint); then
    later requests to it step down (unless ``pinned``). An answer that starts as JSON but does not
    parse was cut off at ``max_tokens``: that says nothing about the endpoint."""
    assert request.constraint is not None
    bad = request.constraint.violations(content)
    if bad is None and content.lstrip().startswith("{"):
        return kind
    if not bad and bad is not None:
        return kind
    if not pinned:
        why = f"{bad[0][:40]!r} is not a span of the sentence" if bad else f"prose: {content[:40]!r}"
        _step_down(fmt, request, kind, f"ignored ({why})")
    return "none"


def negotiate_mode(fmt: EndpointFormat, request: ChatRequest, mode: StructuredMode, answer: HTTPAnswer,
                   *, pinned: bool) -> StructuredMode | None:
    """The next structured mode to try after a 400/422 that rejects the current one, or None.

    Also switches ``max_tokens`` to ``max_completion_tokens`` where a server asks for that (then
    the same mode is tried again); a ``pinned`` mode is never stepped down.
    """
    text = error_text(answer).lower()
    status = answer.status
    # llama-cpp-python's server answers an unsupported response_format with a 500 that quotes
    # its own validation error; any other 500 is a server fault and goes to the retry policy.
    if status not in (400, 422) and not (status == 500 and "response_format" in text):
        return None
    if "max_completion_tokens" in text and fmt.max_tokens_field == "max_tokens":
        fmt.max_tokens_field = "max_completion_tokens"
        return mode
    if pinned or request.schema is None or mode == "none":
        return None
    if not any(word in text for word in _FORMAT_WORDS):
        return None
    lower = MODE_ORDER[MODE_ORDER.index(mode) + 1]
    if MODE_ORDER.index(lower) > MODE_ORDER.index(fmt.mode):
        log.info("endpoint %s rejected response_format %s (HTTP %d); using %s from now on",
                 fmt.name, mode, status, lower)
        fmt.mode = lower
    return lower
