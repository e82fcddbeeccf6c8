"""``rejected.jsonl``: the one owner of the file, and the one rule of which lines finish an item.

Every input id of an annotation run ends exactly once: as a record in a shard, or as a
*sentence-level* line here (:func:`is_final_rejection`). Candidate-level lines (``field`` =
``candidates[i]``) explain a sentence's outcome and finish nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openie4pp.appendlog import append_line, close_fd, open_append, recover
from openie4pp.atomic import atomic_writer
from openie4pp.schema import Rejection, RejectionReason, is_candidate_field

NOT_FINAL_REASONS = frozenset({RejectionReason.internal_error.value, RejectionReason.duplicate.value})
"""Lines that name a sentence id and still finish nothing: a bug in this program is no verdict on the
sentence (the next run annotates the item again, its old line dropped first), and a ``duplicate``
line is about a repeated input line whose id the first occurrence accounts for."""


def is_final_rejection(data: Any) -> bool:
    """Whether a ``rejected.jsonl`` line (parsed JSON, or a :class:`Rejection`) finishes its sentence
    id: sentence-level (not about one candidate), with an id, and not in :data:`NOT_FINAL_REASONS`.
    An input line with an id counts (``too_long``, ``empty_sentence``...): that id is done, a rerun
    must not also annotate it under other limits; ``--retry-failed REASON`` reopens it."""
    if isinstance(data, Rejection):
        data = {"sentence_id": data.sentence_id, "field": data.field, "reason": data.reason.value}
    return (isinstance(data, dict) and bool(data.get("sentence_id"))
            and not is_candidate_field(data.get("field")) and data.get("reason") not in NOT_FINAL_REASONS)


_DERIVED_ID = re.compile(r"^([a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)-[0-9a-f]{16}$")
"""A derived sentence id (``schema.sentence_id_for``): ``LANG-<16 hex>``."""


def rejection_lang(data: Any, targets: Sequence[str] = ()) -> str:
    """A ``rejected.jsonl`` line's language (parsed JSON, or a :class:`Rejection`): its own ``lang``
    (schema 1.2), else what its sentence id says (a derived id ``LANG-hash``, a projected unit
    ``ID.LANG`` of one of ``targets``), else ``?``. The manifest's acceptance table and the report
    count by this one rule."""
    if isinstance(data, Rejection):
        data = {"lang": data.lang, "sentence_id": data.sentence_id}
    if data.get("lang"):
        return str(data["lang"])
    sid = str(data.get("sentence_id") or "")
    if match := _DERIVED_ID.match(sid):
        return match.group(1)
    head, dot, tail = sid.rpartition(".")
    return tail if dot and head and tail in targets else "?"


class RejectionWriter:
    """Append-only ``rejected.jsonl``; identical lines (a rerun rejecting the same input) are written once.

    The one owner of the file: it knows which sentences are finished by a rejection
    (:attr:`final_reasons`) and is the only code that rewrites it (:meth:`forget`), which only
    happens while its :class:`~openie4pp.shards.ShardWriter` holds the folder's lock. A second
    process that rewrote the file under a running writer would make that writer append to an
    unlinked inode.
    """

    def __init__(self, path: str | Path, *, resume: bool = False, durable: bool = False) -> None:
        self.path, self.durable = Path(path), durable
        self.count, self.size = 0, 0
        self.final_reasons: dict[str, str] = {}
        """Sentence id -> the reason of the sentence-level rejection that finished it."""
        self._forgettable: Counter[str] = Counter()
        """Sentence-level lines per reason: what :meth:`forget` could drop (it skips the rewrite
        when none of the asked reasons is here)."""
        self._seen: set[bytes] = set()
        self._fd: int | None = None
        if self.path.exists() and self.path.stat().st_size:
            if not resume:
                raise FileExistsError(f"{self.path} exists; pass resume=True to append to it")
            self.count, self.size, _ = recover(self.path, self._remember)

    def _note(self, data: Any) -> None:
        if data.get("sentence_id") and not is_candidate_field(data.get("field")):
            self._forgettable[str(data.get("reason"))] += 1
            if is_final_rejection(data):
                self.final_reasons[str(data["sentence_id"])] = str(data.get("reason"))

    def _remember(self, line: bytes) -> None:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        self._seen.add(hashlib.sha1(line).digest())
        self._note(data)

    def write(self, rejection: Rejection) -> bool:
        """Append ``rejection``; False when an identical line is already there."""
        line = (rejection.model_dump_json() + "\n").encode()
        key = hashlib.sha1(line).digest()
        if key in self._seen:
            return False
        if self._fd is None:
            self._fd = open_append(self.path)
        append_line(self._fd, line, self.size)
        self._seen.add(key)
        self.count, self.size = self.count + 1, self.size + len(line)
        self._note({"sentence_id": rejection.sentence_id, "field": rejection.field,
                    "reason": rejection.reason.value})
        return True

    def forget(self, reasons: set[str] | frozenset[str]) -> dict[str, int]:
        """Drop the sentence-level lines whose reason is in ``reasons`` (their items count as not done
        again); returns how many per reason. The kept lines are streamed, byte for byte, to a file
        beside that is renamed over the old one, so a crash leaves either version, never a mixture."""
        if not any(self._forgettable[reason] for reason in reasons):
            return {}
        self.close()
        dropped: Counter[str] = Counter()
        with self.path.open("rb") as lines, atomic_writer(self.path) as kept:
            for line in lines:
                data: Any = None
                with contextlib.suppress(ValueError):
                    data = json.loads(line)
                if (isinstance(data, dict) and data.get("reason") in reasons and data.get("sentence_id")
                        and not is_candidate_field(data.get("field"))):
                    dropped[str(data["reason"])] += 1
                else:
                    kept.write(line)
        self.final_reasons, self._seen, self._forgettable = {}, set(), Counter()
        self.count, self.size, _ = recover(self.path, self._remember)
        return dict(dropped)

    def close(self) -> None:
        if self._fd is not None:
            close_fd(self._fd, self.durable)
            self._fd = None
