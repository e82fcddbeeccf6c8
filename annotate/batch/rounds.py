"""One round of batch requests: write the part files, submit them, poll, and ingest the answers.

The round loop (:mod:`.execution`) runs a pipeline pass whose cache misses are collected instead of
sent, and hands them here; once a round is ingested its answers are in the response cache, so the
next pass finds them there, exactly as a resumed online run does. What a round leaves unanswered
(failed lines, lines missing from an output, the rest of an expired batch) is simply not in the
cache, so the next pass collects it again; :meth:`BatchRounds.given_up` says when a key has failed
often enough to be rejected instead.

Why so much care about crashes: a batch is paid when it is created, and it runs for hours. Every
step is persisted (:mod:`.state`) before the next one, and the two steps a crash can interrupt
without leaving a trace of their outcome, an upload and a batch creation, are looked up at the
provider before they are repeated (the upload by its file name, the batch by its input file and
its metadata, which name the part's content hash and a nonce of its own). A key whose answer is
in the cache is never sent again, nor one that is in a batch still running.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from openie4pp.errors import UsageError

from ..llm import ChatRequest, ChatResponse
from .batch_files import SentLine, encode_line, read_results, write_parts
from .state import Attempts, PartState, RoundDir, forgive_before, forgiven_before
from .transport import BatchAPIError, BatchInfo, BatchTransport, OutputsAwaited

if TYPE_CHECKING:
    from ..config import BatchSettings

__all__ = ["BatchRounds", "BatchStats", "ResponseStore", "RoundReport"]

log = logging.getLogger(__name__)

MAX_POLL_FAILURES = 5
"""Transient errors in a row while polling before the round stops (its state is kept: a rerun polls on)."""
FIND_SLACK_S = 3600.0
"""How far before the recorded start of a creation a batch may be dated and still be ours (clocks differ)."""


class ResponseStore(Protocol):
    """What rounds need of the response cache (:class:`~..backends.cache.CachedBackend`)."""

    def lookup(self, key: str) -> ChatResponse | None: ...

    def store(self, key: str, response: ChatResponse, purpose: str) -> None: ...


@dataclass
class BatchStats:
    """Counts of this process (a resumed run starts at zero; the cache and ``OUT/batches`` keep the rest)."""

    rounds: int = 0
    """Rounds written or resumed."""
    batches: int = 0
    """Batches whose end this process saw and ingested."""
    lines_sent: int = 0
    """Lines of the batches this process created."""
    lines_ok: int = 0
    lines_failed: int = 0
    """Lines answered with an error, or failed with their whole batch (each counts an attempt)."""
    lines_missing: int = 0
    """Lines absent from a completed batch's output (each counts an attempt)."""
    expired: int = 0
    cancelled: int = 0
    failed: int = 0
    """Batches that failed as a whole (the provider refused the file: a wrong model, a bad line)."""
    resubmitted: int = 0
    """Lines an expired or cancelled batch left unanswered: sent again next round, no attempt counted."""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def add(self, other: BatchStats) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class RoundReport:
    """What one :meth:`BatchRounds.run_round` or :meth:`BatchRounds.resume` did."""

    rounds: list[int] = field(default_factory=list)
    """The round numbers worked on (empty: nothing needed sending)."""
    parts: int = 0
    batch_ids: list[str] = field(default_factory=list)
    skipped_cached: int = 0
    """Requests not sent because the cache already had their answer."""
    skipped_given_up: int = 0
    given_up: list[str] = field(default_factory=list)
    """Keys that reached ``max_line_attempts`` in this report's rounds."""
    stats: BatchStats = field(default_factory=BatchStats)
    wall_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"] = self.stats.as_dict()
        return data

    def __str__(self) -> str:
        """One line for a progress message (the dataclass repr lists every batch id and key)."""
        s = self.stats
        which = ",".join(map(str, self.rounds)) or "none"
        return (f"round {which}: {self.parts} part(s), {len(self.batch_ids)} batch(es), {s.lines_sent} sent, "
                f"{s.lines_ok} ok, {s.lines_failed} failed, {s.lines_missing} missing, {s.resubmitted} to "
                f"resubmit, {self.skipped_cached} cached, {len(self.given_up)} given up")


