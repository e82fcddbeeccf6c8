"""What an annotation folder's report shows, read from the folder itself (typed, no HTML here).

Counts come from the files on disk (the shards and ``rejected.jsonl``), not from the last run's
counters, so a folder built by several resumed runs, or merged, is reported as it is; what only a
run can know (requests, tokens, cost, latency) comes from ``stats.json``, the last run's.

The sample of records is a deterministic spread, not the first lines: per language, the records
whose id hashes lowest (a reservoir by rank, constant memory), so a report of a million-record
folder reads every line once and keeps only what it shows. The counts read each line as plain JSON
(the writer validated it; ``openie4pp validate`` checks every line again) and only the sample is
parsed into records, which is what makes a report of 100,000 records take seconds.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openie4pp.errors import UsageError
from openie4pp.jsonl import iter_jsonl_lines, parse_record
from openie4pp.rejection_model import Rejection, is_candidate_field
from openie4pp.rejections import is_final_rejection, rejection_lang
from openie4pp.report.spans import Piece, ShownElement, elements, pieces, text_direction
from openie4pp.schema import Record
from openie4pp.shard_layout import shard_files

ANNOTATION_STAGES = frozenset({"stage1", "stage2"})
"""Rejections of a sentence that was annotated; the others (``input``, ``convert``...) are lines that
never became a sentence to ask about."""


@dataclass(frozen=True)
class SourceSentence:
    """In project mode, the English sentence a record was translated from, and its known triples."""

    text: str
    triples: tuple[tuple[str, ...], ...] = ()


@dataclass
class LanguageRow:
    """One language: sentences that became a record, and sentence-level rejections per reason."""

    lang: str
    records: int = 0
    extractions: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def asked(self) -> int:
        return self.records + sum(self.rejected.values())

    @property
    def acceptance(self) -> float | None:
        return self.records / self.asked if self.asked else None


@dataclass(frozen=True)
class ReasonRow:
    stage: str
    reason: str
    sentences: int
    """Sentence-level lines (the sentence ended so) and input lines."""
    candidates: int
    """Lines about one candidate triple of a sentence that may still have been accepted."""


@dataclass(frozen=True)
class CanaryRow:
    lang: str
    benchmark: str
    sentences: int
    accepted: int
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True)
class ShownExtraction:
    pieces: list[Piece]
    elements: list[ShownElement]
    confidence: float


@dataclass(frozen=True)
class ShownRecord:
    id: str
    lang: str
    direction: str
    text: str
    extractions: list[ShownExtraction]
    verdict: str
    mode: str
    source: SourceSentence | None = None


@dataclass(frozen=True)
class ShownRejection:
    sentence_id: str
    lang: str
    stage: str
    reason: str
    detail: str
    input: str
    location: str
    candidate: bool


@dataclass
class AnnotationReport:
    """Everything the annotation report shows."""

    folder: Path
    manifest: dict[str, Any]
    stats: dict[str, Any]
    languages: list[LanguageRow]
    input_rejections: int
    reasons: list[ReasonRow]
    canaries: list[CanaryRow]
    records: list[ShownRecord]
    rejections: list[ShownRejection]
    total_records: int
    total_rejection_lines: int
    unreadable_lines: int = 0
    sources_note: str = ""

    @property
    def pipeline(self) -> dict[str, Any]:
        """The annotation settings the manifest recorded (``build_config.pipeline``)."""
        return dict((self.manifest.get("build_config") or {}).get("pipeline") or {})

    @property
    def mode(self) -> str:
        return str(self.pipeline.get("mode") or "extract")

    @property
    def constraint(self) -> str:
        return str(self.pipeline.get("constrain") or "")

    @property
    def model(self) -> str:
        backend = (self.manifest.get("build_config") or {}).get("backend") or {}
        return str(backend.get("model") or "")

    @property
    def complete(self) -> bool:
        """Finished: a manifest that does not say otherwise (manifests older than the ``complete``
        key were only written by finished runs, as ``validate`` and ``push`` read them)."""
        return bool(self.manifest) and self.manifest.get("complete", True) is not False

    @property
    def unknown_language_rejections(self) -> int:
        """Sentence-level rejections whose language is unknown (lines written before schema 1.2,
        with ids that do not say their language)."""
        return sum(sum(row.rejected.values()) for row in self.languages if row.lang == "?")


def _rank(identifier: str) -> bytes:
    return hashlib.sha1(identifier.encode("utf-8", "surrogatepass")).digest()


def read_annotation_folder(
    folder: str | Path,
    *,
    sample: int = 200,
    rejection_sample: int = 200,
    sources: Mapping[str, SourceSentence] | None = None,
    sources_note: str = "",
) -> AnnotationReport:
    """Read ``folder`` (a shard folder ``annotate`` wrote) into an :class:`AnnotationReport`.

    ``sample``: how many accepted records to show, spread over the languages; ``sources``: for
    project mode, the English source of each input id (the caller reads the input file)."""
    root = Path(folder)
    manifest = _json_file(root / "manifest.json")
    stats = _json_file(root / "stats.json")
    targets = list(((manifest.get("build_config") or {}).get("pipeline") or {}).get("target_langs") or [])
    reasons: Counter[tuple[str, str, bool]] = Counter()
    shown_rejections: list[tuple[bytes, ShownRejection]] = []
    rows: dict[str, LanguageRow] = {}
    input_rejections = total_lines = unreadable = 0
    final: dict[str, tuple[str, str]] = {}
    """Sentence id -> (language, reason) of the line that finished it (one per id)."""
    rejected_path = root / "rejected.jsonl"
    for _, raw in iter_jsonl_lines(rejected_path) if rejected_path.is_file() else ():
        total_lines += 1
        try:
            rejection = Rejection.model_validate_json(raw)
        except ValueError:
            unreadable += 1
            continue
        candidate = is_candidate_field(rejection.field)
        reasons[(rejection.stage, rejection.reason.value, candidate)] += 1
        lang = rejection_lang(rejection, targets)
        if rejection.stage not in ANNOTATION_STAGES:  # an input line, never a sentence asked
            input_rejections += 1
        if is_final_rejection(rejection):  # the rule that says which line finishes an id
            final[rejection.sentence_id or ""] = (lang, rejection.reason.value)
        shown = ShownRejection(rejection.sentence_id or "", lang, rejection.stage, rejection.reason.value,
                               rejection.detail, rejection.input, rejection.location(), candidate)
        kept = (_invert(_rank(f"{rejection.sentence_id}\x00{rejection.field}\x00{total_lines}")), shown)
        if len(shown_rejections) < rejection_sample:
            heapq.heappush(shown_rejections, kept)
        elif rejection_sample:
            heapq.heappushpop(shown_rejections, kept)
    per_lang_keep: dict[str, list[tuple[bytes, int, Path, int, bytes]]] = {}
    seen = 0
    for file in [f for files in shard_files(root).values() for f in files]:
        for line_no, raw in iter_jsonl_lines(file):
            try:  # plain JSON for the counts (the writer validated every line); pydantic for the sample
                data = json.loads(raw)
                sentence, n = data["sentence"], len(data["extractions"])
                sid, lang = str(sentence["id"]), str(sentence["lang"])
            except (ValueError, KeyError, TypeError):
                unreadable += 1
                continue
            seen += 1
            final.pop(sid, None)  # an id that became a record (a retried rejection) is accepted
            row = rows.setdefault(lang, LanguageRow(lang))
            row.records += 1
            row.extractions += n
            heap = per_lang_keep.setdefault(lang, [])
            entry = (_invert(_rank(sid)), seen, file, line_no, raw)
            if len(heap) < sample:
                heapq.heappush(heap, entry)
            elif sample:
                heapq.heappushpop(heap, entry)  # keeps the ``sample`` lowest ranks (inverted: a max-heap)
    for lang, reason in final.values():
        rows.setdefault(lang, LanguageRow(lang)).rejected[reason] += 1
    records = []
    for lang in sorted(per_lang_keep):
        for _, _, file, line_no, raw in sorted(per_lang_keep[lang], reverse=True):
            item = parse_record(raw, file, line_no)
            if isinstance(item, Record):
                records.append(_shown(item, sources or {}))
            else:  # JSON, but not a record: not one of the language's records after all
                unreadable += 1
                seen -= 1
                rows[lang].records -= 1
                rows[lang].extractions -= len(json.loads(raw)["extractions"])
    return AnnotationReport(
        folder=root,
        manifest=manifest,
        stats=stats,
        languages=[rows[lang] for lang in sorted(rows)],
        input_rejections=input_rejections,
        reasons=_reason_rows(reasons),
        canaries=_canaries(manifest, stats),
        records=_spread(records, sample),
        rejections=[kept[1] for kept in sorted(shown_rejections, reverse=True)],
        total_records=seen,
        total_rejection_lines=total_lines,
        unreadable_lines=unreadable,
        sources_note=sources_note,
    )


def _invert(rank: bytes) -> bytes:
    """A rank whose heap order is reversed: ``heapq`` keeps the smallest, the sample wants the
    lowest ranks, so the heap holds inverted ranks and drops the highest original rank first."""
    return bytes(255 - b for b in rank)


def _spread(records: list[ShownRecord], limit: int) -> list[ShownRecord]:
    """At most ``limit`` records, taken round-robin over the languages (each language's own order
    kept), so a language with few records is not crowded out by one with many."""
    by_lang: dict[str, list[ShownRecord]] = {}
    for record in records:
        by_lang.setdefault(record.lang, []).append(record)
    out: list[ShownRecord] = []
    depth = 0
    while len(out) < limit and any(depth < len(v) for v in by_lang.values()):
        for lang in sorted(by_lang):
            if depth < len(by_lang[lang]) and len(out) < limit:
                out.append(by_lang[lang][depth])
        depth += 1
    return sorted(out, key=lambda r: (r.lang, _rank(r.id)))


def _shown(record: Record, sources: Mapping[str, SourceSentence]) -> ShownRecord:
    provenance = record.provenance
    source = None
    if provenance.mode == "project":
        head, _, _ = record.sentence.id.rpartition(".")
        source = sources.get(head)
    return ShownRecord(
        id=record.sentence.id,
        lang=record.lang,
        direction=text_direction(record.lang),
        text=record.sentence.text,
        extractions=[ShownExtraction(pieces(record.sentence, e), elements(e), e.confidence)
                     for e in record.extractions],
        verdict=provenance.verdict or "",
        mode=provenance.mode or "",
        source=source,
    )


def _reason_rows(reasons: Counter[tuple[str, str, bool]]) -> list[ReasonRow]:
    keys = sorted({(stage, reason) for stage, reason, _ in reasons})
    rows = [ReasonRow(stage, reason, reasons[(stage, reason, False)], reasons[(stage, reason, True)])
            for stage, reason in keys]
    return sorted(rows, key=lambda r: (-(r.sentences + r.candidates), r.stage, r.reason))


def _canaries(manifest: dict[str, Any], stats: dict[str, Any]) -> list[CanaryRow]:
    scores = (manifest.get("quality") or {}).get("canaries") or stats.get("canaries") or {}
    return [CanaryRow(lang, str(s.get("benchmark", "")), int(s.get("sentences", 0)),
                      int(s.get("accepted", 0)), s.get("precision"), s.get("recall"), s.get("f1"))
            for lang, s in sorted(scores.items())]


def _json_file(path: Path) -> dict[str, Any]:
    """A JSON object file, or ``{}`` when absent (an unfinished folder has no manifest yet)."""
    return read_json_object(path)


def read_json_object(path: Path) -> dict[str, Any]:
    """``path``'s JSON object; ``{}`` when absent; a torn or foreign file is a usage error naming it."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as error:
        raise UsageError(f"{path}: not a readable JSON file ({error})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: not a JSON object")
    return value
