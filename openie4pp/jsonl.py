"""Reading OpenIE4++ JSONL line by line, turning every bad line into a located, reasoned Rejection.

Shared by the shard reader, ``openie4pp validate`` and the converters' tests: one mapping from
pydantic errors to ``(field path, reason)`` so the same bad line is described the same way
everywhere. Lines are read in binary (only ``\\n`` ends a line, ``str.splitlines`` would also
split on U+2028) and go straight to ``Record.model_validate_json``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from openie4pp.errors import InputFileError
from openie4pp.schema import Record, Rejection, RejectionReason, SchemaVersionError

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class TextLine:
    """One non-blank line of a text file: its ``text`` (line end removed), or why it has none."""

    number: int
    """1-based, counting every line of the file."""
    text: str | None
    problem: str | None = None
    """Why ``text`` is None: not UTF-8 (with the byte offset), or longer than the limit."""
    too_long: bool = False
    raw: bytes = b""
    """The line's bytes when it was read but is not UTF-8 (for a rejection record)."""


def iter_text_lines(path: str | Path, max_bytes: int | None = None) -> Iterator[TextLine]:
    """The non-blank lines of a UTF-8 text file, for every reader of user input.

    Only ``\n`` ends a line (``str.splitlines`` would also split valid JSON at U+2028); a leading
    BOM is ignored; bytes that are not UTF-8 are a problem naming the offset, never replaced by
    U+FFFD (a corrupted sentence must not reach the data); and a line over ``max_bytes`` is
    skipped in chunks, never held in memory whole (a 50 MB line cost 3.4 GB downstream)."""
    limit = max_bytes if max_bytes is not None else -1
    with open(path, "rb") as handle:
        number = 0
        while True:
            raw = handle.readline(limit + 1 if limit >= 0 else -1)
            if not raw:
                return
            number += 1
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM):]
            if limit >= 0 and len(raw) > limit and not raw.endswith(b"\n"):
                length = len(raw)
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(1 << 20)
                    length += len(raw)
                yield TextLine(number, None, f"the line has {length} bytes, over the limit of {limit}",
                               too_long=True)
                continue
            body = raw.rstrip(b"\r\n")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as error:
                yield TextLine(number, None, f"invalid UTF-8 at byte {error.start} of the line "
                               f"({body[error.start:error.start + 4]!r})", raw=body)
                continue
            if text.strip():
                yield TextLine(number, text)


class TornLineWarning(UserWarning):
    """A file ended in an incomplete line (a write interrupted by a crash); the line was dropped."""


class InvalidRecordError(InputFileError):
    """Raised by ``iter_records(strict=True)``; ``rejection`` says where and why."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(f"{rejection.location()}: {rejection.reason.value}: {rejection.detail}")
        self.rejection = rejection


def iter_raw_lines(path: str | Path) -> Iterator[tuple[int, bytes, bool]]:
    """``(1-based line number, line without newline, complete)`` for each non-blank line.

    ``complete`` is False for a last line without a newline: what a writer killed mid-write
    leaves behind, unless the line happens to be whole.
    """
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            body = raw.rstrip(b"\r\n")
            if body.strip():
                yield line_no, body, raw.endswith(b"\n")


def is_torn(raw: bytes, complete: bool) -> bool:
    """An unterminated line that does not parse (a JSON object is never a prefix of another)."""
    if complete:
        return False
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


def iter_jsonl_lines(path: str | Path) -> Iterator[tuple[int, bytes]]:
    """Like :func:`iter_raw_lines`, but a torn last line is dropped with a :class:`TornLineWarning`."""
    for line_no, raw, complete in iter_raw_lines(path):
        if is_torn(raw, complete):
            warnings.warn(
                f"{path}:{line_no}: dropped a torn last line ({len(raw)} bytes)",
                TornLineWarning,
                stacklevel=2,
            )
            return
        yield line_no, raw


def field_path(loc: tuple[int | str, ...]) -> str | None:
    """pydantic's ``loc`` as ``extractions[0].arguments[1].span``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith(("function-", "tagged-union")):
            path += f".{part}" if path else part
    return path or None


# The record-level grounding check reports its problems one per line as "field: message".
_FIELD_IN_MESSAGE = re.compile(r"^((?:sentence|extractions|provenance)[\w.\[\]]*): (.*)$")
_REASONS = (
    ("language code", RejectionReason.unknown_language),
    ("empty sentence", RejectionReason.empty_sentence),
    ("out of range", RejectionReason.span_out_of_range),
    ("differs from the sentence's span text", RejectionReason.span_text_mismatch),
    ("must be grounded", RejectionReason.ungrounded),
)


def problems_from_error(exc: ValidationError) -> list[tuple[str | None, RejectionReason, str]]:
    """Every problem of a Record validation error as ``(field path, reason, detail)``."""
    out: list[tuple[str | None, RejectionReason, str]] = []
    for error in exc.errors(include_url=False):
        base = field_path(tuple(error["loc"]))
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "json_invalid":
            out.append((None, RejectionReason.malformed_json, str(error["msg"])))
            continue
        if isinstance(cause, SchemaVersionError):
            out.append((base, RejectionReason.schema_version, str(cause)))
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        for line in message.split("\n"):
            match = _FIELD_IN_MESSAGE.match(line)
            field, detail = (match.group(1), match.group(2)) if match and not base else (base, line)
            if base == "sentence.text" and error["type"] == "string_too_short":
                detail = "empty sentence"
            reason = next((r for text, r in _REASONS if text in detail), RejectionReason.schema_invalid)
            out.append((field, reason, detail))
    return out


def rejections_for(
    exc: ValidationError,
    raw: bytes | str,
    file: str | Path | None = None,
    line: int | None = None,
    stage: str = "validate",
) -> list[Rejection]:
    """One :class:`Rejection` per problem of ``exc`` (``validate`` lists them all)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return [
        Rejection.model_validate(
            {
                "stage": stage,
                "reason": reason,
                "detail": detail,
                "input": text,
                "file": None if file is None else str(file),
                "line": line,
                "field": field,
            }
        )
        for field, reason, detail in problems_from_error(exc)
    ]


def rejection_for(
    exc: ValidationError,
    raw: bytes | str,
    file: str | Path | None = None,
    line: int | None = None,
    stage: str = "validate",
) -> Rejection:
    """One :class:`Rejection` for a bad line: the first problem (a version mismatch first, since it
    explains the rest), with a count of the others in the detail."""
    rejections = rejections_for(exc, raw, file, line, stage)
    rejections.sort(key=lambda r: r.reason is not RejectionReason.schema_version)
    first, more = rejections[0], len(rejections) - 1
    if more:
        first.detail += f" (and {more} more problem{'s' if more > 1 else ''})"
    return first


def parse_record(
    raw: bytes | str, file: str | Path | None = None, line: int | None = None
) -> Record | Rejection:
    try:
        return Record.model_validate_json(raw)
    except ValidationError as exc:
        return rejection_for(exc, raw, file, line)


def iter_records_in_file(file: str | Path, *, strict: bool = False) -> Iterator[Record | Rejection]:
    for line_no, raw in iter_jsonl_lines(file):
        item = parse_record(raw, file, line_no)
        if strict and isinstance(item, Rejection):
            raise InvalidRecordError(item)
        yield item
