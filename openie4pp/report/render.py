"""Render an annotation or model folder's report as one self-contained HTML file.

Jinja2 templates (``templates/``, autoescaped: every sentence, detail and input is text, never
markup) over the typed reports of :mod:`.annotation` and :mod:`.training`; charts are inline SVG
(:mod:`.charts`); the page's only script is the filter of its two sample tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openie4pp.atomic import write_text_atomic
from openie4pp.errors import UsageError
from openie4pp.report.annotation import AnnotationReport, SourceSentence, read_annotation_folder
from openie4pp.report.charts import acceptance_chart, line_chart, reasons_chart, scores_chart
from openie4pp.report.training import TrainingReport, is_model_folder, read_model_folder

REPORT_NAME = "report.html"


@dataclass(frozen=True)
class ReportResult:
    """What :func:`write_report` wrote."""

    kind: Literal["annotation", "model"]
    path: Path
    bytes: int
    records_shown: int = 0
    rejections_shown: int = 0


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("openie4pp.report", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=False)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openie4pp")
    except PackageNotFoundError:
        return "unknown"


def folder_kind(folder: Path) -> Literal["annotation", "model"]:
    """Which report a folder gets: shards (``manifest.json`` or ``<lang>/shard-*.jsonl``) or a model."""
    from openie4pp.shard_layout import shard_files

    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    if any((folder / name).is_file() for name in ("manifest.json", "rejected.jsonl", "stats.json")) \
            or shard_files(folder):
        return "annotation"  # an unfinished run may have rejected everything so far
    if is_model_folder(folder):
        return "model"
    raise UsageError(f"{folder}: neither an annotation folder (manifest.json, <lang>/shard-*.jsonl) nor a "
                     "model folder (metrics.json or log.jsonl, or stage*/ folders holding them)")


OWNED_NAMES = frozenset({"manifest.json", "README.md", "rejected.jsonl", "stats.json", "metrics.json",
                         "log.jsonl", "cache.sqlite", "quickstart.json"})
"""Files other commands own: a report never overwrites one."""


def check_target(target: Path) -> None:
    """Refuse, before any work, an ``--out`` that is a folder, whose parent is a file, or that would
    overwrite a file another command owns (a manifest, a card, a shard)."""
    if target.is_dir():
        raise UsageError(f"--out {target}: a folder; name the HTML file to write")
    if target.name in OWNED_NAMES or target.suffix in (".jsonl", ".json", ".safetensors"):
        raise UsageError(f"--out {target}: would overwrite a data file; name an .html file")
    parent = next((p for p in [target.parent, *target.parent.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"--out {target}: {parent} is a file, not a folder")


def render_annotation(report: AnnotationReport) -> str:
    rows = report.languages
    reasons = sorted({reason for row in rows for reason in row.rejected})
    chart_svgs = {
        "acceptance": acceptance_chart(
            [r.lang for r in rows], [r.records for r in rows],
            {reason: [r.rejected[reason] for r in rows] for reason in reasons}),
        "reasons": reasons_chart([f"{r.stage}: {r.reason}" for r in report.reasons],
                                        [r.sentences for r in report.reasons],
                                        [r.candidates for r in report.reasons]) if report.reasons else "",
        "canaries": scores_chart([c.lang for c in report.canaries], {
            "precision": [c.precision for c in report.canaries],
            "recall": [c.recall for c in report.canaries],
            "F1": [c.f1 for c in report.canaries]}) if report.canaries else "",
    }
    return _environment().get_template("annotation.html.j2").render(
        r=report, charts=chart_svgs, usage=_usage_rows(report.stats), version=_version(),
        title=f"OpenIE4++ annotation report: {report.folder.name}",
        constraint=report.constraint,
        record_langs=sorted({x.lang for x in report.records}),
        verdicts=sorted({x.verdict for x in report.records if x.verdict}),
        stages=sorted({x.stage for x in report.rejections}),
        reason_names=sorted({x.reason for x in report.rejections}),
        rejection_langs=sorted({x.lang for x in report.rejections}),
    )


def _usage_rows(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The usage table: what ``stats.json`` says the last run spent."""
    if not stats:
        return []
    tokens = stats.get("tokens") or {}
    latency = stats.get("latency_s") or {}

    def seconds(value: Any) -> str:
        return "–" if value is None else f"{float(value):.3f} s"

    rows = [
        ("requests sent", f"{stats.get('requests', 0):,}"),
        ("answered from the cache", f"{stats.get('cache_hits', 0):,}"),
        ("retries", f"{stats.get('retries', 0):,}"), ("re-asks", f"{stats.get('reasks', 0):,}"),
        ("failed requests", f"{stats.get('failed_requests', 0):,}"),
        ("prompt tokens", f"{tokens.get('prompt', 0):,}"),
        ("completion tokens", f"{tokens.get('completion', 0):,}"),
        ("cost", f"US$ {stats['cost_usd']:.4f}" if stats.get("cost_usd") is not None
         else "– (no prices given: --price-in, --price-out)"),
        ("latency p50", seconds(latency.get("p50"))), ("latency p95", seconds(latency.get("p95"))),
        ("elapsed", seconds(stats.get("elapsed_s"))),
    ]
    rows += [(f"requests: {purpose}", f"{n:,}") for purpose, n in sorted((stats.get("requests_by_purpose")
                                                                          or {}).items())]
    return rows


