"""One writer per output folder: an advisory lock that a killed process gives up by itself.

A second writer's deduplication would be blind to the first one's ids, and a second process that
rewrote ``rejected.jsonl`` under a running writer would make it append to an unlinked file. The
lock is an ``flock`` on a file in the folder, released when its descriptor closes (also on SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from openie4pp.errors import UsageError

LOCK_NAME = ".openie4pp-writer.lock"


class FolderBusyError(UsageError, RuntimeError):
    """Another writer holds the folder's lock (also a RuntimeError, as it was before)."""


def lock_folder(out_dir: Path) -> int | None:
    """Take ``out_dir``'s writer lock; the descriptor, or None where there are no such locks."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        return None
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise FolderBusyError(f"another process is writing to {out_dir} (its lock {out_dir / LOCK_NAME} is "
                              "held); wait for it, or stop it") from None
    return fd


def unlock_folder(out_dir: Path, fd: int) -> None:
    """Give up the lock :func:`lock_folder` took, removing the lock file so a finished folder is clean."""
    with contextlib.suppress(OSError):
        os.unlink(out_dir / LOCK_NAME)
    os.close(fd)


@contextlib.contextmanager
def folder_locked(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir``'s writer lock for a block (removing a dataset, probing before a long start)."""
    fd = lock_folder(out_dir)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def check_not_busy(out_dir: Path) -> None:
    """Raise :class:`FolderBusyError` now if another writer holds ``out_dir``'s lock: a command that
    starts a model server or loads weights first must not find that out minutes later."""
    if (out_dir / LOCK_NAME).exists():
        with folder_locked(out_dir):
            pass
