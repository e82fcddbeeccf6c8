"""Crash-safe JSONL shards of OpenIE4++ records, and a constant-memory reader for them.

A shard directory looks like this::

    out_dir/
      <lang>/shard-00000.jsonl   one Record per line, rotated by record count and byte size
      rejected.jsonl             one Rejection per line
      manifest.json              written at close: counts, per-shard sha256, scrubbed build config,
                                 licences, commands, provenance and acceptance per language
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
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from openie4pp.appendlog import ShardCorruptError, append_line, close_fd, open_append, recover
from openie4pp.atomic import write_text_atomic
from openie4pp.dataset_card import card_section, cover_licenses, license_entry, scrub_command, without_command
from openie4pp.folder_lock import FolderBusyError, check_not_busy, folder_locked, lock_folder, unlock_folder
from openie4pp.jsonl import iter_jsonl_lines, iter_records_in_file
from openie4pp.redact import scrub_config
from openie4pp.rejections import NOT_FINAL_REASONS, RejectionWriter, is_final_rejection, rejection_lang
from openie4pp.schema import SCHEMA_VERSION, Record, Rejection
from openie4pp.shard_layout import CARD, MANIFEST, REJECTED, shard_files, shard_index, shard_path

__all__ = [  # the layout, the lock and the rejections log are re-exported: one import for a shard folder
    "CARD", "MANIFEST", "NOT_FINAL_REASONS", "REJECTED", "FolderBusyError", "RejectionWriter",
    "ShardCorruptError", "ShardInfo", "ShardWriter", "check_not_busy", "folder_locked",
    "is_final_rejection", "iter_records", "scrub_command", "scrub_config", "shard_files",
]

# the module-level names ShardWriter calls (tests replace ``_append`` to simulate a full disk)
_append, _open_append, _close, _recover = append_line, open_append, close_fd, recover


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


@dataclass
class ShardInfo:
    """One shard's running totals; ``sha256`` is fed every line as it is written."""

    path: Path
    lang: str
    records: int = 0
    extractions: int = 0
    bytes: int = 0
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)


_PROVENANCE_KEYS = ("source", "dataset", "model", "endpoint", "prompt_id", "prompt_hash", "constraint",
                    "mode")
"""What the manifest's ``provenance`` tally groups a language's records by: how they were made."""

def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _origin(lang: str, values: list[Any]) -> tuple[str, ...]:
    """A record's key in the provenance tally: its language and :data:`_PROVENANCE_KEYS` (enums by value)."""
    return (lang, *(str(getattr(value, "value", value) or "") for value in values))


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
        self.quality: dict[str, Any] = {}
        """Measured quality of the data (``{"canaries": {lang: scores}}``): set by the writer's
        user before ``close``; written to the manifest and the dataset card."""
        self.licenses: list[dict[str, Any]] = []
        """Which licence covers which records: entries ``{"license": HUB_ID, "license_name"?,
        "license_link"?, "note"?, "source"?, "languages"?: {lang: records}}``. One without
        ``languages`` covers the folder's records that no other entry covers (filled in at close).
        The build config's ``card`` section gives this build's entry; a resumed folder keeps the
        entries of other sources; ``merge`` sets the whole list."""
        self.commands: list[str] = []
        """The command lines that wrote this folder (scrubbed, :func:`scrub_command`), oldest first."""
        self._provenance: Counter[tuple[str, ...]] = Counter()
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
        self._describe_build(card_section(build_config))

    def _describe_build(self, card: dict[str, Any]) -> None:
        """This build's licence entry (replacing a resumed folder's entry of the same source) and
        command line (after the earlier runs' ones, unless it repeats the last)."""
        entry = license_entry(card)
        if entry is not None:
            self.licenses = [e for e in self.licenses if e.get("source") != entry.get("source")] + [entry]
        command = card.get("command")
        if isinstance(command, (list, tuple)) and command:
            line = scrub_command(command)
            if not self.commands or self.commands[-1] != line:
                self.commands.append(line)

    def _lock(self) -> int | None:
        return lock_folder(self.out_dir)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            unlock_folder(self.out_dir, self._lock_fd)
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
                self.licenses = [e for e in old.get("licenses") or () if isinstance(e, dict)]
                self.commands = [str(c) for c in old.get("commands") or ()]
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
                    provenance = data.get("provenance") or {}
                    self._provenance[_origin(shard.lang, [provenance.get(k) for k in _PROVENANCE_KEYS])] += 1

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
                number = shard_index(current.path)
                index = number + 1 if number is not None else len(shards)
            current = ShardInfo(path=shard_path(self.out_dir, lang, index), lang=lang)
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
        origin = _origin(record.sentence.lang, [getattr(record.provenance, k) for k in _PROVENANCE_KEYS])
        self._provenance[origin] += 1
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
            "acceptance": self._acceptance(languages),
            "provenance": [
                {"lang": key[0], **{k: v for k, v in zip(_PROVENANCE_KEYS, key[1:], strict=True) if v},
                 "records": n} for key, n in sorted(self._provenance.items())],
            "licenses": cover_licenses(self.licenses, languages),
            "commands": list(self.commands),
            "build_config": scrub_config(without_command(self.build_config or {})),
            **({"quality": self.quality} if self.quality else {}),
        }

    def _acceptance(self, languages: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
        """Per language: sentences accepted (records) and rejected (sentence-level final lines of
        ``rejected.jsonl``, one per id, not counting ids that became records), by reason. A rejection
        whose language is unknown (an unreadable input line) counts under ``?``."""
        rejected: dict[str, dict[str, str]] = {}
        path = self.out_dir / REJECTED
        if path.exists():
            for _, raw in iter_jsonl_lines(path):
                with contextlib.suppress(ValueError):
                    data = json.loads(raw)
                    if not is_final_rejection(data) or str(data["sentence_id"]) in self._ids:
                        continue
                    sid = str(data["sentence_id"])
                    rejected.setdefault(rejection_lang(data), {})[sid] = str(data.get("reason"))
        table: dict[str, dict[str, Any]] = {}
        for lang in sorted(set(languages) | set(rejected), key=lambda code: (code == "?", code)):
            accepted = languages.get(lang, {}).get("records", 0)
            reasons = Counter(rejected.get(lang, {}).values())
            total = accepted + sum(reasons.values())
            table[lang] = {"accepted": accepted, "rejected": sum(reasons.values()),
                           "acceptance": round(accepted / total, 4) if total else None,
                           "rejected_by_reason": dict(sorted(reasons.items()))}
        return table

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
                from openie4pp.dataset_card import dataset_card  # lazy: importing `datasets` takes a second

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
            self.close(complete=exc_type is None)  # releases the lock whatever happens
        except OSError:
            if exc_type is None:
                raise  # the manifest itself could not be written (disk full): the caller must know
            # already failing: the original error is the one to report
