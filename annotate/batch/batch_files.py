"""The batch line format: one chat completion per JSONL line, out as part files, back as results.

The format is OpenAI's (``vllm run-batch`` reads and writes the same): an input line is
``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` and an output or
error line ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``.
The custom_id is the request's cache key, so an answer goes straight into the response cache
under the key the pipeline will look up, and a line can never be confused with another request's.

Why bodies are built by :func:`~..backends.wire.build_body` with a fixed format: a batch cannot
negotiate (a rejected field fails lines hours later), so lines use what OpenAI and vLLM both take,
the ``json_schema`` response format, with a span constraint as a strict enum schema where the
sentence has one (else the plain schema).

Reading is lenient and never raises on content: a line that is not JSON, lacks a custom_id or
names a request that was not sent is counted as malformed, and its request counts as missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from openie4pp.atomic import atomic_writer
from openie4pp.schema import SpanConstraintKind

from ..backends.negotiation import EndpointFormat
from ..backends.wire import BadCompletion, build_body, parse_completion
from ..llm import ChatRequest, ChatResponse, StructuredMode

__all__ = [
    "BATCH_URL",
    "UNANSWERED_CODES",
    "LineResult",
    "PartFile",
    "ResultFile",
    "SentLine",
    "encode_line",
    "errors_path",
    "input_path",
    "output_path",
    "read_results",
    "write_parts",
]

BATCH_URL = "/v1/chat/completions"
UNANSWERED_CODES = frozenset({"batch_expired", "batch_cancelled"})
"""Error codes OpenAI writes for lines of an expired or cancelled batch: not the request's fault,
so they are sent again without counting an attempt."""
_DETAIL_CHARS = 300


@dataclass(frozen=True)
class SentLine:
    """What the sidecar keeps of one line: what the answer is for and how it was asked for (the
    line itself keeps neither; both are needed to store the answer after a crash)."""

    purpose: str
    structured: StructuredMode
    constraint: SpanConstraintKind

    def as_list(self) -> list[str]:
        return [self.purpose, self.structured, self.constraint]

    @classmethod
    def from_list(cls, value: Any) -> SentLine:
        purpose, structured, constraint = (str(v) for v in value)
        return cls(purpose, structured, constraint)  # type: ignore[arg-type]


def encode_line(model: str, key: str, request: ChatRequest, *,
                max_tokens_field: str = "max_tokens") -> tuple[bytes, SentLine]:
    """The input line for ``request`` (UTF-8, newline-terminated) and what to remember of it."""
    mode: StructuredMode = "json_schema" if request.schema is not None else "none"
    span = request.constraint
    constraint: SpanConstraintKind = (
        "json_schema_enum" if span is not None and span.enum_schema is not None and request.schema is not None
        else "none")
    fmt = EndpointFormat(name="batch", mode=mode, constraint=constraint, max_tokens_field=max_tokens_field)
    body = build_body(model, fmt, request, mode, constraint)
    line = {"custom_id": key, "method": "POST", "url": BATCH_URL, "body": body}
    raw = json.dumps(line, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    structured: StructuredMode = "json_schema" if constraint == "json_schema_enum" else mode
    return raw + b"\n", SentLine(request.purpose, structured, constraint)


@dataclass
class PartFile:
    """One written input file: at most ``max_requests`` lines and ``max_bytes`` bytes."""

    name: str
    """``part-000``: the input is ``part-000.input.jsonl`` next to its output and error files."""
    path: Path
    keys: list[str] = field(default_factory=list)
    size: int = 0
    sha256: str = ""


def input_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.input.jsonl"


def output_path(input_file: Path) -> Path:
    """Where a part's answers are (downloaded, or written by ``vllm run-batch -o``)."""
    return input_file.with_name(input_file.name.replace(".input.jsonl", ".output.jsonl"))


def errors_path(input_file: Path) -> Path:
    """Where a part's error file is downloaded (OpenAI writes failed lines to a file of their own)."""
    return input_file.with_name(input_file.name.replace(".input.jsonl", ".errors.jsonl"))


