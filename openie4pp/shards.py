"""Crash-safe JSONL shards of OpenIE4++ records, and a constant-memory reader for them.

A shard directory looks like this::

    out_dir/
      <lang>/shard-00000.jsonl   one Record per line, rotated by record count and byte size
      rejected.jsonl             one Rejection per line
      manifest.json              written at close: counts, per-shard sha256, scrubbed build config
      README.md                  a Hugging Face dataset card, so that ``load_dataset(out_dir)`` works

Annotation runs last hours against paid endpoints and get killed (OOM, pre-emption, Ctrl-C).
So every line goes out as a single ``os.write`` of the whole line on an unbuffered ``O_APPEND``
descriptor: a SIGKILL loses at most the line being written, and that line is recognisably torn
(it lacks its newline). ``resume=True`` repairs such a tail, reloads the ids already written and
carries on, so rerunning the same command never pays twice for a sentence nor stores it twice.
``manifest.json`` is removed when a writer opens and rewritten when it closes: its presence
means the directory was finalised, and its checksums describe exactly the files beside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from openie4pp.errors import UsageError
from openie4pp.jsonl import TornLineWarning, iter_records_in_file
from openie4pp.paths import write_bytes_atomic, write_text_atomic
from openie4pp.redact import scrub_config
from openie4pp.schema import SCHEMA_VERSION, Record, Rejection, RejectionReason, is_candidate_field

MANIFEST, REJECTED, CARD = "manifest.json", "rejected.jsonl", "README.md"
_LOCK = ".openie4pp-writer.lock"
_SHARD_NAME = re.compile(r"^shard-(\d+)\.jsonl$")


class FolderBusyError(UsageError, RuntimeError):
    """Another writer holds the folder's lock (also a RuntimeError, as it was before)."""


class ShardCorruptError(ValueError):
    """A line other than the last one of a shard is unreadable: not a crash artefact, so not repaired."""


def shard_files(path: str | Path) -> dict[str, list[Path]]:
    """The ``<lang>/shard-N.jsonl`` files of a directory by language, in language then shard order."""
    found: dict[str, list[tuple[int, Path]]] = {}
    for shard in Path(path).glob("*/shard-*.jsonl"):
        match = _SHARD_NAME.match(shard.name)
        if match and shard.is_file():
            found.setdefault(shard.parent.name, []).append((int(match.group(1)), shard))
    return {lang: [p for _, p in sorted(found[lang])] for lang in sorted(found)}


def iter_records(path: str | Path, *, strict: bool = False) -> Iterator[Record | Rejection]:
    """Stream the Records of a shard directory (all languages, in order) or of one JSONL file.

    A bad line (malformed JSON, schema error, other schema major version) is yielded as a
    :class:`Rejection` with file, 1-based line, field and reason rather than ending a long
    read half-way; ``strict=True`` raises :class:`InvalidRecordError` instead.
    """
    root = Path(path)
    files = [f for shards in shard_files(root).values() for f in shards] if root.is_dir() else [root]
    for file in files:
        yield from iter_records_in_file(file, strict=strict)


def _append(fd: int, data: bytes, size_before: int) -> None:
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


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def _close(fd: int, durable: bool, directory: Path | None = None) -> None:
    if durable:
        os.fsync(fd)
        if directory is not None:
            with contextlib.suppress(OSError):  # not every platform can fsync a directory
                dir_fd = os.open(directory, os.O_RDONLY)
                os.fsync(dir_fd)
                os.close(dir_fd)
    os.close(fd)


def _recover(path: Path, consume: Callable[[bytes], None]) -> tuple[int, int, hashlib._Hash]:
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


NOT_FINAL_REASONS = frozenset({RejectionReason.internal_error.value})
"""Sentence-level rejections that do not finish an item: a bug in this program is no verdict on the
sentence, so the next run annotates the item again (its old line is dropped first)."""


