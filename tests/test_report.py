"""``openie4pp report``: the HTML report of a real annotation folder (built against the fake server)
and of a trained model, opened in a real headless browser (Debian's chromium, see tests/browser.py).

What is checked in the browser is what a reader sees: the tables' numbers equal counts made here
from the folder's files by another route (each rejection's language from its input line), the
highlighted spans equal the records' spans, an Arabic sentence runs right to left, the filters
narrow the table, nothing is fetched from the network and the console stays clean. Screenshots go
to the test's folder, and also to ``$OPENIE4PP_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from annotate_responder import Outcome, annotate_args, write_jsonl
from browser import open_page

from openie4pp.app.cli import main
from openie4pp.schema import Record

EXTRACT_INPUT = [
    {"id": "en-curie", "text": "Marie Curie discovered polonium in Paris.", "lang": "en"},
    {"id": "de-katze", "text": "Die Katze schläft auf dem Sofa.", "lang": "de"},
    {"id": "zh-cat", "text": "猫在沙发上睡觉。", "lang": "zh"},
    {"id": "ar-mahfouz", "text": "نجيب محفوظ كتب رواية الثلاثية في القاهرة.", "lang": "ar"},
    {"id": "en-nobody", "text": "Nobody knows anything.", "lang": "en"},
    {"id": "en-obama", "text": "Obama visited Berlin in 2013.", "lang": "en"},
    {"id": "en-mark", "text": "Mark writes short stories every day.", "lang": "en"},
    {"id": "de-nobody", "text": "Nobody kennt die Antwort.", "lang": "de"},
]
PROJECT_INPUT = [
    {"id": "cat", "lang": "en", "text": "The cat sleeps on the sofa.",
     "triples": [["The cat", "sleeps", "on the sofa"]]},
    {"id": "baker", "lang": "en", "text": "The baker sells fresh bread.",
     "triples": [["The baker", "sells", "fresh bread"]]},
    {"id": "weather", "lang": "en", "text": "The weather is very nice today.",
     "triples": [["The weather", "is", "very nice today"]]},
]


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a real picture of a page, not an empty canvas
    keep = os.environ.get("OPENIE4PP_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def _table(page: Any, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"{selector} tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")


def _expected_marks(record: Record) -> dict[int, list[list[Any]]]:
    """Per extraction, each grounded element as [role, start, end, its text in the sentence]."""
    text, offsets = record.sentence.text, record.sentence.offsets
    out = {}
    for index, extraction in enumerate(record.extractions):
        elements = [("rel", extraction.predicate.span)] + [(a.role, a.span) for a in extraction.arguments]
        out[index] = sorted([role, span[0], span[1], text[offsets[span[0]][0]:offsets[span[1] - 1][1]]]
                            for role, span in elements if span is not None)
    return out


@pytest.fixture
def extract_folder(server: Any, tmp_path: Path, bench: Path) -> Path:
    source = write_jsonl(tmp_path / "input.jsonl", EXTRACT_INPUT)
    out = tmp_path / "silver"
    assert main(annotate_args(server, source, out, "--canaries", "1", "--price-in", "0.5",
                              "--price-out", "1.5")) == 0
    return out


def test_the_report_of_an_annotation_folder_in_a_real_browser(
        extract_folder: Path, server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests_sent = len(server.requests())
    capsys.readouterr()
    html = tmp_path / "report.html"
    assert main(["report", str(extract_folder), "--out", str(html)]) == 0
    assert f"annotation report: {html}" in capsys.readouterr().out
    outcome = Outcome(extract_folder)
    lang_of_line = {i + 1: row["lang"] for i, row in enumerate(EXTRACT_INPUT)}
    records = Counter(r.lang for r in outcome.records)
    triples: Counter[str] = Counter()
    for record in outcome.records:
        triples[record.lang] += len(record.extractions)
    rejected: Counter[str] = Counter(lang_of_line[r.line] for r in outcome.final if r.line)
    assert rejected and set(rejected) - set(records) == set() and records["ar"] == 1  # every case is there
    stats = json.loads((extract_folder / "stats.json").read_text())

    with open_page(html) as (page, log):
        _screenshot(page, tmp_path, "annotation-report")
        languages = {row[0]: row for row in _table(page, "#languages")}
        assert sorted(languages) == sorted(set(records) | set(rejected))
        for lang, row in languages.items():
            asked = records[lang] + rejected[lang]
            assert row[1:6] == [str(asked), str(records[lang]), str(triples[lang]), str(rejected[lang]),
                                f"{records[lang] / asked:.3f}"], lang
        usage = dict((row[0], row[1]) for row in page.eval_on_selector_all(
            "#usage-table tr", "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
        assert usage["requests sent"] == f"{requests_sent:,}" == f"{stats['requests']:,}"
        assert usage["prompt tokens"] == f"{stats['tokens']['prompt']:,}"
        assert usage["cost"] == f"US$ {stats['cost_usd']:.4f}"
        canaries = {row[0]: row for row in _table(page, "#canary-table")}
        assert set(canaries) == set(stats["canaries"])
        for lang, score in stats["canaries"].items():
            assert canaries[lang][4:7] == [f"{score[k]:.3f}" for k in ("precision", "recall", "f1")]
        reasons = Counter(r.reason.value for r in outcome.rejections if r.stage != "input")
        assert {(row[1]): int(row[2]) + int(row[3]) for row in _table(page, "#reason-table")} == reasons

        # the highlighted spans are the records' spans, extraction by extraction
        shown = page.eval_on_selector_all("#record-table tbody tr", """rows => rows.map(r => ({
            id: r.dataset.id,
            extractions: [...r.querySelectorAll('.extraction')].map(x => [...x.querySelectorAll('mark')].map(
                m => [m.dataset.role, ...m.dataset.span.split(' ').map(Number), m.textContent]))}))""")
        by_id = {r.sentence.id: r for r in outcome.records}
        assert sorted(s["id"] for s in shown) == sorted(by_id)
        for row in shown:
            expected = _expected_marks(by_id[row["id"]])
            assert {i: sorted(marks) for i, marks in enumerate(row["extractions"])} == expected, row["id"]
        arabic = page.locator('#record-table tr[data-lang="ar"] p.sentence').first
        assert arabic.get_attribute("dir") == "rtl"
        assert arabic.evaluate("e => getComputedStyle(e).direction") == "rtl"
        chinese = page.locator('#record-table tr[data-lang="zh"] p.sentence').first
        assert chinese.text_content() == by_id["zh-cat"].sentence.text  # as written: no spaces added

        # the filters narrow the tables
        page.select_option('select[data-for="records"][data-key="lang"]', "en")
        visible = page.eval_on_selector_all("#record-table tbody tr:not([hidden])",
                                            "rows => rows.map(r => r.dataset.lang)")
        assert visible == ["en"] * records["en"]
        count = page.locator('[data-count="records"]').text_content()
        assert count == f"{records['en']} of {len(by_id)} shown"
        page.fill('input[data-for="records"]', "polonium")
        assert page.eval_on_selector_all("#record-table tbody tr:not([hidden])", "r => r.length") == 1
        page.select_option('select[data-for="rejections"][data-key="reason"]', "llm_rejected")
        reasons_shown = page.eval_on_selector_all("#rejection-table tbody tr:not([hidden])",
                                                  "rows => rows.map(r => r.dataset.reason)")
        assert reasons_shown == ["llm_rejected"] * reasons["llm_rejected"]
        _screenshot(page, tmp_path, "annotation-report-filtered")
    assert log.errors == []
    assert log.requests == [html.resolve().as_uri()]  # self-contained: nothing else was fetched


def test_project_mode_shows_the_english_source_beside_the_translation(server: Any, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "english.jsonl", PROJECT_INPUT)
    out = tmp_path / "projected"
    assert main(annotate_args(server, source, out, "--mode", "project", "--target-lang", "de,zh,ar")) == 0
    assert main(["report", str(out)]) == 0
    outcome = Outcome(out)
    with open_page(out / "report.html") as (page, log):
        _screenshot(page, tmp_path, "project-report")
        rows = page.eval_on_selector_all("#record-table tbody tr", """rows => rows.map(r => ({
            id: r.dataset.id, source: r.querySelector('.source')?.textContent,
            triples: [...r.cells[2].querySelectorAll('.triple')].map(t => t.textContent)}))""")
    assert log.errors == []
    english = {row["id"]: row for row in PROJECT_INPUT}
    assert sorted(r["id"] for r in rows) == sorted(r.sentence.id for r in outcome.records)
    for row in rows:
        item = english[row["id"].rsplit(".", 1)[0]]
        assert row["source"] == item["text"]
        assert row["triples"] == [f"({'; '.join(t)})" for t in item["triples"]]


def test_a_moved_input_is_named_and_the_report_still_renders(server: Any, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "english.jsonl", PROJECT_INPUT[:1])
    out = tmp_path / "projected"
    assert main(annotate_args(server, source, out, "--mode", "project", "--target-lang", "de")) == 0
    moved = source.rename(tmp_path / "elsewhere.jsonl")
    assert main(["report", str(out)]) == 0
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "source not available" in text and str(source) in text
    assert main(["report", str(out), "--input", str(moved)]) == 0
    assert "The cat sleeps on the sofa." in (out / "report.html").read_text(encoding="utf-8")


def test_report_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2  # an empty folder is neither kind
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("openie4pp report: error: ") for line in err)
    assert "no such folder" in err[0] and "neither an annotation folder" in err[1]


def _gold_as_predictions(tmp_path: Path) -> dict[str, Any]:
    """CaRB dev's gold tuples as predictions, with falling confidences: a real, non-trivial PR curve."""
    from openie4pp.benchmarks import get
    from openie4pp.eval.run import evaluate

    lines = get("carb-dev").gold_path().read_text(encoding="utf-8").splitlines()[:300]
    pred = tmp_path / "pred.tsv"
    pred.write_text("".join(f"{cols[0]}\t{1 - i / 400:.4f}\t" + "\t".join(cols[1:]) + "\n"
                            for i, cols in enumerate(line.split("\t") for line in lines)), encoding="utf-8")
    result = evaluate("carb-dev", pred)
    return {**result.summary(), "curve": result.curve_points()}


