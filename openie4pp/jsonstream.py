"""One JSON list read element by element from a text stream (SpanOIE's 2.2 GB ``structured_data.json``).

Written here because the streaming JSON parser ``ijson`` is not a dependency (nor installed): a
bounded window and :meth:`json.JSONDecoder.raw_decode`, one element at a time, with the line each
element starts on for error messages.

Bad input never loses the rest of the file: after a malformed element the reader *resynchronises*
at the next ``,`` (optional whitespace) ``{`` where an element starts again (``restart`` decides:
SpanOIE's elements are sentence objects, so a tuple object inside a sentence is no restart point)
and reports the skipped span as one problem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from openie4pp.schema import RejectionReason

_R = RejectionReason
_WS = re.compile(r"[ \t\n\r]*")
_PARTIAL = re.compile(r"[\w\\.+-]*\s*")
_RESTART = re.compile(r",[ \t\n\r]*(?:\{|\Z)")
"""A comma before an object (where an element may start again), or a comma and whitespace up to
the window's end (read on to see what follows)."""
_LOOKAHEAD = 3
"""A value is accepted only this many characters before a window end that is not the file's end:
``1.`` or ``1e+`` may be the start of a longer number (``raw_decode`` gives ``1`` for both)."""
_DECODER = json.JSONDecoder()


class JsonStreamError(ValueError):
    """A problem in the list; ``line`` is where (for a malformed element, the line it starts on).

    :func:`iter_json_array` yields these in place of elements rather than raising them."""

    def __init__(self, line: int, detail: str, excerpt: str = "", *, element: bool = False,
                 reason: RejectionReason = _R.malformed_json) -> None:
        super().__init__(detail)
        self.line, self.detail, self.excerpt, self.reason = line, detail, excerpt, reason
        self.element = element
        """Whether an element (a sentence) was lost, not only the list's closing bracket."""


class _Bad(Exception):
    """``raw_decode`` failed, and not for want of text."""

    def __init__(self, detail: str, excerpt: str, truncated: bool) -> None:
        super().__init__(detail)
        self.detail, self.excerpt, self.truncated = detail, excerpt, truncated


class _Scanner:
    """A window on a text stream: ``buf[pos:]`` is unread, ``line`` is that of ``buf[pos]`` and
    ``base`` the file offset (in characters) of ``buf[0]``."""

    def __init__(self, handle: TextIO, chunk_size: int, max_element: int) -> None:
        self.handle, self.chunk_size, self.max_element = handle, chunk_size, max_element
        self.buf, self.pos, self.line, self.base, self.eof = "", 0, 1, 0, False

    @property
    def offset(self) -> int:
        """The file offset (in characters) of ``buf[pos]``."""
        return self.base + self.pos

    def advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def where(self, pos: int) -> str:
        return f"line {self.line + self.buf.count(chr(10), self.pos, pos)}, character {self.base + pos + 1}"

    def excerpt(self, pos: int | None = None) -> str:
        start = self.pos if pos is None else pos
        return self.buf[start : start + 200]

    def fill(self, want: int = 0) -> None:
        self.base += self.pos
        self.buf, self.pos = self.buf[self.pos :], 0  # the consumed prefix goes: the window stays small
        try:
            chunk = self.handle.read(max(self.chunk_size, want))
        except UnicodeDecodeError as exc:  # a strict handle: it cannot be read on
            where = self.where(len(self.buf))
            raise JsonStreamError(self.line, f"not valid UTF-8 after {where} ({exc.reason}); open the file "
                                  "with errors='surrogateescape' to read past it", element=True,
                                  reason=_R.malformed_text) from None
        self.eof = not chunk
        self.buf += chunk

    def peek(self) -> str:
        """The next non-whitespace character, ``""`` at the end of the file."""
        while True:
            match = _WS.match(self.buf, self.pos)
            self.advance(match.end() if match else self.pos)
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self.fill()

    def decode(self, skip: int = 0) -> tuple[Any, int]:
        """``(value, end)`` of the JSON value at ``buf[pos + skip]`` (``end`` an index into ``buf``,
        which reading on may shift; ``pos`` stays), reading on while it may be cut; raises :class:`_Bad`."""
        while True:
            at = self.pos + skip
            try:
                value, end = _DECODER.raw_decode(self.buf, at)
                if self.eof or len(self.buf) - end >= _LOOKAHEAD:  # else it may be a cut number: read on
                    return value, end
            except json.JSONDecodeError as exc:  # near the window's end it may be only cut: read on
                unterminated = exc.msg.startswith("Unterminated")
                if self.eof and (unterminated or _PARTIAL.fullmatch(self.buf, exc.pos)):
                    raise _Bad("the file ends inside this element: it is truncated", self.excerpt(at),
                               True) from None
                if self.eof or not (unterminated or len(self.buf) - exc.pos < 32):
                    raise _Bad(f"malformed JSON: {exc.msg} ({self.where(exc.pos)})", self.excerpt(exc.pos),
                               False) from None
            pending = len(self.buf) - self.pos
            if pending > self.max_element:
                raise _Bad(f"a list element longer than {self.max_element} characters", self.excerpt(at),
                           False)
            self.fill(want=pending)  # at least doubles the window: a long element costs O(n log n)

    def resync(self, restart: Callable[[Any], bool]) -> bool:
        """Move to the next ``,`` followed by an object that ``restart`` accepts (True), or to the end
        of the file (False). Only the text being tried is held, never all that is skipped."""
        while True:
            match = _RESTART.search(self.buf, self.pos)
            if match is None or not match.group().endswith("{"):
                self.advance(match.start() if match else len(self.buf))
                if self.eof:
                    self.advance(len(self.buf))
                    return False
                self.fill()
                continue
            self.advance(match.start())
            try:
                value, _ = self.decode(skip=match.end() - 1 - match.start())
                if restart(value):
                    return True
            except _Bad:
                pass
            self.advance(self.pos + 1)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def iter_json_array(handle: TextIO, chunk_size: int = 1 << 20, max_element: int = 1 << 26,
                    restart: Callable[[Any], bool] = _is_object) -> Iterator[tuple[int, Any]]:
    """``(line, element)`` for each element of the JSON list in ``handle`` (``line``: where it starts),
    reading ``chunk_size`` characters at a time and decoding one element at a time with
    :meth:`json.JSONDecoder.raw_decode`; only the current element's window is held. A BOM
    (``\\ufeff``) before the list is skipped.

    A problem is *yielded*, as ``(line, JsonStreamError)``, never raised. After a malformed element
    (or junk after one, or content after the closing ``]``) the reader skips to the next ``,`` and
    ``{`` whose object ``restart`` accepts (default: any object; pass a stricter test when elements
    hold objects too) and goes on: the skipped span is ONE error, naming the line it starts on and
    how many characters were skipped. A torn last element (a truncated file) is one error, so is a
    missing ``]``. A handle that decodes strictly and meets a bad byte ends the list there (open
    files with ``errors="surrogateescape"`` to read past one).
    """
    scan = _Scanner(handle, chunk_size, max_element)
    try:
        yield from _elements(scan, restart)
    except JsonStreamError as exc:
        yield exc.line, exc


