"""How part files reach a batch provider and their answers come back.

:class:`BatchTransport` is the little that :class:`~.rounds.BatchRounds` needs of a provider:
upload a file, create a batch on it, look at the batch, download a file, and (for a crash at the
wrong moment) find an upload or a batch made before the crash, so that nothing is paid twice.

* :class:`OpenAIBatchTransport` — the OpenAI Batch API over the ``openai`` SDK's sync client
  (sync: a batch round is a handful of calls minutes apart, no event loop is worth it). The SDK's
  errors become one-line :class:`~openie4pp.errors.UsageError`\\ s for what a rerun cannot fix
  (401/403/404, a rejected file) and :class:`BatchAPIError` for what it may (5xx, 429, no
  connection); neither ever carries the API key.
* :class:`FileExchange` — ``--execution batch-files``: nothing is uploaded. The input files stay
  where :class:`~.rounds.BatchRounds` wrote them, and each one's answers are expected next to it,
  ``part-000.input.jsonl`` -> ``part-000.output.jsonl``, written elsewhere, e.g. by
  ``vllm run-batch -i part-000.input.jsonl -o part-000.output.jsonl --model M``. Until they are
  there it raises :class:`OutputsAwaited`, which says which command to run.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from openie4pp.atomic import atomic_writer
from openie4pp.errors import RunProblems, UsageError
from openie4pp.redact import redactor

from ..backends.transport import endpoint_name
from .batch_files import BATCH_URL, errors_path, output_path

__all__ = [
    "TERMINAL",
    "BatchAPIError",
    "BatchInfo",
    "BatchTransport",
    "FileExchange",
    "OpenAIBatchTransport",
    "OutputsAwaited",
]

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
"""Batch statuses after which nothing changes (the others: validating, in_progress, finalizing,
cancelling)."""
_USAGE_STATUSES = (400, 401, 403, 404, 422)
T = TypeVar("T")


@dataclass
class BatchInfo:
    """The fields of a batch object that rounds act on."""

    id: str
    status: str
    input_file_id: str = ""
    output_file_id: str | None = None
    error_file_id: str | None = None
    request_counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    """``code: message (line N)`` of a batch that failed as a whole (validation)."""
    metadata: dict[str, str] = field(default_factory=dict)
    created_at: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class BatchTransport(Protocol):
    """A batch provider, as :class:`~.rounds.BatchRounds` uses it (every call blocking)."""

    name: str
    """Display name put on every answer (``host:port``, ``batch-files``): never a URL or a key."""
    max_tokens_field: str
    """``max_tokens`` or ``max_completion_tokens`` (newer OpenAI models take only the latter)."""

    def upload(self, path: Path, filename: str) -> str:
        """Upload an input file (purpose ``batch``) under ``filename``; its file id."""
        ...

    def find_upload(self, filename: str, size: int) -> str | None:
        """The id of an earlier upload named ``filename`` of ``size`` bytes, if there is one."""
        ...

    def create(self, input_file_id: str, *, completion_window: str, metadata: Mapping[str, str]) -> BatchInfo:
        ...

    def find_batch(self, input_file_id: str, metadata: Mapping[str, str], *,
                   not_before: float | None = None) -> BatchInfo | None:
        """A batch on ``input_file_id`` whose metadata includes ``metadata`` (one created before a
        crash that kept its id from being saved); batches created before ``not_before`` (epoch s)
        need not be looked at."""
        ...

    def retrieve(self, batch_id: str) -> BatchInfo:
        ...

    def download(self, file_id: str, dest: Path) -> None:
        """Write the file's content to ``dest`` (atomically)."""
        ...