def test_the_report_of_a_trained_model(tmp_path: Path, bench: Path) -> None:
    from helpers import overrides

    from openie4pp.report import write_report
    from openie4pp.train.recipe import load_config, train

    settings = overrides(tmp_path, "epochs=2", "eval.benchmark=carb-dev", "eval.limit=8", "eval.every=6")
    metrics = train(load_config(None, settings, stage=1))
    assert metrics.evals and all("curve" in e for e in metrics.evals)
    held_out = _gold_as_predictions(tmp_path)
    assert len(held_out["curve"]) > 10
    # the run folder (its stage folders), with a held-out evaluation as the quickstart passes them
    write_report(tmp_path, benchmarks={"carb-dev (gold as predictions)": held_out})
    log = [json.loads(line) for line in (tmp_path / "stage1" / "log.jsonl").read_text().splitlines()]
    with open_page(tmp_path / "report.html") as (page, page_log):
        _screenshot(page, tmp_path, "model-report")
        stages = _table(page, "#stage-table")
        evaluations = _table(page, "#eval-table")
        curves = page.locator("#curve-charts > .chart > svg").count()
        pr = page.locator("#pr-charts > .chart > svg").count()
    assert page_log.errors == []
    assert [row[0] for row in stages] == ["stage1"] and stages[0][1] == str(metrics.steps)
    every = [*metrics.evals, held_out]
    assert [row[3] for row in evaluations] == [f"{e['f1']:.3f}" for e in every]
    assert [int(row[5]) for row in evaluations] == [len(e["curve"]) for e in every]
    # loss and learning rate; a PR chart of the dev evaluations (when the tiny model predicted
    # anything) and one of the held-out evaluation
    assert curves == 2 and pr == int(any(e["curve"] for e in metrics.evals)) + 1
    svg = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert len(log) > 2 and "stage1: training loss" in svg