def _elements(scan: _Scanner, restart: Callable[[Any], bool]) -> Iterator[tuple[int, Any]]:
    scan.fill()
    if scan.buf.startswith("\ufeff"):
        scan.advance(1)
    if scan.peek() != "[":
        yield scan.line, JsonStreamError(scan.line, "expected a JSON list ('[')", scan.excerpt())
        return
    scan.advance(scan.pos + 1)
    closed = scan.peek() == "]"
    close_line, close_at = scan.line, scan.offset
    if closed:
        scan.advance(scan.pos + 1)
    while True:
        at_end, lost, truncated = scan.peek() == "", False, False
        line, start = scan.line, scan.offset
        if closed:  # after the list's ']': the skipped span starts at that ']'
            if at_end:
                return
            line, start, excerpt = close_line, close_at, scan.excerpt()
            detail = f"unexpected content after the list's ']' (line {close_line}, character {close_at + 1})"
        elif at_end:
            yield line, JsonStreamError(line, "the file ends inside the list: it is truncated (no ']')")
            return
        else:
            try:
                value, end = scan.decode()
            except _Bad as bad:
                detail, excerpt, lost, truncated = bad.detail, bad.excerpt, True, bad.truncated
            else:
                scan.advance(end)
                yield line, value
                after = scan.peek()
                if after in (",", "]"):
                    close_line, close_at = scan.line, scan.offset
                    scan.advance(scan.pos + 1)
                    closed = after == "]"
                    continue
                if after == "":
                    yield scan.line, JsonStreamError(
                        scan.line, "the file ends inside the list: it is truncated (no ']')")
                    return
                line, start, excerpt = scan.line, scan.offset, scan.excerpt()
                detail = f"expected ',' or ']' after the element ({scan.where(scan.pos)}), found {after!r}"
        found = scan.resync(restart)
        skipped = scan.offset - start
        if truncated and not found:  # a torn last element
            yield line, JsonStreamError(line, detail, excerpt, element=True)
            return
        to = "up to the next element" if found else "to the end of the file"
        yield line, JsonStreamError(line, f"{detail}; {skipped} characters skipped {to}", excerpt,
                                    element=lost)
        if not found:
            return
        scan.advance(scan.pos + 1)  # the comma before the restart element
        closed = False


__all__ = ["JsonStreamError", "iter_json_array"]
