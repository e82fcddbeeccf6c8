"""Where training records come from: benchmark names, shard folders, JSONL files, checked and counted.

:func:`load_records` streams the records of each source; a line that is not a record (malformed
JSON, a schema error, a converter's rejection, a tag that names no language) is counted per source
with its reason and location in :class:`LoadStats`, never silently dropped: the recipe prints those
counts, writes them into ``metrics.json`` and stops before training when a source's rejected share
exceeds ``data.max_rejected_fraction``. Language tags are made canonical here, where they enter
(``EN`` and ``en`` must not become two experts).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from openie4pp import benchmarks
from openie4pp.errors import RunProblems, UsageError
from openie4pp.schema import Record, canonical_lang

from .validation_errors import describe


def check_benchmark_name(name: str) -> str:
    """``name`` if :mod:`openie4pp.benchmarks` knows it, else a ``ValueError`` listing the known ones."""
    try:
        return benchmarks.get(name).name
    except KeyError as error:
        raise ValueError(error.args[0]) from None


class SourceSpec(BaseModel):
    """The mapping form of a data source, checked when the config is read (before anything loads)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: str | None = None
    benchmark: str | None = None
    format: str | None = None
    lang: str | None = None
    limit: int | None = Field(default=None, ge=1)
    langs: list[str] | None = None

    @field_validator("path", "benchmark", "format", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value

    @field_validator("lang")
    @classmethod
    def _lang(cls, value: str | None) -> str | None:
        return None if value is None else canonical_lang(value)

    @field_validator("langs")
    @classmethod
    def _langs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else list(dict.fromkeys(canonical_lang(code) for code in value))

    @field_validator("benchmark")
    @classmethod
    def _benchmark(cls, value: str | None) -> str | None:
        if value is not None:
            check_benchmark_name(value)
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str | None) -> str | None:
        from openie4pp.formats.registry import FORMATS

        if value is not None and value not in FORMATS:
            raise ValueError(f"unknown format {value!r} (known: {', '.join(sorted(FORMATS))})")
        return value

    @model_validator(mode="after")
    def _one_place(self) -> SourceSpec:
        if (self.path is None) == (self.benchmark is None):
            raise ValueError("a data source needs exactly one of 'path' or 'benchmark'")
        return self


def check_source_spec(spec: Any) -> str | dict[str, Any]:
    """A source as written in the config (a name, a path, or a mapping), checked and normalised:
    a mapping's language tags become canonical. ``ValueError`` with a one-line reason otherwise."""
    if isinstance(spec, Path):
        return str(spec)
    if isinstance(spec, str):
        if not spec:
            raise ValueError("an empty data source")
        return spec
    if not isinstance(spec, Mapping):
        raise ValueError(f"a data source is a name, a path or a mapping, not {spec!r:.60}")
    if unknown := set(spec) - set(SourceSpec.model_fields):
        allowed = ", ".join(SourceSpec.model_fields)
        raise ValueError(f"unknown data source keys {sorted(unknown)} (allowed: {allowed})")
    try:
        return SourceSpec.model_validate(dict(spec)).model_dump(exclude_none=True)
    except ValidationError as error:
        message = describe(error)
        if message.startswith(": "):  # a check of the whole source (path or benchmark), no key
            raise ValueError(message[2:]) from None
        raise ValueError("." + message) from None  # .limit: ..., the key inside the source