# -- without a browser: the pieces the page is made of ------------------------------------------


def test_pieces_keep_the_sentence_as_written_and_skip_what_cannot_be_marked() -> None:
    from helpers import make_record

    from openie4pp.report.spans import pieces

    chinese = make_record(3, "zh-Hans")
    cut = pieces(chinese.sentence, chinese.extractions[0])
    assert "".join(p.text for p in cut) == chinese.sentence.text  # nothing added, nothing lost
    marks = [(p.role, p.start, p.end) for p in cut if p.role]
    assert marks == [("arg0", 0, 3), ("rel", 4, 6), ("arg1", 7, 9)]
    gold = make_record(1, "en", grounded=False)  # spans unknown: the sentence unmarked
    assert [p.role for p in pieces(gold.sentence, gold.extractions[0])] == [None]
    overlapping = chinese.extractions[0].model_copy(deep=True)
    overlapping.arguments[1].span = (2, 5)  # overlaps the subject: left unmarked, never nested
    marked = [p.role for p in pieces(chinese.sentence, overlapping) if p.role]
    assert marked == ["arg0", "rel"]


@pytest.mark.parametrize(("lang", "direction"), [("ar", "rtl"), ("fa", "rtl"), ("he", "rtl"), ("ur", "rtl"),
                                                 ("zh", "ltr"), ("en", "ltr"), ("xx-unknown", "ltr")])
