"""What :class:`~.rounds.BatchRounds` keeps on disk, so that any crash resumes without paying twice.

Layout under the batch folder (``OUT/batches/``)::

    round-0001/round.json              the round's manifest, written once all its parts are: the
                                       commit point (a round folder without it is a crashed write)
    round-0001/part-000.input.jsonl    the batch input lines
    round-0001/part-000.sent.json      key -> [purpose, structured mode, constraint kind]
    round-0001/part-000.state.json     the part's progress: file id, batch id, status, ...
    round-0001/part-000.output.jsonl   the answers (downloaded, or written by ``vllm run-batch``)
    round-0001/part-000.errors.jsonl   the failed lines (OpenAI's error file)
    round-0001/part-000.result.json    what ingesting found: written once every answer is in the
                                       cache, so its presence says the part is done

Every file is written atomically before the step it records is followed by the next one; the
attempts of every key are recounted from the result files when a folder is opened, so they
survive crashes too (and an ingest repeated after a crash counts nothing twice: it rewrites the
same result file).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openie4pp.atomic import write_text_atomic

from .batch_files import SentLine, errors_path, input_path, output_path

__all__ = ["Attempts", "PartState", "RoundDir"]

_ROUND_PREFIX = "round-"


def _dump(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class PartState:
    """One part's progress; ``phase`` is the last step begun or finished:

    ``written`` -> ``uploading`` -> ``uploaded`` -> ``creating`` -> ``created`` -> ``downloaded``
    (then its result file). ``uploading``/``creating`` without an id: the step may have happened
    before a crash, so the provider is searched before the step is repeated."""

    folder: Path
    name: str
    sha256: str
    nonce: str
    lines: int
    size: int
    phase: str = "written"
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None
    upload_started: float | None = None
    create_started: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    request_counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    _SAVED = ("phase", "file_id", "batch_id", "status", "upload_started", "create_started",
              "output_file_id", "error_file_id", "request_counts", "errors")

    @property
    def input(self) -> Path:
        return input_path(self.folder, self.name)

    @property
    def output(self) -> Path:
        return output_path(self.input)

    @property
    def error_file(self) -> Path:
        return errors_path(self.input)

    @property
    def state_file(self) -> Path:
        return self.folder / f"{self.name}.state.json"

    @property
    def result_file(self) -> Path:
        return self.folder / f"{self.name}.result.json"

    @property
    def sent_file(self) -> Path:
        return self.folder / f"{self.name}.sent.json"

    @property
    def done(self) -> bool:
        return self.result_file.exists()

    @property
    def label(self) -> str:
        """``round-0001/part-000``: how logs and batch metadata name the part."""
        return f"{self.folder.name}/{self.name}"

    def save(self, **changes: Any) -> None:
        """Apply ``changes`` and persist them (atomically) before the caller goes on."""
        for key, value in changes.items():
            setattr(self, key, value)
        _dump(self.state_file, {key: getattr(self, key) for key in self._SAVED})

    def load(self) -> PartState:
        if self.state_file.exists():
            for key, value in _load(self.state_file).items():
                if key in self._SAVED:
                    setattr(self, key, value)
        return self

    def sent(self) -> dict[str, SentLine]:
        return {key: SentLine.from_list(value) for key, value in _load(self.sent_file).items()}

    def write_sent(self, sent: dict[str, SentLine]) -> None:
        _dump(self.sent_file, {key: line.as_list() for key, line in sent.items()})

    def result(self) -> dict[str, Any]:
        return dict(_load(self.result_file))

    def write_result(self, result: dict[str, Any]) -> None:
        _dump(self.result_file, result)


@dataclass
class RoundDir:
    """One round's folder and manifest."""

    folder: Path
    number: int
    model: str
    parts: list[PartState]
    oversize: dict[str, str] = field(default_factory=dict)
    """Keys whose line alone exceeds ``max_bytes_per_file``: given up at once, never sent."""
    transport: str = ""
    """Who holds the round's files and batches (``batch-files``, or the Batch API's host): a rerun
    through another one could neither poll nor find them ("" in rounds written before it was kept)."""

    @property
    def manifest(self) -> Path:
        return self.folder / "round.json"

    @property
    def done(self) -> bool:
        return all(part.done for part in self.parts)

    def commit(self) -> None:
        """Write the manifest: from now on the round exists and is resumed after a crash."""
        _dump(self.manifest, {"round": self.number, "model": self.model, "oversize": self.oversize,
                              "transport": self.transport,
                              "parts": [{"name": p.name, "sha256": p.sha256, "nonce": p.nonce,
                                         "lines": p.lines, "bytes": p.size} for p in self.parts]})

    @classmethod
    def open(cls, folder: Path) -> RoundDir:
        data = _load(folder / "round.json")
        parts = [PartState(folder=folder, name=p["name"], sha256=p["sha256"], nonce=p["nonce"],
                           lines=int(p["lines"]), size=int(p["bytes"])).load() for p in data["parts"]]
        return cls(folder=folder, number=int(data["round"]), model=str(data["model"]), parts=parts,
                   oversize={str(k): str(v) for k, v in (data.get("oversize") or {}).items()},
                   transport=str(data.get("transport") or ""))

    @classmethod
    def scan(cls, root: Path) -> tuple[list[RoundDir], int]:
        """The committed rounds under ``root`` (oldest first) and the next round's number. A round
        folder without a manifest was being written when a process died: nothing of it was sent,
        so it is removed."""
        rounds: list[RoundDir] = []
        highest = 0
        if not root.is_dir():
            return rounds, 1
        for folder in sorted(root.glob(f"{_ROUND_PREFIX}*")):
            suffix = folder.name[len(_ROUND_PREFIX):]
            if not folder.is_dir() or not suffix.isdigit():
                continue
            if not (folder / "round.json").exists():
                shutil.rmtree(folder, ignore_errors=True)
                continue
            rounds.append(cls.open(folder))
            highest = max(highest, rounds[-1].number)
        return rounds, highest + 1

    @staticmethod
    def folder_for(root: Path, number: int) -> Path:
        return root / f"{_ROUND_PREFIX}{number:04d}"


