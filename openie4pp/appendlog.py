"""Append-only JSONL files that survive ``kill -9``: whole-line writes and tail repair.

Every line goes out as a single ``os.write`` of the whole line on an unbuffered ``O_APPEND``
descriptor, so a SIGKILL loses at most the line being written, and that line is recognisably torn
(it lacks its newline). :func:`recover` repairs such a tail when a writer reopens the file. Shared
by the shard writer and the rejection writer (:mod:`openie4pp.shards`, :mod:`openie4pp.rejections`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import warnings
from collections.abc import Callable
from pathlib import Path

from openie4pp.errors import InputFileError
from openie4pp.jsonl import TornLineWarning


class ShardCorruptError(InputFileError):
    """A line other than the last one of a shard is unreadable: not a crash artefact, so not repaired."""


def append_line(fd: int, data: bytes, size_before: int) -> None:
    """Write a whole line with one ``os.write`` (looping only on a short write).

    On failure (disk full...) the fragment is cut off again, so that the next line does not
    get glued to it and turn a clean error into mid-file corruption.
    """
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            if written <= 0:
                raise OSError(f"os.write wrote {written} bytes")
            view = view[written:]
    except BaseException:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size_before)
        raise


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def close_fd(fd: int, durable: bool, directory: Path | None = None) -> None:
    if durable:
        os.fsync(fd)
        if directory is not None:
            with contextlib.suppress(OSError):  # not every platform can fsync a directory
                dir_fd = os.open(directory, os.O_RDONLY)
                os.fsync(dir_fd)
                os.close(dir_fd)
    os.close(fd)


def recover(path: Path, consume: Callable[[bytes], None]) -> tuple[int, int, hashlib._Hash]:
    """Feed each line of an append-only file to ``consume`` and repair a crash-damaged tail.

    Returns ``(lines, bytes, sha256)`` of the repaired file. An unterminated or unreadable
    last line is cut off with a :class:`TornLineWarning`; an unterminated but complete one is
    given its newline. An unreadable line elsewhere is corruption: :class:`ShardCorruptError`.
    """
    digest, good_end, lines = hashlib.sha256(), 0, 0
    pending: bytes | None = None
    with open(path, "rb") as handle:
        for raw in itertools.chain(handle, [None]):
            if pending is not None and raw is not None:
                try:
                    consume(pending)
                except ValueError as exc:
                    raise ShardCorruptError(f"{path}:{lines + 1}: unreadable line ({exc})") from exc
            elif pending is not None:  # the last line
                complete = pending if pending.endswith(b"\n") else pending + b"\n"
                try:
                    consume(complete)
                except ValueError:
                    warnings.warn(f"{path}:{lines + 1}: truncated a torn last line ({len(pending)} bytes)",
                                  TornLineWarning, stacklevel=3)
                    os.truncate(path, good_end)
                    break
                if complete is not pending:
                    with open(path, "ab") as tail:
                        tail.write(b"\n")
                pending = complete
            if pending is not None:
                digest.update(pending)
                good_end, lines = good_end + len(pending), lines + 1
            pending = raw
    return lines, good_end, digest


