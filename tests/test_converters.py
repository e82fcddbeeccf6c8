"""Benchmark converters: exact counts, spans, round-trips and rejections.

The counts are literals computed independently from the raw files (awk/grep/json one-offs,
see each test); a converter change that drops or invents a sentence or tuple fails here.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from openie4pp.formats import benchie, carb, oie2016, reoie2016
from openie4pp.formats.registry import (
    CONVERTERS,
    FORMATS,
    ConversionStats,
    convert,
    get_converter,
)
from openie4pp.schema import Record, Rejection, RejectionReason, Source

REOIE_FILES = {
    # file: (lang, dataset, sentences, tuples in the file, empty tuples)
    "Re-OIE2016.json": ("en", "re-oie2016-en", 595, 1508, 2),
    "Re-OIE2016-Binary.json": ("en", "re-oie2016-binary-en", 595, 1508, 2),
    "Re-OIE2016-Spanish.json": ("es", "re-oie2016-es", 595, 1496, 0),
    "Re-OIE2016-Spanish-Binary.json": ("es", "re-oie2016-binary-es", 595, 1496, 0),
    "Re-OIE2016-Portuguese.json": ("pt", "re-oie2016-pt", 594, 1503, 2),
    "Re-OIE2016-Portuguese-Binary.json": ("pt", "re-oie2016-binary-pt", 594, 1503, 2),
}
ALL_INPUTS = [
    ("carb", "carb/gold_dev.tsv"),
    ("carb", "carb/gold_test.tsv"),
    *[("re-oie2016", f"re-oie2016/{name}") for name in REOIE_FILES],
    ("oie2016-conll", "oie2016/dev.oie.conll.txt"),
    ("oie2016-tab", "oie2016/OIE2016_dev.txt"),
    ("oie2016-tab", "oie2016/OIE2016_test.txt"),
    *[("benchie", f"benchie/benchie_gold_annotations_{lang}.txt") for lang in ("en", "zh", "de")],
]


@cache
def _converted(format_name: str, path: Path) -> tuple[list[Record], list[Rejection]]:
    items = list(convert(format_name, path))
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Rejection)]


def _stats(format_name: str, path: Path) -> ConversionStats:
    stats = ConversionStats()
    records, rejections = _converted(format_name, path)
    for record in records:
        stats.add(record)
    for rejection in rejections:
        stats.add(rejection)
    return stats


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- CaRB


@pytest.mark.parametrize(
    ("split", "tuples", "without_tuples"),
    [("dev", 2548, 3), ("test", 2715, 7)],  # awk 'END{print NR}'; test's last line has no newline
)
def test_carb_counts_and_order(bench: Path, split: str, tuples: int, without_tuples: int) -> None:
    records, rejections = _converted("carb", bench / f"carb/gold_{split}.tsv")
    assert rejections == []
    assert len(records) == 641
    assert sum(len(r.extractions) for r in records) == tuples
    assert sum(not r.extractions for r in records) == without_tuples
    listed = [line.strip() for line in (bench / f"carb/sentences_{split}.txt").read_text().splitlines()]
    assert [r.sentence.text for r in records] == listed  # the sentence list's order, not the gold file's
    assert [r.id for r in records[:2]] == [f"carb-{split}-00001", f"carb-{split}-00002"]
    assert records[-1].id == f"carb-{split}-00641"
    assert {(r.provenance.source, r.provenance.dataset, r.lang) for r in records} == {
        (Source.gold, f"carb-{split}", "en")
    }


def test_carb_tuples_follow_the_file(bench: Path) -> None:
    records, _ = _converted("carb", bench / "carb/gold_test.tsv")
    first = records[0].extractions  # "32.7 % of all households were made up of individuals and 15.7 % ..."
    assert first[0].predicate.text == "were made up of"
    assert first[0].predicate.span == (5, 9)
    assert [(a.role, a.text, a.span) for a in first[0].arguments] == [
        ("arg0", "32.7 % of all households", (0, 5)),
        ("arg1", "individuals", (9, 10)),
    ]
    assert first[1].arguments[0].span is None  # "15.7 % of all households" is not in the sentence
    extractions = [e for r in records for e in r.extractions]
    assert sum(e.predicate.text == "" for e in extractions) == 14  # awk -F'\t' '$2==""' gold_test.tsv
    # CaRB's context/location/time prefixes stay positional and verbatim, as CaRB scores them
    assert any(a.text == "L: in that country" and a.role == "arg3" for e in extractions for a in e.arguments)


def test_carb_without_sentence_list_uses_gold_order(bench: Path) -> None:
    records = [r for r in carb.read_carb_gold(bench / "carb/gold_test.tsv") if isinstance(r, Record)]
    assert len(records) == 634  # distinct sentences in gold_test.tsv
    assert all(r.extractions for r in records)


def test_carb_bad_rows_are_rejected_not_raised(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "gold_test.tsv",
        "A cat sat on the mat .\tsat on\tA cat\tthe mat\n"
        "no tab on this line\n"
        "\tsat\tA cat\n"
        "A dog barked .\t\t\n"
        "A dog barked .\tbarked\tA dog\t\tC: he said\n",
    )
    items = list(carb.convert(path))
    rejections = [i for i in items if isinstance(i, Rejection)]
    assert [(r.line, r.field, r.reason) for r in rejections] == [
        (2, "relation", RejectionReason.schema_invalid),
        (3, "sentence", RejectionReason.empty_sentence),
        (4, "relation", RejectionReason.schema_invalid),
    ]
    assert all(r.file == str(path) and r.stage == "convert" for r in rejections)
    records = [i for i in items if isinstance(i, Record)]
    assert [r.id for r in records] == ["carb-test-00001", "carb-test-00002"]
    dog = records[1].extractions[0]
    assert [(a.role, a.text, a.span) for a in dog.arguments] == [
        ("arg0", "A dog", (0, 2)),
        ("arg2", "C: he said", None),  # an empty arg1 is skipped but keeps its position
    ]


# --------------------------------------------------------------------------- Re-OIE2016


@pytest.mark.parametrize("name", list(REOIE_FILES))
def test_reoie2016_counts(bench: Path, name: str) -> None:
    lang, dataset, sentences, tuples, empty = REOIE_FILES[name]
    records, rejections = _converted("re-oie2016", bench / "re-oie2016" / name)
    assert len(records) == sentences
    assert sum(len(r.extractions) for r in records) == tuples - empty
    assert [r.reason for r in rejections] == [RejectionReason.schema_invalid] * empty  # the all-empty tuples
    assert all(r.field and r.field.endswith(".pred") and r.sentence_id for r in rejections)
    assert {r.lang for r in records} == {lang}
    assert {r.provenance.dataset for r in records} == {dataset}
    assert records[0].id == f"{dataset}-00001"


@pytest.mark.parametrize(
    ("name", "implicit", "index_disagrees", "space_mapped"),
    [
        ("Re-OIE2016.json", 155, 1, 0),  # 86 "<be>" [-1,-1] + 69 "<be> x" [-2,a,b]; "1996" vs "1966"
        ("Re-OIE2016-Spanish.json", 86, 0, 0),
        ("Re-OIE2016-Portuguese.json", 86, 0, 2),  # a double space counted as a token
    ],
)
def test_reoie2016_spans_reproduce_the_phrases(
    bench: Path, name: str, implicit: int, index_disagrees: int, space_mapped: int
) -> None:
    raw = json.loads((bench / "re-oie2016" / name).read_text(encoding="utf-8"))
    records, _ = _converted("re-oie2016", bench / "re-oie2016" / name)
    counts: Counter[str] = Counter()
    for record, (text, tuples) in zip(records, raw.items(), strict=True):
        assert record.sentence.text == text.strip()
        kept = [t for t in tuples if any(t[s] for s in reoie2016.SLOTS)]
        for extraction, item in zip(record.extractions, kept, strict=True):
            elements = {"pred": extraction.predicate, **{a.role: a for a in extraction.arguments}}
            for slot in reoie2016.SLOTS:
                index, phrase = item[f"{slot}_index"], item[slot]
                if not index:
                    continue
                element = elements[slot]
                if index[0] < 0:
                    assert element.span is None and element.text == phrase
                    counts["implicit"] += 1
                elif element.span == (index[0], index[1] + 1):
                    assert " ".join(element.text.split()) == phrase  # the index reproduces the phrase
                    counts["exact"] += 1
                elif element.span is None:
                    assert element.text == phrase
                    counts["disagrees"] += 1
                else:
                    assert element.text == phrase  # mapped from str.split(" ") positions
                    counts["space_mapped"] += 1
    assert counts["implicit"] == implicit
    assert counts["disagrees"] == index_disagrees
    assert counts["space_mapped"] == space_mapped


def test_reoie2016_bad_input(tmp_path: Path) -> None:
    good = {"arg0": "A cat", "arg0_index": [0, 1], "pred": "sat", "pred_index": [2, 2]}
    data = {
        "A cat sat .": [
            good,
            {**good, "arg1": "x", "arg1_index": [3, 9]},
            "not a tuple",
            {**good, "pred_index": "2"},
        ],
        "A dog barked .": [{"arg0": "A dog", "arg0_index": [0, 1], "pred": "barked", "pred_index": [2, 2]}],
    }
    path = _write(tmp_path, "Re-OIE2016-Spanish.json", json.dumps(data, indent=2))
    items = list(reoie2016.convert(path))
    rejections = [i for i in items if isinstance(i, Rejection)]
    assert [(r.reason, r.field) for r in rejections] == [
        (RejectionReason.span_out_of_range, "tuples[1].arg1_index"),
        (RejectionReason.schema_invalid, "tuples[2].tuple"),
        (RejectionReason.schema_invalid, "tuples[3].pred_index"),
    ]
    lines = path.read_text().splitlines()
    out_of_range, not_a_tuple = rejections[0].line, rejections[1].line
    assert out_of_range is not None and not_a_tuple is not None
    assert lines[out_of_range - 1].strip() == "{"  # the line where the offending tuple starts
    assert '"arg1_index"' in "".join(lines[out_of_range - 1 : out_of_range + 12])
    assert lines[not_a_tuple - 1].strip() == '"not a tuple",'
    records = [i for i in items if isinstance(i, Record)]
    assert [(r.id, len(r.extractions), r.lang) for r in records] == [
        ("re-oie2016-es-00001", 1, "es"),
        ("re-oie2016-es-00002", 1, "es"),
    ]


def test_reoie2016_malformed_json_keeps_what_came_before(tmp_path: Path) -> None:
    text = json.dumps({"A cat sat .": [{"pred": "sat", "pred_index": [2, 2]}]}, indent=1)
    path = _write(tmp_path, "broken.json", text[:-2] + ', "A dog barked .": [{"pred": }]}')
    items = list(reoie2016.convert(path))
    assert isinstance(items[0], Rejection) and items[0].reason is RejectionReason.malformed_json
    assert items[0].line == text[:-2].count("\n") + 1
    assert [i.sentence.text for i in items if isinstance(i, Record)] == ["A cat sat ."]
    wrong = _write(tmp_path, "list.json", "[1, 2]")
    assert [i.reason for i in reoie2016.convert(wrong)] == [RejectionReason.schema_invalid]  # type: ignore[union-attr]


# --------------------------------------------------------------------------- OIE2016


def test_oie2016_conll(bench: Path) -> None:
    records, rejections = _converted("oie2016-conll", bench / "oie2016/dev.oie.conll.txt")
    assert rejections == []
    assert len(records) == 582  # distinct sent_id
    assert sum(len(r.extractions) for r in records) == 1673  # runs (distinct run_id)
    stats = _stats("oie2016-conll", bench / "oie2016/dev.oie.conll.txt")
    assert stats.ungrounded_elements == 70  # argument labels that are not contiguous
    first = records[0].extractions[1]  # QVC Network Inc. said it completed its acquisition ...
    assert (first.predicate.text, first.predicate.span) == ("completed", (5, 6))
    assert [(a.role, a.text) for a in first.arguments] == [
        ("arg0", "its acquisition of CVN Cos."),
        ("arg1", "QVC Network Inc."),
        ("arg2", "about $ 423 million"),
    ]
    assert max(int(a.role[3:]) for r in records for e in r.extractions for a in e.arguments) == 5  # A5 exists


@pytest.mark.parametrize(("split", "sentences", "tuples"), [("dev", 582, 1672), ("test", 603, 1730)])
def test_oie2016_tab(bench: Path, split: str, sentences: int, tuples: int) -> None:
    records, rejections = _converted("oie2016-tab", bench / f"oie2016/OIE2016_{split}.txt")
    assert rejections == []
    assert (len(records), sum(len(r.extractions) for r in records)) == (sentences, tuples)
    assert records[0].id == f"oie2016-{split}-00001"


def test_oie2016_bad_input(tmp_path: Path) -> None:
    header = "\t".join(oie2016.CONLL_COLUMNS)
    rows = [
        "0\tCats\tsleep\t[1]\t1\t0\t0\tA0-B",
        "1\tsleep\tsleep\t[1]\t1\t0\t0\tP-B",
        "",
        "0\tCats\tsleep\t[1]\t1\t0\t1\tA0-B",
        "1\tsleep\tsleep\t[1]\t1\t0\t1",
        "",
        "0\tCats\tsleep\t[1]\t1\t0\t2\tX-B",
        "1\tsleep\tsleep\t[1]\t1\t0\t2\tP-B",
        "",
        "0\tCats\tsleep\t[1]\t1\t0\t3\tA0-B",
        "1\tsleep\tsleep\t[1]\t1\t0\t3\tO",
    ]
    path = _write(tmp_path, "dev.oie.conll.txt", "\n".join([header, *rows]) + "\n")
    items = list(oie2016.convert_conll(path))
    rejections = [i for i in items if isinstance(i, Rejection)]
    assert [(r.line, r.reason, r.field) for r in rejections] == [
        (6, RejectionReason.schema_invalid, None),
        (8, RejectionReason.label_scheme, "label"),
        (11, RejectionReason.label_scheme, "label"),
    ]
    (record,) = [i for i in items if isinstance(i, Record)]
    assert record.id == "oie2016-conll-dev-00001" and len(record.extractions) == 1

    tab = _write(tmp_path, "OIE2016_test.txt", "Cats sleep .\tsleep\tsleep\tCats\nCats sleep .\tsleep\n")
    items = list(oie2016.convert_tab(tab))
    assert [(i.line, i.field) for i in items if isinstance(i, Rejection)] == [(2, "predicate")]


# --------------------------------------------------------------------------- BenchIE


@pytest.mark.parametrize(
    ("lang", "clusters", "triples", "without_clusters", "rejected_lines"),
    [
        ("en", 1350, 8150, 4, []),  # grep -c Cluster / grep -c ' --> '
        ("zh", 995, 1368, 2, [2080]),  # 994 headers + the triples after the stray '2 0 6 :' line
        ("de", 1086, 2446, 3, []),
    ],
)
def test_benchie_parse_and_convert(
    bench: Path, lang: str, clusters: int, triples: int, without_clusters: int, rejected_lines: list[int]
) -> None:
    path = bench / f"benchie/benchie_gold_annotations_{lang}.txt"
    parsed = list(benchie.parse_benchie(path))
    sentences = [s for s in parsed if isinstance(s, benchie.BenchIESentence)]
    assert [r.line for r in parsed if isinstance(r, Rejection)] == rejected_lines
    assert [s.sent_id for s in sentences] == [str(i) for i in range(1, 301)]
    assert sum(len(s.clusters) for s in sentences) == clusters
    assert sum(len(c.triples) for s in sentences for c in s.clusters) == triples
    assert sum(not s.clusters for s in sentences) == without_clusters

    records, rejections = _converted("benchie", path)
    assert [r.line for r in rejections] == rejected_lines
    assert len(records) == 300
    assert [len(r.extractions) for r in records] == [len(s.clusters) for s in sentences]
    assert records[0].id == f"benchie-{lang}-00001" and records[0].lang == lang


def test_benchie_first_sentence(bench: Path) -> None:
    (first, *_) = benchie.parse_benchie(bench / "benchie/benchie_gold_annotations_en.txt")
    assert isinstance(first, benchie.BenchIESentence)
    triple = first.clusters[0].triples[0]
    assert triple.object.raw == "[the] [first] Prime Minister [of Australia]"
    assert [(c.text, c.optional) for c in triple.object.chunks] == [
        ("the", True),
        ("first", True),
        ("Prime Minister", False),
        ("of Australia", True),
    ]
    assert triple.full() == ("He", "served as", "the first Prime Minister of Australia")
    assert len(triple.variants()) == 8 and ("He", "served as", "Prime Minister") in triple.variants()
    records, _ = _converted("benchie", bench / "benchie/benchie_gold_annotations_en.txt")
    extraction = records[0].extractions[0]
    assert (extraction.predicate.text, extraction.predicate.span) == ("served as", (1, 3))
    assert [(a.role, a.text) for a in extraction.arguments] == [
        ("arg0", "He"),
        ("arg1", "the first Prime Minister of Australia"),
    ]


@pytest.mark.parametrize(
    ("raw", "full", "minimal"),
    [
        ("Crozier[,]", "Crozier,", "Crozier"),
        ("[``]A", "``A", "A"),
        ("x [y]z", "x yz", "x z"),
        ("for [as little as] $ 89]", "for as little as $ 89", "for $ 89"),  # stray ']' (en line 9176)
        ("[unclosed to the end", "unclosed to the end", ""),
        ("a  b  [c]", "a b c", "a b"),
    ],
)
def test_benchie_slots(raw: str, full: str, minimal: str) -> None:
    slot = benchie.BenchIESlot.from_raw(raw)
    assert (slot.full, slot.minimal) == (full, minimal)
    assert slot.variants()[0] == full and slot.variants()[-1] == minimal


def test_benchie_bad_input(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "benchie_gold_annotations_de.txt",
        "sent_id:1\tKatzen schlafen.\n1--> Cluster 1:\nKatzen --> schlafen --> [gern]\n"
        "a --> b --> c --> d\nwhat is this\nKatzen --> schlafen --> \n\n"
        "sent_id:1\tdoppelt\n\nsent_id:2\t\n",
    )
    items = list(benchie.convert(path))
    rejections = [i for i in items if isinstance(i, Rejection)]
    assert [(r.line, r.reason, r.field) for r in rejections] == [
        (4, RejectionReason.schema_invalid, "triple"),
        (5, RejectionReason.schema_invalid, "cluster"),
        (6, RejectionReason.schema_invalid, "triple"),  # empty object: the stripped line has one ' --> '
        (8, RejectionReason.duplicate, "sent_id"),
        (10, RejectionReason.schema_invalid, "sentence"),
    ]
    (record,) = [i for i in items if isinstance(i, Record)]
    # the junk line starts a new (empty) cluster: no extraction for it
    assert record.id == "benchie-de-00001" and len(record.extractions) == 1
    # German BenchIE is plain text: the word tokeniser splits "schlafen." so the relation grounds
    assert record.sentence.tokens == ["Katzen", "schlafen", "."]
    assert record.extractions[0].predicate.span == (1, 2)


# --------------------------------------------------------------------------- all formats


@pytest.mark.parametrize(("format_name", "relative"), ALL_INPUTS)
def test_records_round_trip_and_validate(bench: Path, format_name: str, relative: str) -> None:
    records, _ = _converted(format_name, bench / relative)
    assert records
    ids = [r.id for r in records]
    assert len(set(ids)) == len(ids)
    for record in records:
        assert Record.model_validate_json(record.model_dump_json()) == record
        assert record.sentence.tokens == record.sentence.text.split() or format_name == "benchie"


def test_registry(bench: Path, tmp_path: Path) -> None:
    names = {"carb", "re-oie2016", "oie2016-conll", "oie2016-tab", "benchie", "spanoie"}
    assert set(CONVERTERS) == set(FORMATS) == names
    with pytest.raises(ValueError, match="known formats"):
        get_converter("nope")
    assert reoie2016.infer(Path("Re-OIE2016-Portuguese-Binary.json")) == ("pt", "re-oie2016-binary-pt")
    assert carb.infer_dataset(Path("gold_dev.tsv")) == "carb-dev"
    assert benchie.infer_lang(Path("benchie_gold_annotations_zh.txt")) == "zh"
    # explicit lang/dataset win over the file name; a bad language is a rejection, not an exception
    (record, *_) = convert("oie2016-tab", bench / "oie2016/OIE2016_dev.txt", lang="en", dataset="mine")
    assert isinstance(record, Record) and record.id == "mine-00001"
    (bad,) = list(convert("carb", bench / "carb/gold_dev.tsv", lang="not a language"))
    assert isinstance(bad, Rejection) and bad.reason is RejectionReason.unknown_language

    stats = _stats("carb", bench / "carb/gold_test.tsv")
    assert (stats.records, stats.empty_records, stats.extractions) == (641, 7, 2715)
    assert stats.total_rejections == 0
    records, _ = _converted("carb", bench / "carb/gold_test.tsv")
    elements = sum(1 + len(e.arguments) for r in records for e in r.extractions)
    assert stats.grounded_elements + stats.ungrounded_elements == elements
    assert "641 records" in str(stats) and stats.as_dict()["rejections"] == {}