@dataclass(frozen=True)
class DataSource:
    """One data source of training records (not :class:`openie4pp.schema.Source`, the kind of a
    record's provenance). ``format`` is ``None`` for OpenIE4++ records (shard folder or JSONL file),
    else a converter name of :mod:`openie4pp.formats.registry`. ``limit`` keeps the first records
    (for smoke runs and tests); ``langs`` keeps only those languages (canonical tags). ``name`` is
    how reports and ``metrics.json`` call it: the benchmark name or the path as given."""

    path: Path
    format: str | None = None
    lang: str | None = None
    limit: int | None = None
    langs: tuple[str, ...] = ()
    name: str = ""

    @classmethod
    def parse(cls, spec: str | Path | Mapping[str, Any] | DataSource) -> DataSource:
        """``"carb-dev"`` (a benchmark name), ``"path/to/shards"``, or a mapping with ``path`` or
        ``benchmark`` plus optional ``format``, ``lang``, ``limit``, ``langs``; a benchmark's gold
        file and format come from :mod:`openie4pp.benchmarks`. A bad spec is a ``UsageError``."""
        if isinstance(spec, DataSource):
            return spec
        try:
            checked = check_source_spec(spec)
        except ValueError as error:
            raise UsageError(f"data source {spec!r:.80}: {str(error).removeprefix('.')}") from None
        if isinstance(checked, str):
            # as the source reader decides: a path that exists wins over a benchmark of that name
            is_benchmark = checked in benchmarks.BENCHMARKS and not Path(checked).expanduser().exists()
            checked = {"benchmark": checked} if is_benchmark else {"path": checked}
        fmt = checked.get("format")
        if "benchmark" in checked:
            name = checked["benchmark"]
            benchmark = benchmarks.get(name)
            fmt, path = benchmark.format, benchmark.gold_path()
        else:
            name = checked["path"]
            path = Path(name).expanduser()
        langs = tuple(checked.get("langs") or ())
        return cls(path, fmt, checked.get("lang"), checked.get("limit"), langs, name)

    @property
    def label(self) -> str:
        return self.name or str(self.path)

    def stamp(self) -> str:
        """What the cache fingerprint sees of this source: its settings and each file's size and mtime."""
        files = sorted(self.path.rglob("*.jsonl")) if self.path.is_dir() else [self.path]
        stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        return json.dumps([self.format, self.lang, self.limit, list(self.langs), stats])


FIRST_REJECTIONS = 3
"""How many rejected lines per source are named (file:line:field) in reports."""


@dataclass
class LoadStats:
    """What loading saw: records read, skipped lines/rejections (per source, with reasons and the
    first locations), examples made, label misfits. Saved beside a cached dataset and read back
    with it, so a run served from the cache reports (and is checked against) the same rejections."""

    records: int = 0
    rejected: int = 0
    examples: int = 0
    no_examples: int = 0
    misfits: Counter[str] = field(default_factory=Counter)
    langs: Counter[str] = field(default_factory=Counter)
    read_by_source: Counter[str] = field(default_factory=Counter)
    rejected_by_source: dict[str, Counter[str]] = field(default_factory=dict)
    first_rejections: dict[str, list[str]] = field(default_factory=dict)
    cached: bool = False

    def reject(self, source: str, reason: str, where: str) -> None:
        self.rejected += 1
        self.rejected_by_source.setdefault(source, Counter())[reason] += 1
        first = self.first_rejections.setdefault(source, [])
        if len(first) < FIRST_REJECTIONS:
            first.append(where)

    def _describe(self, source: str) -> tuple[int, int, str]:
        reasons = self.rejected_by_source.get(source, Counter())
        count, read = sum(reasons.values()), self.read_by_source[source]
        listed = ", ".join(f"{reason} {n}" for reason, n in sorted(reasons.items()))
        first = ", ".join(self.first_rejections.get(source, []))
        return count, read, f"{count} of {read} lines rejected ({listed}); first: {first}"

    def rejection_warnings(self) -> list[str]:
        """One line per source that had rejected lines."""
        return [f"{source}: {self._describe(source)[2]}" for source in self.rejected_by_source]

    def check_rejections(self, max_fraction: float) -> None:
        """``RunProblems`` (exit 1: the data is the problem) for sources whose rejected share exceeds
        ``max_fraction`` (``data.max_rejected_fraction``): a run must not train on 3 lines of 20."""
        over = []
        for source in self.rejected_by_source:
            count, read, text = self._describe(source)
            if read and count / read > max_fraction:
                share = f"{count / read:.0%} > data.max_rejected_fraction={max_fraction}"
                over.append(f"{source}: {text} ({share})")
        if over:
            raise RunProblems(
                "too many rejected training lines, nothing was trained: " + " | ".join(over)
                + "; fix those lines, or raise data.max_rejected_fraction to train on the rest"
            )

    def summary(self) -> dict[str, Any]:
        """The ``data`` part of ``metrics.json``: counts, and per source the lines read and rejected."""
        return {
            "records": self.records,
            "examples": self.examples,
            "examples_per_lang": dict(sorted(self.langs.items())),
            "misfits": dict(self.misfits),
            "no_examples": self.no_examples,
            "read": dict(self.read_by_source),
            "rejected": {source: dict(reasons) for source, reasons in self.rejected_by_source.items()},
        }

    def to_json(self) -> str:
        # not dataclasses.asdict: it rebuilds a Counter from (key, value) pairs, counting the pairs
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self) if f.name != "cached"})

    def restore(self, text: str) -> None:
        """Take over the counts saved by :meth:`to_json` (a cached dataset's)."""
        saved = json.loads(text)
        for key, value in saved.items():
            if key in ("misfits", "langs", "read_by_source"):
                value = Counter(value)
            elif key == "rejected_by_source":
                value = {source: Counter(reasons) for source, reasons in value.items()}
            setattr(self, key, value)
        self.cached = True