def render_training(report: TrainingReport) -> str:
    loss, lr, pr = {}, {}, {}
    for stage in report.stages:
        parts = {part: stage.series(part) for part in stage.parts}
        loss[stage.name] = line_chart(parts, "step", "loss", f"{stage.name}: training loss")
        if stage.lr[0]:
            lr[stage.name] = line_chart({"learning rate": stage.lr}, "step", "lr",
                                               f"{stage.name}: learning rate")
    evaluations = [e for stage in report.stages for e in stage.evaluations] + report.benchmarks
    for stage in report.stages:
        curves = {e.name: _sorted_curve(e.curve) for e in stage.evaluations if e.curve}
        if curves:
            pr[stage.name] = line_chart(curves, "recall", "precision", f"{stage.name}: dev PR curves",
                                               unit_square=True)
    for e in report.benchmarks:
        if e.curve:
            pr[e.name] = line_chart({e.name: _sorted_curve(e.curve)}, "recall", "precision",
                                           f"{e.name}  F1 {e.f1 or 0:.3f}", unit_square=True)
    return _environment().get_template("training.html.j2").render(
        r=report, charts={"loss": loss, "lr": lr, "pr": pr}, evaluations=evaluations, version=_version(),
        title=f"openie4pp model report: {report.folder.name}")


def _sorted_curve(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    ordered = sorted(points)
    return [p[0] for p in ordered], [p[1] for p in ordered]


def write_report(
    folder: str | Path,
    out: str | Path | None = None,
    *,
    sample: int = 200,
    sources: Mapping[str, SourceSentence] | None = None,
    sources_note: str = "",
    benchmarks: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportResult:
    """Write ``folder``'s report to ``out`` (default ``FOLDER/report.html``), atomically.

    ``sources`` (project mode: input id -> English source) and ``benchmarks`` (a model's held-out
    evaluations) are what the folder itself does not hold; the caller reads them."""
    root = Path(folder)
    kind = folder_kind(root)
    target = Path(out) if out is not None else root / REPORT_NAME
    check_target(target)
    if kind == "annotation":
        report = read_annotation_folder(root, sample=sample, rejection_sample=sample, sources=sources,
                                        sources_note=sources_note)
        html = render_annotation(report)
        shown = (len(report.records), len(report.rejections))
    else:
        html = render_training(read_model_folder(root, benchmarks))
        shown = (0, 0)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, html)
    except OSError as error:
        raise UsageError(f"--out {target}: cannot write it ({error.strerror or error})") from None
    return ReportResult(kind, target, len(html.encode("utf-8")), *shown)