def test_text_direction(lang: str, direction: str) -> None:
    from openie4pp.report.spans import text_direction

    assert text_direction(lang) == direction


def test_the_sample_is_a_deterministic_spread_over_the_languages(tmp_path: Path) -> None:
    from helpers import make_record

    from openie4pp.report import read_annotation_folder, write_report
    from openie4pp.shards import ShardWriter

    with ShardWriter(tmp_path / "data") as writer:
        for i in range(300):
            writer.write(make_record(i, "en"))
        for i in range(5):
            writer.write(make_record(i, "zh-Hans"))
    report = read_annotation_folder(tmp_path / "data", sample=20)
    langs = Counter(r.lang for r in report.records)
    assert langs == {"en": 15, "zh-Hans": 5}  # the small language is not crowded out
    again = read_annotation_folder(tmp_path / "data", sample=20)
    assert [r.id for r in again.records] == [r.id for r in report.records]
    first_lines = {make_record(i, "en").sentence.id for i in range(15)}
    assert {r.id for r in report.records if r.lang == "en"} != first_lines  # a spread, not the head
    first = write_report(tmp_path / "data", tmp_path / "a.html").path.read_bytes()
    assert write_report(tmp_path / "data", tmp_path / "b.html").path.read_bytes() == first  # same bytes
    assert report.languages[0].records == 300 and report.total_records == 305


def test_a_broken_line_is_counted_and_named_not_fatal(tmp_path: Path) -> None:
    from helpers import make_record

    from openie4pp.report import write_report
    from openie4pp.shards import ShardWriter

    with ShardWriter(tmp_path / "data") as writer:
        for i in range(3):
            writer.write(make_record(i, "en"))
    shard = next((tmp_path / "data" / "en").glob("shard-*.jsonl"))
    with shard.open("a", encoding="utf-8") as out:
        out.write('{"sentence": "not a record"}\n')
    result = write_report(tmp_path / "data")
    page = result.path.read_text(encoding="utf-8")
    assert result.records_shown == 3 and "1 lines could not be read" in page


# -- odd folders and mistakes: one line, the documented exit code, or a faithful page -----------


def _finished_folder(tmp_path: Path, n: int = 3) -> Path:
    from helpers import make_record

    from openie4pp.shards import ShardWriter

    with ShardWriter(tmp_path / "data") as writer:
        for i in range(n):
            writer.write(make_record(i, "en"))
    return tmp_path / "data"


def test_names_with_dollars_and_underscores_are_text_not_math(tmp_path: Path) -> None:
    from openie4pp.report import write_report

    stage = tmp_path / "cost_$5_to_$10" / "stage1"
    stage.mkdir(parents=True)
    (stage / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n', encoding="utf-8")
    (stage / "metrics.json").write_text(json.dumps({"steps": 2, "evals": [
        {"step": 2, "precision": 0.5, "recall": 0.5, "f1": 0.5, "curve": [[0.1, 0.9], [0.5, 0.5]]}]}),
        encoding="utf-8")
    page = write_report(tmp_path / "cost_$5_to_$10").path.read_text(encoding="utf-8")
    assert "stage1: training loss" in page and "stage1 dev, step 2" in page


def test_svg_ids_are_unique_in_the_page(extract_folder: Path) -> None:
    import re

    from openie4pp.report import write_report

    page = write_report(extract_folder).path.read_text(encoding="utf-8")
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) > 20 and len(ids) == len(set(ids))
    for target in re.findall(r'url\(#([^)]+)\)|href="#([^"]+)"', page):
        assert next(t for t in target if t) in ids  # every reference still points at its element


