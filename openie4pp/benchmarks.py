"""The one registry of benchmarks: every command that names one (``convert``, ``eval``, ``train``,
``extract``, the annotator's canaries, the quickstart) looks it up here.

A benchmark is licensed separately and lives below :func:`openie4pp.paths.benchmarks_dir`; this
module says, for each name, which file holds its gold, in which format the converters read it,
which scorer grades predictions against it, its language and its *role*:

* ``dev``: gold that training may use (OIE2016 dev, CaRB dev, whose sentences are the same);
* ``test``: held out, scored in reports (CaRB test, Re-OIE2016, BenchIE);
* ``canary``: the benchmark whose last sentences the annotator plants among its inputs to score
  itself in that language (one per language).

Why one table: before it there were four (the scorer's, the trainer's, the quickstart's and the
CLI's choices), and a name added to one was silently unknown to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["dev", "test", "canary"]
Scorer = Literal["carb", "re-oie2016", "benchie"]


@dataclass(frozen=True)
class License:
    """A benchmark's licence as the Hugging Face Hub names it (``license:`` of a dataset card).

    ``id`` is one of the Hub's licence ids (:data:`openie4pp.dataset_card.HUB_LICENSES`); a licence
    the Hub does not list is ``other`` with a ``name`` (lowercase, ``-``) and a ``link`` to its text.
    ``note`` is what a user of converted data must know beyond the id."""

    id: str
    name: str | None = None
    link: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, str]:
        """The licence as a manifest's licence entry holds it (``license``, ``license_name``...)."""
        data = {"license": self.id, "license_name": self.name, "license_link": self.link, "note": self.note}
        return {key: value for key, value in data.items() if value}


MIT = License("mit")
"""CaRB (DAIR, IIT Delhi), OIE2016 and Re-OIE2016 (the copies in ``carb/``, ``oie2016/``,
``re-oie2016/`` carry an MIT ``LICENSE``)."""

BENCHIE_LICENSE = License(
    "other", name="benchie-noncommercial-research", link="https://github.com/gkiril/benchie/blob/HEAD/LICENSE.txt",
    note="NEC Laboratories Europe's BenchIE licence: academic or non-profit noncommercial research use "
    "only, personal and non-transferable, without the right to sublicense; do not redistribute (or "
    "publish) data converted from BenchIE without the licensor's permission.",
)
"""BenchIE's ``LICENSE.txt``: not one the Hub lists, hence ``other`` with its name and link."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its gold file, how to read it, how to score against it."""

    name: str
    format: str
    """The converter that reads :attr:`gold` (a name of :mod:`openie4pp.formats.registry`)."""
    gold: str
    """Relative to the benchmarks folder."""
    lang: str = "en"
    scorer: Scorer | None = None
    """The scorer ``eval`` uses; ``None``: training data only (OIE2016 dev has no scorer of its own)."""
    binary_gold: str | None = None
    """The binary (arg0, relation, arg1) gold ``eval --binary`` scores against, where one exists."""
    roles: tuple[Role, ...] = ("test",)
    pretokenized: bool = False
    """Its sentences are space-separated tokens (CaRB, Re-OIE2016), not running text."""
    parallel: str | None = None
    """The English benchmark whose sentences these translate, sentence for sentence (project-mode
    canaries pair the two)."""
    license: License = MIT
    """What ``convert`` writes into the dataset card of the benchmark's shards."""

    def gold_path(self, binary: bool = False) -> Path:
        """The gold file (the binary one when asked for and there is one); it may not exist."""
        from openie4pp.paths import benchmarks_dir

        relative = self.binary_gold if binary and self.binary_gold else self.gold
        return benchmarks_dir() / relative

    @property
    def scorable(self) -> bool:
        return self.scorer is not None


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("oie2016-dev", "oie2016-conll", "oie2016/dev.oie.conll.txt", roles=("dev",),
                  pretokenized=True),
        Benchmark("carb-dev", "carb", "carb/gold_dev.tsv", scorer="carb", roles=("dev", "canary"),
                  pretokenized=True),
        Benchmark("carb-test", "carb", "carb/gold_test.tsv", scorer="carb", pretokenized=True),
        Benchmark("re-oie2016-en", "re-oie2016", "re-oie2016/Re-OIE2016.json", scorer="re-oie2016",
                  binary_gold="re-oie2016/Re-OIE2016-Binary.json", pretokenized=True),
        Benchmark("re-oie2016-es", "re-oie2016", "re-oie2016/Re-OIE2016-Spanish.json", "es",
                  scorer="re-oie2016", binary_gold="re-oie2016/Re-OIE2016-Spanish-Binary.json",
                  roles=("test", "canary"), pretokenized=True, parallel="re-oie2016-en"),
        Benchmark("re-oie2016-pt", "re-oie2016", "re-oie2016/Re-OIE2016-Portuguese.json", "pt",
                  scorer="re-oie2016", binary_gold="re-oie2016/Re-OIE2016-Portuguese-Binary.json",
                  roles=("test", "canary"), pretokenized=True, parallel="re-oie2016-en"),
        Benchmark("benchie-en", "benchie", "benchie/benchie_gold_annotations_en.txt", scorer="benchie",
                  license=BENCHIE_LICENSE),
        Benchmark("benchie-zh", "benchie", "benchie/benchie_gold_annotations_zh.txt", "zh",
                  scorer="benchie", roles=("test", "canary"), parallel="benchie-en",
                  license=BENCHIE_LICENSE),
        Benchmark("benchie-de", "benchie", "benchie/benchie_gold_annotations_de.txt", "de",
                  scorer="benchie", roles=("test", "canary"), parallel="benchie-en",
                  license=BENCHIE_LICENSE),
    )
}

REPORTED = ("carb-dev", "carb-test", "re-oie2016-es", "re-oie2016-pt", "benchie-zh", "benchie-de")
"""What the quickstart extracts and scores: every language of the project with a gold."""


def get(name: str) -> Benchmark:
    """The benchmark called ``name``; a ``KeyError`` naming the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})") from None


def names(role: Role | None = None, *, scorable: bool = False) -> list[str]:
    """Benchmark names in registry order, those with ``role`` (and a scorer, if asked) only."""
    return [b.name for b in BENCHMARKS.values()
            if (role is None or role in b.roles) and (b.scorable or not scorable)]


def for_file(path: Path) -> Benchmark | None:
    """The benchmark whose gold (or binary gold) ``path`` is: the same file below the benchmarks
    folder, else a path ending in the gold's own ``<folder>/<file>`` (a copy elsewhere); None: no
    benchmark of the registry (a user's own file, whose licence ``convert --license`` gives)."""
    from openie4pp.errors import UsageError
    from openie4pp.paths import benchmarks_dir

    try:
        root: Path | None = benchmarks_dir().resolve()
    except UsageError:  # no benchmarks folder found: match by the gold's own folder and name only
        root = None
    resolved = path.resolve()
    for bench in BENCHMARKS.values():
        for relative in filter(None, (bench.gold, bench.binary_gold)):
            same = root is not None and resolved == root / relative
            if same or resolved.as_posix().endswith("/" + relative):
                return bench
    return None


def canary_for(lang: str) -> Benchmark | None:
    """The benchmark the annotator's canaries in ``lang`` come from (None: that language has none)."""
    return next((b for b in BENCHMARKS.values() if "canary" in b.roles and b.lang == lang), None)