def write_parts(folder: Path, lines: Iterable[tuple[str, bytes]], *, max_requests: int,
                max_bytes: int) -> tuple[list[PartFile], list[tuple[str, int]]]:
    """Write ``(key, line)`` pairs into ``part-NNN.input.jsonl`` files under ``folder``, streamed
    (a part is never held in memory) and each atomically (a crash leaves whole parts or none), a
    part closed before a line would take it past ``max_requests`` lines or ``max_bytes`` bytes.
    Returns the parts and the ``(key, size)`` of lines larger than ``max_bytes`` on their own,
    which no provider would take (they are not written)."""
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[PartFile] = []
    oversize: list[tuple[str, int]] = []
    with contextlib.ExitStack() as stack:
        handle: BinaryIO | None = None
        digest = hashlib.sha256()
        for key, line in lines:
            if len(line) > max_bytes:
                oversize.append((key, len(line)))
                continue
            part = parts[-1] if parts else None
            if handle is None or part is None or len(part.keys) >= max_requests \
                    or part.size + len(line) > max_bytes:
                if handle is not None and part is not None:
                    part.sha256 = digest.hexdigest()
                    stack.close()  # renames the finished part into place
                name = f"part-{len(parts):03d}"
                part = PartFile(name=name, path=input_path(folder, name))
                parts.append(part)
                handle, digest = stack.enter_context(atomic_writer(part.path)), hashlib.sha256()
            handle.write(line)
            digest.update(line)
            part.keys.append(key)
            part.size += len(line)
        if parts:
            parts[-1].sha256 = digest.hexdigest()
    return parts, oversize


@dataclass
class LineResult:
    """One line of an output or error file: an answer, or why there is none."""

    custom_id: str
    response: ChatResponse | None = None
    error: str | None = None
    """Why the line failed (``HTTP 400: ...`` or ``code: message``); None for an answer."""
    unanswered: bool = False
    """The batch expired or was cancelled before this line ran: send it again, no attempt counted."""


@dataclass
class ResultFile:
    """What an output and/or error file said, per custom_id (the first line for each wins)."""

    results: dict[str, LineResult] = field(default_factory=dict)
    malformed: int = 0
    """Lines that could not be read: not JSON, no custom_id, a custom_id that was not sent, or a
    second line for one custom_id."""

    def ok(self) -> Iterator[LineResult]:
        return (r for r in self.results.values() if r.response is not None)


def read_results(paths: Iterable[Path], sent: Mapping[str, SentLine], *, model: str,
                 endpoint: str) -> ResultFile:
    """Parse output/error files (absent ones are skipped) into results for the keys in ``sent``.
    ``endpoint`` is the display name put on each answer (never a URL or a key)."""
    parsed = ResultFile()
    for path in paths:
        if not path.exists():
            continue
        with path.open("rb") as handle:
            for raw in handle:
                if not raw.strip():
                    continue
                result = _parse_line(raw, sent, model, endpoint)
                if result is None or result.custom_id in parsed.results:
                    parsed.malformed += 1
                else:
                    parsed.results[result.custom_id] = result
    return parsed


def _parse_line(raw: bytes, sent: Mapping[str, SentLine], model: str, endpoint: str) -> LineResult | None:
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
        return None
    key = line["custom_id"]
    how = sent.get(key)
    if how is None:
        return None
    error, response = line.get("error"), line.get("response")
    if isinstance(error, dict) and error:
        code = str(error.get("code") or "error")
        return LineResult(key, error=_clip(f"{code}: {error.get('message') or ''}"),
                          unanswered=code in UNANSWERED_CODES)
    if not isinstance(response, dict):
        return LineResult(key, error="line without response or error")
    status, body = response.get("status_code"), response.get("body")
    if status != 200:
        return LineResult(key, error=_clip(f"HTTP {status}: {_error_message(body)}"))
    try:
        raw_body = body.encode("utf-8") if isinstance(body, str) else (
            body if isinstance(body, bytes) else json.dumps(body).encode("utf-8"))
        content, prompt_tokens, completion_tokens = parse_completion(raw_body)
    except BadCompletion as exc:
        return LineResult(key, error=str(exc))
    return LineResult(key, response=ChatResponse(
        content=content, model=model, endpoint=endpoint, prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens, structured=how.structured, constraint=how.constraint))


def _error_message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or error)
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return json.dumps(body)[:_DETAIL_CHARS] if body is not None else "no body"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."