def test_an_old_manifest_without_complete_is_finished_and_unknown_languages_are_said(tmp_path: Path) -> None:
    from openie4pp.report import read_annotation_folder, write_report

    folder = _finished_folder(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("complete")
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    old = {"schema_version": "1.1", "stage": "stage2", "reason": "llm_rejected", "detail": "d", "input": "x",
           "sentence_id": "doc5"}  # written before rejections had a lang, with a user's id
    converted = {**old, "stage": "convert", "reason": "schema_invalid", "sentence_id": None}
    lines = [json.dumps(old), json.dumps(converted)]
    (folder / "rejected.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = read_annotation_folder(folder)
    assert report.complete and report.unknown_language_rejections == 1 and report.input_rejections == 1
    assert [(row.lang, row.records, sum(row.rejected.values())) for row in report.languages] == [
        ("?", 0, 1), ("en", 3, 0)]
    page = write_report(folder).path.read_text(encoding="utf-8")
    assert "not finished" not in page and "do not say their language" in page


def test_a_folder_with_rejections_only_is_an_annotation_folder(tmp_path: Path) -> None:
    from openie4pp.report import folder_kind

    (tmp_path / "rejected.jsonl").write_text("", encoding="utf-8")
    assert folder_kind(tmp_path) == "annotation"


def test_stage_folders_sort_by_number_and_others_are_ignored(tmp_path: Path) -> None:
    from openie4pp.report import read_model_folder

    for name in ("stage10", "stage2", "stage2-old", "stage1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n', encoding="utf-8")
    assert [s.name for s in read_model_folder(tmp_path).stages] == ["stage1", "stage2", "stage10"]


@pytest.mark.parametrize(("setup", "argv", "says"), [
    (lambda f: (f / "manifest.json").write_text("{", encoding="utf-8"), [], "not a readable JSON file"),
    (lambda f: None, ["--out", "{folder}/manifest.json"], "would overwrite a data file"),
    (lambda f: None, ["--out", "{folder}/manifest.json/x.html"], "is a file, not a folder"),
    (lambda f: None, ["--input", "{folder}/manifest.json"], "only a project-mode annotation folder"),
], ids=["torn manifest", "out over the manifest", "out under a file", "input for extract mode"])
def test_mistakes_are_one_line_and_exit_2(setup: Any, argv: list[str], says: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = _finished_folder(tmp_path)
    before = (folder / "manifest.json").read_bytes()
    setup(folder)
    code = main(["report", str(folder), *[a.format(folder=folder) for a in argv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("openie4pp report: error: ") and says in err[0]
    if argv[:1] == ["--out"]:
        assert (folder / "manifest.json").read_bytes() == before


def test_a_torn_last_line_is_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _finished_folder(tmp_path)
    shard = next((folder / "en").glob("shard-*.jsonl"))
    with shard.open("a", encoding="utf-8") as out:
        out.write('{"sentence": {"id": "x')
    assert main(["report", str(folder)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("openie4pp report: warning: ") and "torn" in err[0]


def test_a_relative_input_is_found_beside_the_folder(server: Any, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    write_jsonl(tmp_path / "english.jsonl", PROJECT_INPUT[:1])
    monkeypatch.chdir(tmp_path)
    argv = annotate_args(server, "english.jsonl", "projected", "--mode", "project", "--target-lang", "de")
    assert main(argv) == 0
    monkeypatch.chdir(tmp_path.parent)  # the report is made elsewhere
    assert main(["report", str(tmp_path / "projected")]) == 0
    page = (tmp_path / "projected" / "report.html").read_text(encoding="utf-8")
    assert "The cat sleeps on the sofa." in page and "source not available" not in page


def test_a_json_line_that_is_not_a_record_is_not_counted_as_one(tmp_path: Path) -> None:
    from openie4pp.report import read_annotation_folder

    folder = _finished_folder(tmp_path)
    shard = next((folder / "en").glob("shard-*.jsonl"))
    with shard.open("a", encoding="utf-8") as out:  # the right keys, an invalid record (no tokens)
        bad = {"sentence": {"id": "bad", "lang": "en", "text": "x"}, "extractions": [{}]}
        out.write(json.dumps(bad) + "\n")
    report = read_annotation_folder(folder)
    assert report.unreadable_lines == 1 and report.total_records == 3
    assert [(row.records, row.extractions) for row in report.languages] == [(3, 3)]


def test_rejections_count_by_the_folder_rule_one_per_id_and_not_for_records(tmp_path: Path) -> None:
    """The same rule as the manifest's acceptance table (``rejections.is_final_rejection``): an id that
    later became a record is accepted, one id rejected twice is one sentence, internal errors finish
    nothing."""
    from helpers import make_record

    from openie4pp.report import read_annotation_folder

    folder = _finished_folder(tmp_path)
    line = {"schema_version": "1.2", "stage": "stage1", "reason": "request_failed", "detail": "d",
            "input": "x", "lang": "en"}
    lines = [{**line, "sentence_id": make_record(0, "en").sentence.id},  # retried: now a record
             {**line, "sentence_id": "gone"}, {**line, "sentence_id": "gone", "detail": "again"},
             {**line, "sentence_id": "bug", "reason": "internal_error"}]
    (folder / "rejected.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    report = read_annotation_folder(folder)
    rows = [(r.lang, r.records, dict(r.rejected)) for r in report.languages]
    assert rows == [("en", 3, {"request_failed": 1})]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["acceptance"]["en"]["accepted"] == 3  # what the writer counted for its own lines