def load_records(
    sources: Iterable[str | Path | Mapping[str, Any] | DataSource], stats: LoadStats | None = None
) -> Iterator[Record]:
    """Stream the records of every source in order, with canonical language tags; rejected lines
    are counted in ``stats`` (per source, with reasons and locations) and skipped."""
    stats = stats if stats is not None else LoadStats()
    for spec in sources:
        source = DataSource.parse(spec)
        if not source.path.exists():
            raise FileNotFoundError(f"{source.path}: data source not found")
        kept, label = 0, source.label
        for item in _items(source):
            if source.limit is not None and kept >= source.limit:
                break
            stats.read_by_source[label] += 1
            if isinstance(item, tuple):
                stats.reject(label, *item)
                continue
            try:
                item = _with_canonical_lang(item)
            except ValueError:
                stats.reject(label, "unknown_language", f"{source.path} (sentence {item.sentence.id})")
                continue
            if source.langs and item.lang not in source.langs:
                continue
            kept += 1
            stats.records += 1
            yield item


def _items(source: DataSource) -> Iterator[Record | tuple[str, str]]:
    """The source's records, and for each line that is none ``(reason, location)``.

    OpenIE4++ records (a shard folder or a JSONL file) come through :func:`openie4pp.sources.read_source`,
    the project's one reader of inputs. Gold files and files in another format go through their
    converter, whose refusals are counted here as rejected lines (``read_source`` leaves a benchmark's
    to ``openie4pp convert``): a training run reports every line it did not train on."""
    from openie4pp.formats.registry import convert
    from openie4pp.sources import RecordRow, SourceProblem, read_source

    if source.format is not None:
        for item in convert(source.format, source.path, source.lang):
            yield item if isinstance(item, Record) else (item.reason.value, item.location())
        return
    for row in read_source(source.path, "records", option="data source"):
        if isinstance(row, RecordRow):
            yield row.record
        elif isinstance(row, SourceProblem):
            where = f"{row.where}:{row.field}" if row.field else str(row.where)
            yield row.reason.value, where


def _with_canonical_lang(record: Record) -> Record:
    """``EN`` and ``en`` must not become two languages (two experts, two ``lang_ids``)."""
    lang = canonical_lang(record.lang)
    if lang == record.lang:
        return record
    return record.model_copy(update={"sentence": record.sentence.model_copy(update={"lang": lang})})