def is_final_rejection(data: Any) -> bool:
    """Whether a ``rejected.jsonl`` object (parsed JSON) finishes its sentence: sentence-level (not
    about one candidate), with an id, and not in :data:`NOT_FINAL_REASONS`."""
    return (isinstance(data, dict) and bool(data.get("sentence_id")) and data.get("stage") != "input"
            and not is_candidate_field(data.get("field")) and data.get("reason") not in NOT_FINAL_REASONS)


class RejectionWriter:
    """Append-only ``rejected.jsonl``; identical lines (a rerun rejecting the same input) are written once.

    The one owner of the file: it knows which sentences are finished by a rejection
    (:attr:`final_reasons`) and is the only code that rewrites it (:meth:`forget`), which only
    happens while its :class:`ShardWriter` holds the folder's lock. A second process that rewrote
    the file under a running writer would make that writer append to an unlinked inode.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, durable: bool = False) -> None:
        self.path, self.durable = Path(path), durable
        self.count, self.size = 0, 0
        self.final_reasons: dict[str, str] = {}
        """Sentence id -> the reason of the sentence-level rejection that finished it."""
        self._seen: set[bytes] = set()
        self._fd: int | None = None
        if self.path.exists() and self.path.stat().st_size:
            if not resume:
                raise FileExistsError(f"{self.path} exists; pass resume=True to append to it")
            self.count, self.size, _ = _recover(self.path, self._remember)

    def _remember(self, line: bytes) -> None:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        self._seen.add(hashlib.sha1(line).digest())
        if is_final_rejection(data):
            self.final_reasons[str(data["sentence_id"])] = str(data.get("reason"))

    def write(self, rejection: Rejection) -> bool:
        """Append ``rejection``; False when an identical line is already there."""
        line = (rejection.model_dump_json() + "\n").encode()
        key = hashlib.sha1(line).digest()
        if key in self._seen:
            return False
        if self._fd is None:
            self._fd = _open_append(self.path)
        _append(self._fd, line, self.size)
        self._seen.add(key)
        self.count, self.size = self.count + 1, self.size + len(line)
        if rejection.sentence_id and rejection.stage != "input" and not is_candidate_field(rejection.field) \
                and rejection.reason.value not in NOT_FINAL_REASONS:
            self.final_reasons[rejection.sentence_id] = rejection.reason.value
        return True

    def forget(self, reasons: set[str] | frozenset[str]) -> dict[str, int]:
        """Drop the sentence-level lines whose reason is in ``reasons`` (their items count as not done
        again); returns how many per reason. Rewritten beside and renamed over the old file, so a
        crash leaves either version, never a mixture; every other line is kept byte for byte."""
        if not self.path.exists() or not reasons:
            return {}
        self.close()
        kept: list[bytes] = []
        dropped: Counter[str] = Counter()
        with self.path.open("rb") as lines:
            for line in lines:
                data: Any = None
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                reason = data.get("reason") if isinstance(data, dict) else None
                if (isinstance(data, dict) and reason in reasons and data.get("sentence_id")
                        and data.get("stage") != "input" and not is_candidate_field(data.get("field"))):
                    dropped[str(reason)] += 1
                else:
                    kept.append(line)
        if dropped:
            write_bytes_atomic(self.path, b"".join(kept))
            self.final_reasons, self._seen = {}, set()
            self.count, self.size, _ = _recover(self.path, self._remember)
        return dict(dropped)

    def close(self) -> None:
        if self._fd is not None:
            _close(self._fd, self.durable)
            self._fd = None


@dataclass
class ShardInfo:
    """One shard's running totals; ``sha256`` is fed every line as it is written."""

    path: Path
    lang: str
    records: int = 0
    extractions: int = 0
    bytes: int = 0
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class ShardWriter:
    """Append records to ``out_dir/<lang>/shard-NNNNN.jsonl``, deduplicated by sentence id.

    A shard is rotated before a write that would take it past ``max_records`` records or
    ``max_bytes`` bytes (``None``: no cap; a record bigger than ``max_bytes`` gets a shard of its
    own). One process per directory: a lock file stops a second writer, whose dedup would be
    blind to the first one's ids. Not thread-safe.
    """

    def __init__(self, out_dir: str | Path, *, max_records: int | None = 100_000,
                 max_bytes: int | None = 256 * 1024 * 1024, resume: bool = False,
                 build_config: dict[str, Any] | None = None, durable: bool = False) -> None:
        if (max_records is not None and max_records < 1) or (max_bytes is not None and max_bytes < 1):
            raise ValueError("max_records and max_bytes must be positive (or None for no cap)")
        self.out_dir, self.durable, self.build_config = Path(out_dir), durable, build_config
        self.max_records, self.max_bytes = max_records or 2**63, max_bytes or 2**63
        self._shards: dict[str, list[ShardInfo]] = {}
        self._fds: dict[str, int] = {}
        self._ids: set[str] = set()
        self._closed = False
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._lock()
        try:
            self._created = self._load_existing() if resume else self._refuse_existing()
            self.rejections = RejectionWriter(self.out_dir / REJECTED, resume=resume, durable=durable)
        except BaseException:
            self._unlock()
            raise

    def _lock(self) -> int | None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks
            return None
        fd = os.open(self.out_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise FolderBusyError(f"another process is writing to {self.out_dir} (its lock "
                                  f"{self.out_dir / _LOCK} is held); wait for it, or stop it") from None
        return fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.out_dir / _LOCK)
            os.close(self._lock_fd)
            self._lock_fd = None

    def _refuse_existing(self) -> str:
        if shard_files(self.out_dir) or (self.out_dir / REJECTED).exists():
            raise FileExistsError(f"{self.out_dir} holds shards already; pass resume=True to continue")
        return _now()

    def _load_existing(self) -> str:
        """Repair and index the shards of earlier runs; return the first run's ``created`` time."""
        created, manifest = _now(), self.out_dir / MANIFEST
        if manifest.exists():
            with contextlib.suppress(ValueError, OSError):
                old = json.loads(manifest.read_text(encoding="utf-8"))
                created = old.get("created", created)
                if self.build_config is None:
                    self.build_config = old.get("build_config")
            manifest.unlink()
        (self.out_dir / CARD).unlink(missing_ok=True)  # a card says "finished"; it is written at close
        for lang, paths in shard_files(self.out_dir).items():
            for path in paths:
                shard = ShardInfo(path=path, lang=lang)

                def consume(line: bytes, shard: ShardInfo = shard) -> None:
                    data = json.loads(line)
                    try:
                        sentence_id = data["sentence"]["id"]
                    except (KeyError, TypeError) as exc:
                        raise ValueError("no sentence.id") from exc
                    self._ids.add(str(sentence_id))
                    shard.extractions += len(data.get("extractions") or ())

                shard.records, shard.bytes, shard.sha256 = _recover(path, consume)
                self._shards.setdefault(lang, []).append(shard)
        return created

    def __contains__(self, sentence_id: object) -> bool:
        """Whether a record with this id is stored: check before paying for an annotation."""
        return sentence_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def _target(self, lang: str, size: int) -> ShardInfo:
        """The shard of ``lang`` that takes a ``size``-byte line, rotating first when it is full."""
        shards = self._shards.setdefault(lang, [])
        current = shards[-1] if shards else None
        if current is None or (current.records and (
                current.records >= self.max_records or current.bytes + size > self.max_bytes)):
            index = 0
            if current is not None:
                fd = self._fds.pop(lang, None)
                if fd is not None:
                    _close(fd, self.durable, current.path.parent)
                match = _SHARD_NAME.match(current.path.name)
                index = int(match.group(1)) + 1 if match else len(shards)
            current = ShardInfo(path=self.out_dir / lang / f"shard-{index:05d}.jsonl", lang=lang)
            shards.append(current)
        if lang not in self._fds:
            current.path.parent.mkdir(exist_ok=True)
            self._fds[lang] = _open_append(current.path)
        return current

    def write(self, record: Record) -> bool:
        """Append ``record``; False (nothing written) when its sentence id is already stored.

        Once this returns the line is in the kernel: it survives the process being killed (and
        a power cut only with ``durable``, after the next rotation or close).
        """
        if self._closed:
            raise ValueError("write to a closed ShardWriter")
        if record.sentence.id in self._ids:
            return False
        line = (record.model_dump_json() + "\n").encode()
        shard = self._target(record.sentence.lang, len(line))
        _append(self._fds[record.sentence.lang], line, shard.bytes)
        self._ids.add(record.sentence.id)
        shard.records, shard.bytes = shard.records + 1, shard.bytes + len(line)
        shard.extractions += len(record.extractions)
        shard.sha256.update(line)
        return True

    def reject(self, rejection: Rejection) -> bool:
        """Append to ``rejected.jsonl``; False when an identical rejection is already there."""
        if self._closed:
            raise ValueError("write to a closed ShardWriter")
        return self.rejections.write(rejection)

    def manifest(self) -> dict[str, Any]:
        """What ``close`` writes to ``manifest.json`` (shard paths relative, with ``/``)."""
        shards = [s for lang in sorted(self._shards) for s in self._shards[lang] if s.records]
        languages: dict[str, dict[str, int]] = {}
        for s in shards:
            totals = languages.setdefault(s.lang, {"records": 0, "extractions": 0, "shards": 0})
            totals["records"] += s.records
            totals["extractions"] += s.extractions
            totals["shards"] += 1
        return {
            "format": "openie4pp-shards", "schema_version": SCHEMA_VERSION,
            "created": self._created, "updated": _now(),
            "records": sum(s.records for s in shards), "extractions": sum(s.extractions for s in shards),
            "languages": languages,
            "shards": [{"path": s.path.relative_to(self.out_dir).as_posix(), "lang": s.lang,
                        "records": s.records, "extractions": s.extractions, "bytes": s.bytes,
                        "sha256": s.sha256.hexdigest()} for s in shards],
            "rejected": {"path": REJECTED, "records": self.rejections.count},
            "build_config": scrub_config(self.build_config or {}),
        }

    def _write_atomically(self, name: str, text: str) -> None:
        write_text_atomic(self.out_dir / name, text)

    def close(self, *, complete: bool = True) -> None:
        """Close the shards (fsync when durable), drop empty ones, write the manifest, and for a
        ``complete`` run that stored records the dataset card. An incomplete one (an exception, an
        interrupt) gets a manifest saying ``"complete": false`` and no card, so nothing looks like a
        finished dataset."""
        if self._closed:
            return
        self._closed = True
        try:
            for lang, fd in self._fds.items():
                _close(fd, self.durable, self.out_dir / lang)
            self._fds.clear()
            self.rejections.close()
            for lang, shards in self._shards.items():
                for shard in [s for s in shards if not s.records]:  # a resumed shard that was all torn
                    shard.path.unlink(missing_ok=True)
                    shards.remove(shard)
                with contextlib.suppress(OSError):
                    (self.out_dir / lang).rmdir()  # only succeeds when empty
            manifest = self.manifest()
            manifest["complete"] = complete
            if complete and manifest["records"]:  # a card for an empty folder would describe nothing
                from openie4pp.hf import dataset_card  # lazy: importing `datasets` takes a second

                self._write_atomically(CARD, dataset_card(manifest))
            self._write_atomically(MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
            if self.durable:
                with contextlib.suppress(OSError):
                    _close(os.open(self.out_dir, os.O_RDONLY), True)
        finally:
            self._unlock()

    def forget_rejections(self, reasons: set[str] | frozenset[str]) -> dict[str, int]:
        """See :meth:`RejectionWriter.forget`; only here, under this writer's lock."""
        if self._closed:
            raise ValueError("forget on a closed ShardWriter")
        return self.rejections.forget(reasons)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Finalise even after an exception: the lines written so far are complete and worth
        describing, but the folder is marked incomplete (see :meth:`close`)."""
        try:
            self.close(complete=exc_type is None)
        except OSError:
            if exc_type is None:
                raise  # the manifest itself could not be written (disk full): the caller must know
            self._unlock()  # already failing: keep the original error, release the lock