class BatchAPIError(RunProblems):
    """The Batch API failed in a way a later rerun may not (5xx, 429, no connection): the round's
    state is kept, so rerunning the command continues where it stopped."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OutputsAwaited(RunProblems):
    """``batch-files``: the round's input files are written, their answers are not there yet. Run
    :attr:`command_hint` (or anything that writes the same format), then rerun the command."""

    def __init__(self, inputs: list[Path], outputs: list[Path], command_hint: str) -> None:
        self.inputs, self.outputs, self.command_hint = inputs, outputs, command_hint
        super().__init__(f"{len(inputs)} batch input file(s) await their answers: run {command_hint}, "
                         "then rerun this command")


def _batch_info(batch: Any) -> BatchInfo:
    counts = getattr(batch, "request_counts", None)
    errors = getattr(getattr(batch, "errors", None), "data", None) or []
    created = getattr(batch, "created_at", None)
    return BatchInfo(
        id=str(batch.id), status=str(batch.status), input_file_id=str(batch.input_file_id or ""),
        output_file_id=batch.output_file_id or None, error_file_id=batch.error_file_id or None,
        request_counts={k: int(getattr(counts, k, 0) or 0) for k in ("total", "completed", "failed")}
        if counts is not None else {},
        errors=[f"{e.code or 'error'}: {e.message or ''}" + (f" (line {e.line})" if e.line else "")
                for e in errors],
        metadata={str(k): str(v) for k, v in (batch.metadata or {}).items()},
        created_at=float(created) if isinstance(created, (int, float)) else None)


class OpenAIBatchTransport:
    """The OpenAI Batch API (or a compatible one) at ``base_url`` (``https://api.openai.com/v1``)."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float = 600.0, *,
                 max_tokens_field: str = "max_tokens", max_retries: int = 2) -> None:
        import openai  # the SDK is only needed for this execution mode

        self._openai = openai
        self.name = endpoint_name(base_url)
        self.max_tokens_field = max_tokens_field
        self._redact = redactor([api_key])
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout_s,
                                     max_retries=max_retries)

    def __repr__(self) -> str:
        return f"OpenAIBatchTransport({self.name!r})"

    def close(self) -> None:
        self._client.close()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, its SDK errors turned into one line naming the host and what failed."""
        sdk = self._openai
        try:
            return fn()
        except sdk.APIStatusError as exc:
            status = exc.status_code
            message = self._redact(" ".join(str(getattr(exc, "message", exc)).split()))[:300]
            text = f"batch API {self.name}: {what} failed: HTTP {status}: {message}"
            if status in (401, 403):
                raise UsageError(f"{text} (check the API key's environment variable)") from None
            if status in _USAGE_STATUSES:
                raise UsageError(text) from None
            raise BatchAPIError(f"{text}; rerun to continue", status=status) from None
        except sdk.APIConnectionError as exc:  # APITimeoutError included
            kind = "timed out" if isinstance(exc, sdk.APITimeoutError) else "connection error"
            raise BatchAPIError(f"batch API {self.name}: {what} failed: {kind}; rerun to continue") from None

    def upload(self, path: Path, filename: str) -> str:
        def send() -> str:
            with path.open("rb") as handle:
                return str(self._client.files.create(file=(filename, handle, "application/jsonl"),
                                                     purpose="batch").id)
        return self._call(f"upload of {path.name}", send)

    def find_upload(self, filename: str, size: int) -> str | None:
        def look() -> str | None:
            for item in self._client.files.list(purpose="batch"):
                if item.filename == filename and int(item.bytes or 0) == size:
                    return str(item.id)
            return None
        return self._call("files.list", look)

    def create(self, input_file_id: str, *, completion_window: str, metadata: Mapping[str, str]) -> BatchInfo:
        return self._call("batches.create", lambda: _batch_info(self._client.batches.create(
            input_file_id=input_file_id, endpoint=BATCH_URL,  # type: ignore[arg-type]
            completion_window=completion_window, metadata=dict(metadata))))  # type: ignore[arg-type]

    def find_batch(self, input_file_id: str, metadata: Mapping[str, str], *,
                   not_before: float | None = None) -> BatchInfo | None:
        def look() -> BatchInfo | None:
            for batch in self._iter_batches():  # newest first
                info = _batch_info(batch)
                if info.input_file_id == input_file_id and all(
                        info.metadata.get(k) == v for k, v in metadata.items()):
                    return info
                if not_before is not None and info.created_at is not None and info.created_at < not_before:
                    return None
            return None
        return self._call("batches.list", look)

    def _iter_batches(self) -> Iterator[Any]:
        page = self._client.batches.list(limit=100)
        yield from page  # the SDK's page iterator follows `after` while `has_more`

    def retrieve(self, batch_id: str) -> BatchInfo:
        return self._call(f"batches.retrieve {batch_id}",
                          lambda: _batch_info(self._client.batches.retrieve(batch_id)))

    def cancel(self, batch_id: str) -> BatchInfo:
        return self._call(f"batches.cancel {batch_id}",
                          lambda: _batch_info(self._client.batches.cancel(batch_id)))

    def download(self, file_id: str, dest: Path) -> None:
        def fetch() -> None:  # streamed: an output file may be hundreds of megabytes
            with self._client.files.with_streaming_response.content(file_id) as response, \
                    atomic_writer(dest) as handle:
                for chunk in response.iter_bytes():
                    handle.write(chunk)
        self._call(f"download of {file_id}", fetch)


class FileExchange:
    """``batch-files``: input files answered elsewhere; each output expected next to its input.

    Ids are the files' paths: the "upload" of ``X.input.jsonl`` is the path itself and its
    "batch" completes once ``X.output.jsonl`` exists (an optional ``X.errors.jsonl`` is read too).
    Write the output in one go (``vllm run-batch`` does; so does writing it beside and renaming):
    a half-written one would count its absent lines as failed attempts."""

    name = "batch-files"

    def __init__(self, model: str, *, runner: str = "vllm run-batch",
                 max_tokens_field: str = "max_tokens") -> None:
        self.model, self.runner, self.max_tokens_field = model, runner, max_tokens_field

    def __repr__(self) -> str:
        return f"FileExchange(model={self.model!r})"

    def command_hint(self, inputs: list[Path], outputs: list[Path]) -> str:
        """The commands that answer ``inputs`` into ``outputs`` (``vllm run-batch``'s options)."""
        return "; ".join(f"{self.runner} -i {shlex.quote(str(i))} -o {shlex.quote(str(o))} "
                         f"--model {shlex.quote(self.model)}" for i, o in zip(inputs, outputs, strict=True))

    def upload(self, path: Path, filename: str) -> str:
        return str(path.resolve())  # absolute: a rerun from another directory still finds it

    def find_upload(self, filename: str, size: int) -> str | None:
        return None

    def create(self, input_file_id: str, *, completion_window: str, metadata: Mapping[str, str]) -> BatchInfo:
        return BatchInfo(id=input_file_id, status="in_progress", input_file_id=input_file_id,
                         metadata=dict(metadata))

    def find_batch(self, input_file_id: str, metadata: Mapping[str, str], *,
                   not_before: float | None = None) -> BatchInfo | None:
        return None  # creating is free and idempotent here

    def retrieve(self, batch_id: str) -> BatchInfo:
        source = Path(batch_id)
        answers = output_path(source)
        if not answers.exists():
            raise OutputsAwaited([source], [answers], self.command_hint([source], [answers]))
        errors = errors_path(source)
        return BatchInfo(id=batch_id, status="completed", input_file_id=batch_id,
                         output_file_id=str(answers), error_file_id=str(errors) if errors.exists() else None)

    def download(self, file_id: str, dest: Path) -> None:
        source = Path(file_id)
        if source.resolve() == dest.resolve():
            return  # the answers are already where rounds reads them
        with source.open("rb") as src, atomic_writer(dest) as handle:
            shutil.copyfileobj(src, handle)
