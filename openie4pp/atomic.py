"""The one way files are replaced: atomically, so that readers and a crash see the old file or the new
one, never half of one (a manifest, a dataset card, a rewritten ``rejected.jsonl``)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers (and a crash) see the old file or the new one,
    never half of one: written beside as ``.NAME.tmp``, flushed to disk, then renamed over it.
    ``text`` is written as given (no newline translation), so kept lines stay byte for byte."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """:func:`write_text_atomic` for bytes."""
    with atomic_writer(path) as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends without an error (written beside as
    ``.NAME.XXXX.tmp``, a name of its own so that two writers never write into one file, flushed to
    disk, renamed over it); on an error (disk full, a check raising inside the block) the temporary
    file is removed and ``path`` is untouched. For rewrites too large to hold in memory."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as handle:  # created as any file is (umask), unlike mkstemp's 0600
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
