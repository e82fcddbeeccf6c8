"""The contract between the annotation pipeline and any LLM backend.

The pipeline only ever builds a :class:`ChatRequest` and awaits a :class:`ChatResponse` from
a :class:`Backend`. Everything endpoint-specific — OpenAI-compatible HTTP servers (several at
once), the in-process vLLM engine, the embedded llama.cpp server, retries, structured-output
negotiation, the response cache — lives behind that one method, so the pipeline is the same
for a laptop and for a rack of GPU servers.

A request is content-addressed: :meth:`ChatRequest.cache_key` hashes everything that can
change the answer (model, rendered messages, JSON schema, sampling parameters, prompt version),
so a rerun or a resume finds every finished answer in the cache and costs no request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from openie4pp.schema import SpanConstraintKind

StructuredMode = Literal["json_schema", "json_object", "none"]
"""How a server was asked for JSON: OpenAI's ``json_schema`` response format; ``json_object``
with the schema attached (llama.cpp's server); or plain text with the schema in the prompt."""



class DecodingConstraint(Protocol):
    """What a backend needs of a request's span constraint, in the encodings endpoints accept.

    Declared here, by the side that consumes it, so that this contract (the bottom of the
    annotation layer) does not depend on how constraints are built from sentences and answer
    models (:class:`openie4pp.annotate.constraints.SpanConstraint` is the implementation)."""

    @property
    def digest(self) -> str:
        """Hash of everything that defines the constraint: part of :meth:`ChatRequest.cache_key`."""
        ...

    @property
    def gbnf(self) -> str:
        """A llama.cpp GBNF grammar (llama.cpp's ``grammar``, vLLM's ``structured_outputs.grammar``)."""
        ...

    @property
    def enum_schema(self) -> dict[str, Any] | None:
        """A strict JSON schema of span enums, or None where it exceeds a provider's enum limits."""
        ...

    def violations(self, content: str) -> list[str] | None:
        """The answer's strings that break the constraint ([]: none), or None for no JSON answer."""
        ...


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


_KEY_VERSION = b"openie4pp-cache-key/2\0"
"""Changes whenever the key's framing changes, so an old cache is never misread."""


def schema_digest(schema: dict[str, Any]) -> str:
    """sha256 of a JSON schema's canonical form (sorted keys, compact): equal schemas, equal digests."""
    canonical = json.dumps(schema, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _feed(digest: Any, fields: Any) -> None:
    for text in fields:
        raw = text.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)


_PREFIX_STATES: dict[tuple[Any, ...], Any] = {}


def _prefix_state(head: tuple[str, ...], shared: tuple[Message, ...]) -> Any:
    """The hash state after the fields every request of a prompt and language shares (the
    parameters, the system prompt, the few-shot pairs: ~5.5 of ~6 KB); each key copies it and feeds
    the rest, the same bytes in the same order, so the keys are unchanged (~18 -> ~6 µs a request)."""
    key = (head, shared)
    state = _PREFIX_STATES.get(key)
    if state is None:
        state = hashlib.sha256(_KEY_VERSION)
        _feed(state, [*head, *(text for m in shared for text in (m.role, m.content))])
        if len(_PREFIX_STATES) >= 256:
            _PREFIX_STATES.clear()
        _PREFIX_STATES[key] = state
    return state


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. Frozen and hashable so it can be a cache key."""

    messages: tuple[Message, ...]
    schema_name: str
    """Name of the expected JSON object (e.g. ``"extraction"``), for response_format."""
    schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    """JSON schema of the expected answer (pydantic ``model_json_schema()``), or None for free text.
    Read-only: one prompt's requests share the same dict (a deep copy per request cost ~0.4 ms of
    CPU, a tenth of the client's budget at 300 requests/s); a backend that must adapt it copies it."""
    schema_digest: str = field(default="", hash=False, compare=False, repr=False)
    """sha256 of the schema's canonical JSON; computed here unless the caller (a prompt, which
    serialises its schema once) passes it. The cache key hashes this instead of the schema."""
    prompt_id: str = ""
    prompt_hash: str = ""
    """Hash of the prompt template version; part of the cache key and of each record's provenance."""
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    purpose: str = ""
    """What the request is for (``stage1``, ``translate``, ``verify``...): stats only, not hashed."""
    constraint: DecodingConstraint | None = field(default=None, hash=False, compare=False, repr=False)
    """Span-constrained decoding (``--constrain spans``): the sentence's grammar / regex / enum
    schema, built once by the pipeline; the backend sends what its endpoint accepts. Its digest is
    part of the cache key (only when set, so unconstrained keys are unchanged)."""

    def __post_init__(self) -> None:
        if self.schema is not None and not self.schema_digest:
            object.__setattr__(self, "schema_digest", schema_digest(self.schema))

    def cache_key(self, model: str) -> str:
        """sha256 over everything that can change the answer. The endpoint is not part of it:
        two servers of the same model are interchangeable.

        Each field is fed to the hash length-prefixed (an unambiguous framing: no two different
        requests give the same byte stream), which costs a tenth of serialising them as JSON."""
        head = (model, self.schema_name, self.schema_digest, self.prompt_id, self.prompt_hash,
                repr(float(self.temperature)), str(self.max_tokens), repr(self.seed))
        *shared, last = self.messages or (None,)
        digest = _prefix_state(head, tuple(shared)).copy()
        tail = [] if last is None else [last.role, last.content]
        if self.constraint is not None:  # 8 + 2n fields without, 8 + 2n + 1 with: unambiguous
            tail.append("span-constraint:" + self.constraint.digest)
        _feed(digest, tail)
        return digest.hexdigest()

    def with_messages(self, *extra: Message) -> ChatRequest:
        """The same request with messages appended (used to re-ask after an invalid answer)."""
        return ChatRequest(
            messages=self.messages + extra,
            schema_name=self.schema_name,
            schema=self.schema,
            schema_digest=self.schema_digest,
            prompt_id=self.prompt_id,
            prompt_hash=self.prompt_hash,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            purpose=self.purpose,
            constraint=self.constraint,
        )


@dataclass
class ChatResponse:
    content: str
    model: str
    endpoint: str
    """A display name of the endpoint (host:port or ``vllm``): never a key or a URL with credentials."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    structured: StructuredMode = "none"
    retries: int = 0
    constraint: SpanConstraintKind = "none"
    """How the request's span constraint was sent ("none": it had none, or the endpoint took none)."""
    replayed: bool = False
    """A batch run's later pass got this answer again (:mod:`openie4pp.annotate.batch.execution`):
    the run's statistics counted it (and what followed from it, a re-ask) the first time."""


class RequestFailed(Exception):
    """A request that could not be answered after the allowed retries (or at once, for a
    non-retryable error such as 401/400). The pipeline turns it into a ``request_failed``
    rejection and goes on with the next item."""

    def __init__(self, detail: str, *, status: int | None = None, retries: int = 0,
                 transient: bool = False, counted: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.counted = counted
        """The run's statistics already counted this failure (a batch run's later pass meets it again)."""
        self.status = status
        self.retries = retries
        self.transient = transient
        """The endpoint failed, not the request (unreachable, timed out, 5xx, rate-limited after all
        retries): the same request may well work later. Set by the backend, which knows."""


class AnswerPending(Exception):
    """The answer is not in the cache yet and will come later, from a batch (``--execution batch``):
    the request was collected for the next round and the item stays unfinished for now. Not a
    failure: the pipeline neither rejects nor counts the item, and the next pass replays it from the
    cache up to this request."""


@runtime_checkable
class Backend(Protocol):
    """Anything that answers chat requests. Implementations must be safe to call concurrently
    from many asyncio tasks; concurrency limits belong to the caller (the pipeline)."""

    model: str

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer ``request`` or raise :class:`RequestFailed`."""
        ...

    async def aclose(self) -> None: ...