class Attempts:
    """Failed attempts per key, recounted from every done part's result file (and each round's
    oversize keys, given up at once): the ledger behind :meth:`~.rounds.BatchRounds.given_up`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count: dict[str, int] = {}
        self.detail: dict[str, str] = {}

    def add(self, key: str, detail: str, times: int = 1) -> bool:
        """Count ``times`` failed attempts; True if the key just reached the limit."""
        before = self.count.get(key, 0)
        self.count[key] = before + times
        self.detail[key] = detail
        return before < self.limit <= self.count[key]

    def given_up(self, key: str) -> str | None:
        if self.count.get(key, 0) >= self.limit:
            return f"batch line failed {self.count[key]} time(s): {self.detail[key]}"
        return None

    def load(self, rounds: list[RoundDir], from_round: int = 0) -> Attempts:
        """Count the failures of ``rounds`` numbered ``from_round`` or later (``--retry-failed
        request_failed`` forgives the earlier ones: their keys get ``limit`` attempts again)."""
        for round_dir in rounds:
            if round_dir.number < from_round:
                continue
            for key, detail in round_dir.oversize.items():
                self.add(key, detail, times=self.limit)
            for part in round_dir.parts:
                if part.done:
                    for key, detail in part.result().get("failed", {}).items():
                        self.add(key, str(detail))
        return self


FORGIVEN = "attempts-from.json"
"""``OUT/batches/attempts-from.json``: failures of rounds before ``{"round": N}`` no longer count."""


def forgiven_before(root: Path) -> int:
    """The first round whose failures count (0: all of them)."""
    path = root / FORGIVEN
    return int(_load(path)["round"]) if path.exists() else 0


def forgive_before(root: Path, number: int) -> None:
    """Make the failures of rounds before ``number`` count no more (durably: a crash keeps it)."""
    root.mkdir(parents=True, exist_ok=True)
    _dump(root / FORGIVEN, {"round": number})


def unfinished_rounds(root: Path) -> list[Path]:
    """Committed rounds under ``root`` that are not done, read without changing anything (an online
    run must not re-send what a stopped batch run has in flight, and must not tidy its folder)."""
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.glob(f"{_ROUND_PREFIX}*")):
        if (folder / "round.json").exists():
            try:
                if not RoundDir.open(folder).done:
                    found.append(folder)
            except (OSError, ValueError, KeyError, TypeError):  # unreadable: treat it as in flight
                found.append(folder)
    return found