class BatchRounds:
    """Batch rounds under ``folder`` (``OUT/batches/``), answers stored into ``cache``."""

    def __init__(self, folder: Path, cache: ResponseStore, model: str, transport: BatchTransport,
                 settings: BatchSettings, *, sleep: Callable[[float], None] = time.sleep,
                 forgive_failures: bool = False) -> None:
        """``forgive_failures`` (``--retry-failed request_failed``): lines given up by earlier rounds
        get ``max_line_attempts`` new attempts."""
        self.folder = Path(folder)
        self.cache, self.model, self.transport, self.settings = cache, model, transport, settings
        self.sleep = sleep
        self.fresh: set[str] = set()
        """Keys whose answers this process ingested into the cache."""
        self.failures: list[str] = []
        """Why batches this process ingested failed as a whole."""
        self._stats = BatchStats()
        rounds, self._next = RoundDir.scan(self.folder)
        if forgive_failures:
            forgive_before(self.folder, self._next)
        self._attempts = Attempts(settings.max_line_attempts).load(rounds, forgiven_before(self.folder))

    @property
    def stats(self) -> BatchStats:
        return self._stats

    def given_up(self, key: str) -> str | None:
        """Why ``key`` is given up (it failed ``max_line_attempts`` times), or None."""
        return self._attempts.given_up(key)

    # -- the two entry points ------------------------------------------------------------------

    def resume(self) -> RoundReport | None:
        """Finish the rounds a stopped or crashed process left (upload, create, poll, ingest, as
        far as each part got); None if there are none."""
        rounds, self._next = RoundDir.scan(self.folder)
        unfinished = [r for r in rounds if not r.done]
        if not unfinished:
            return None
        for round_dir in unfinished:
            if round_dir.transport and round_dir.transport != self.transport.name:
                raise UsageError(f"{round_dir.folder} was started through {round_dir.transport} and is not "
                                 f"finished: rerun with the same --execution and --endpoint to finish it, or "
                                 f"remove {self.folder} to abandon it (its batches may still be billed)")
        report = RoundReport()
        for round_dir in unfinished:
            log.info("batch round %d: resuming (%d of %d parts unfinished)", round_dir.number,
                     sum(not p.done for p in round_dir.parts), len(round_dir.parts))
            self._finish(round_dir, report)
        return report

    def run_round(self, requests: Mapping[str, ChatRequest]) -> RoundReport:
        """Send ``requests`` (cache key -> request) as one round and ingest its answers. Keys whose
        answer is cached or that are given up are not sent; a round left unfinished by an earlier
        process is finished first (so none of its keys is sent twice)."""
        leftover = self.resume()
        report = RoundReport()
        if leftover is not None:
            report.rounds, report.batch_ids, report.given_up = (
                leftover.rounds, leftover.batch_ids, leftover.given_up)
            report.stats.add(leftover.stats)
        todo: dict[str, ChatRequest] = {}
        for key, request in requests.items():
            if self.given_up(key) is not None:
                report.skipped_given_up += 1
            elif self.cache.lookup(key) is not None:
                report.skipped_cached += 1
            else:
                todo[key] = request
        if not todo:
            return report
        round_dir = self._write_round(todo, report)
        self._finish(round_dir, report)
        return report

    # -- writing -------------------------------------------------------------------------------

    def _write_round(self, todo: dict[str, ChatRequest], report: RoundReport) -> RoundDir:
        number = self._next
        self._next += 1
        folder = RoundDir.folder_for(self.folder, number)
        sent: dict[str, SentLine] = {}

        def lines() -> Iterator[tuple[str, bytes]]:
            for key, request in todo.items():
                if request.cache_key(self.model) != key:
                    raise ValueError(f"batch request under key {key[:12]}... has another cache key")
                line, sent[key] = encode_line(self.model, key, request,
                                              max_tokens_field=self.transport.max_tokens_field)
                yield key, line

        files, oversize = write_parts(folder, lines(), max_requests=self.settings.max_requests_per_file,
                                      max_bytes=self.settings.max_bytes_per_file)
        round_dir = RoundDir(folder=folder, number=number, model=self.model, parts=[],
                             transport=self.transport.name)
        for key, size in oversize:
            limit = self.settings.max_bytes_per_file
            detail = f"request of {size} bytes exceeds max_bytes_per_file ({limit})"
            round_dir.oversize[key] = detail
            if self._attempts.add(key, detail, times=self.settings.max_line_attempts):
                report.given_up.append(key)
        for file in files:
            part = PartState(folder=folder, name=file.name, sha256=file.sha256, nonce=secrets.token_hex(8),
                             lines=len(file.keys), size=file.size)
            part.write_sent({key: sent[key] for key in file.keys})
            round_dir.parts.append(part)
        round_dir.commit()
        too_large = f", {len(oversize)} too large" if oversize else ""
        log.info("batch round %d: %d requests written in %d part(s)%s", number,
                 sum(len(f.keys) for f in files), len(files), too_large)
        return round_dir

    # -- submitting, polling, ingesting -----------------------------------------------------------

    def _finish(self, round_dir: RoundDir, report: RoundReport) -> None:
        """Take every unfinished part of ``round_dir`` to its end."""
        start = time.monotonic()
        self._stats.rounds += 1
        report.stats.rounds += 1
        report.rounds.append(round_dir.number)
        report.parts += len(round_dir.parts)
        pending = [part for part in round_dir.parts if not part.done]
        for part in pending:
            self._submit(part, report)
        awaited: list[OutputsAwaited] = []
        interval = self.settings.poll_s
        failures = 0
        while pending:
            for part in list(pending):
                try:
                    info = self._look(part)
                except OutputsAwaited as waiting:
                    awaited.append(waiting)
                    pending.remove(part)
                    continue
                except BatchAPIError as exc:
                    failures += 1
                    if failures >= MAX_POLL_FAILURES:
                        raise
                    log.warning("batch %s: poll failed (%s); trying again", part.batch_id, exc)
                    continue
                failures = 0
                if info is not None:
                    self._ingest(round_dir, part, info, report)
                    pending.remove(part)
            if pending:
                self.sleep(interval)
                interval = min(interval * 2, self.settings.poll_max_s)
        report.wall_s += time.monotonic() - start
        if awaited:
            inputs = [path for w in awaited for path in w.inputs]
            outputs = [path for w in awaited for path in w.outputs]
            raise OutputsAwaited(inputs, outputs, "; ".join(w.command_hint for w in awaited))

    def _submit(self, part: PartState, report: RoundReport) -> None:
        """Upload and create, each looked up first where a crash may have hidden its outcome."""
        if part.batch_id is not None:  # created before (by this or an earlier process)
            report.batch_ids.append(part.batch_id)
            return
        filename = f"openie4pp-{part.folder.name}-{part.name}-{part.nonce}.jsonl"
        if part.file_id is None:
            found = self.transport.find_upload(filename, part.size) if part.phase == "uploading" else None
            if found is None:
                part.save(phase="uploading", upload_started=time.time())
                found = self.transport.upload(part.input, filename)
                log.info("batch %s: uploaded %d lines (%d bytes) as %s", part.label, part.lines, part.size,
                         found)
            else:
                log.info("batch %s: found its upload %s from before a crash", part.label, found)
            part.save(phase="uploaded", file_id=found)
        assert part.file_id is not None
        metadata = {"openie4pp_part": part.sha256, "openie4pp_nonce": part.nonce,
                    "openie4pp_name": part.label}
        info: BatchInfo | None = None
        if part.phase == "creating":
            since = (part.create_started or 0.0) - FIND_SLACK_S
            info = self.transport.find_batch(part.file_id, metadata, not_before=since)
            if info is not None:
                log.info("batch %s: found its batch %s from before a crash", part.label, info.id)
        if info is None:
            part.save(phase="creating", create_started=time.time())
            info = self.transport.create(part.file_id, completion_window=self.settings.completion_window,
                                         metadata=metadata)
            self._stats.lines_sent += part.lines
            report.stats.lines_sent += part.lines
            log.info("batch %s: batch %s created (%d lines)", part.label, info.id, part.lines)
        part.save(phase="created", batch_id=info.id, status=info.status)
        report.batch_ids.append(info.id)

    def _look(self, part: PartState) -> BatchInfo | None:
        """Poll the part's batch; once it has ended, download its files and return its info."""
        if part.phase == "downloaded":
            return BatchInfo(id=part.batch_id or "", status=part.status or "completed",
                             output_file_id=part.output_file_id, error_file_id=part.error_file_id,
                             request_counts=part.request_counts, errors=part.errors)
        assert part.batch_id is not None
        info = self.transport.retrieve(part.batch_id)
        if info.status != part.status:
            counts = info.request_counts
            log.info("batch %s: %s (%d/%d done, %d failed)", info.id, info.status, counts.get("completed", 0),
                     counts.get("total", part.lines), counts.get("failed", 0))
            part.save(status=info.status)
        if not info.terminal:
            return None
        for file_id, dest in ((info.output_file_id, part.output), (info.error_file_id, part.error_file)):
            if file_id:
                self.transport.download(file_id, dest)
        part.save(phase="downloaded", status=info.status, output_file_id=info.output_file_id,
                  error_file_id=info.error_file_id, request_counts=info.request_counts, errors=info.errors)
        return info

    def _ingest(self, round_dir: RoundDir, part: PartState, info: BatchInfo, report: RoundReport) -> None:
        """Store the answers, count an attempt for each failed or missing line, then mark the part done."""
        sent = part.sent()
        parsed = read_results([part.output, part.error_file], sent, model=round_dir.model,
                              endpoint=self.transport.name)
        stats = BatchStats(batches=1, expired=int(info.status == "expired"),
                           cancelled=int(info.status == "cancelled"), failed=int(info.status == "failed"))
        for result in parsed.ok():
            assert result.response is not None
            self.cache.store(result.custom_id, result.response, sent[result.custom_id].purpose)
            self.fresh.add(result.custom_id)
            stats.lines_ok += 1
            stats.prompt_tokens += result.response.prompt_tokens
            stats.completion_tokens += result.response.completion_tokens
        failed: dict[str, str] = {}
        unanswered = 0
        whole = "; ".join(info.errors[:3]) or "no reason given"
        for key in sent:
            line = parsed.results.get(key)
            if line is not None and line.response is not None:
                continue
            if line is not None and line.unanswered:
                unanswered += 1
            elif info.status == "failed":
                failed[key] = f"batch {info.id} failed: {whole}"
                stats.lines_failed += 1
            elif line is not None:
                failed[key] = line.error or "failed"
                stats.lines_failed += 1
            elif info.status == "completed":
                failed[key] = f"missing from the output of batch {info.id}"
                stats.lines_missing += 1
            else:
                unanswered += 1  # expired or cancelled before it ran
        stats.resubmitted = unanswered
        for key, detail in failed.items():
            if self._attempts.add(key, detail):
                report.given_up.append(key)
        part.write_result({"batch_id": info.id, "status": info.status, "ok": stats.lines_ok, "failed": failed,
                           "missing": stats.lines_missing, "unanswered": unanswered,
                           "malformed": parsed.malformed, "prompt_tokens": stats.prompt_tokens,
                           "completion_tokens": stats.completion_tokens})
        self._stats.add(stats)
        report.stats.add(stats)
        if info.status == "failed":
            log.warning("batch %s (%s) failed as a whole: %s", info.id, part.label, whole)
            self.failures.append(f"batch {info.id}: {whole}")
        log.info("batch %s (%s) %s: %d ok, %d failed, %d missing, %d to resubmit, %d malformed lines",
                 info.id, part.label, info.status, stats.lines_ok, stats.lines_failed, stats.lines_missing,
                 unanswered, parsed.malformed)
