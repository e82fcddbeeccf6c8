"""Gold canaries (``openie4pp.annotate.canaries``): which benchmark sentences they are, how they are
scored, and that an annotation run scores them without ever writing them.

Units: :func:`load_canaries` (the last ``N`` of each benchmark, natural Chinese text, parallel
English in project mode), :func:`subset_gold` (the gold cut to exactly the canary sentences, the
gold itself scoring 1.0 where the converters are lossless), :class:`CanaryBook` (rejections,
all-rejected languages, the progress postfix) and :func:`overlap`. End to end: ``openie4pp
annotate --canaries 1`` against the fake server (``tests/annotate_responder.py``): no canary in the
shards nor in ``rejected.jsonl``, scores in ``stats.json``, the manifest and the card, a rerun that
costs nothing; and the usage errors of ``--canaries``/``--canary-langs``/``OPENIE4PP_BENCHMARKS``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import Outcome, annotate_args, write_jsonl
from fake_openai_server import FakeServerProcess

from openie4pp.annotate.canaries import (
    CANARY_PREFIX,
    CANARY_SOURCES,
    Canary,
    CanaryBook,
    _records,
    load_canaries,
    natural_text,
    overlap,
    subset_gold,
)
from openie4pp.app.cli import main
from openie4pp.eval.run import evaluate
from openie4pp.schema import Record
from openie4pp.validate import validate_paths

ALL_LANGS = ["en", "de", "zh", "es", "pt", "ar"]
BENCHMARK_OF = {"en": "carb-dev", "de": "benchie-de", "zh": "benchie-zh", "es": "re-oie2016-es",
                "pt": "re-oie2016-pt"}
SIZES = {"carb-dev": 641, "benchie-de": 300, "benchie-zh": 300, "re-oie2016-es": 595, "re-oie2016-pt": 594}


@pytest.fixture(autouse=True)
def _real_benchmarks(bench: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test reads the shared benchmark folder (or, where it says so, a missing one)."""
    monkeypatch.delenv("OPENIE4PP_BENCHMARKS", raising=False)


def squeeze(text: str) -> str:
    return "".join(text.split())


def gold_records_for(benchmark: str, canaries: list[Canary]) -> dict[str, Record]:
    """canary id -> the benchmark's own gold record of that sentence (matched by text)."""
    by_text = {squeeze(r.sentence.text): r for r in _records(benchmark)}
    return {c.id: by_text[squeeze(c.text)] for c in canaries}


# -- load_canaries --------------------------------------------------------------------------------


def test_extract_mode_takes_the_last_n_sentences_of_each_benchmark() -> None:
    canaries = load_canaries(2, ALL_LANGS, "extract")
    assert [c.lang for c in canaries] == ["en", "en", "de", "de", "zh", "zh", "es", "es", "pt", "pt"]  # no ar
    for c in canaries:
        benchmark = BENCHMARK_OF[c.lang]
        assert c.id.startswith(f"{CANARY_PREFIX}{benchmark}:")
        assert c.benchmark == benchmark == CANARY_SOURCES[c.lang].benchmark
        assert c.pretokenized == CANARY_SOURCES[c.lang].pretokenized
        assert c.english is None and c.english_triples == ()
        assert c.text.strip()
    for lang, benchmark in BENCHMARK_OF.items():
        size = len(_records(benchmark))
        assert size == SIZES[benchmark]
        ours = [c for c in canaries if c.lang == lang]
        assert [c.id for c in ours] == [f"canary:{benchmark}:{size - 1}", f"canary:{benchmark}:{size}"]
        last_two = [natural_text(r.sentence.text, lang) for r in _records(benchmark)[-2:]]
        assert [c.text for c in ours] == last_two
    de = [c.id for c in canaries if c.lang == "de"]
    assert de == ["canary:benchie-de:299", "canary:benchie-de:300"]
    assert len({c.id for c in canaries}) == len(canaries)


def test_the_last_sentences_are_those_of_the_raw_benchmark_files(bench: Path) -> None:
    """Read independently of the converters: the canaries are the files' last sentences."""
    canaries = {c.id: c.text for c in load_canaries(1, ["en", "de", "es"], "extract")}
    carb = (bench / "carb" / "sentences_dev.txt").read_text(encoding="utf-8").splitlines()
    assert canaries["canary:carb-dev:641"] == carb[-1].strip()
    benchie = [line for line in (bench / "benchie" / "benchie_gold_annotations_de.txt")
               .read_text(encoding="utf-8").splitlines() if line.startswith("sent_id:")]
    assert benchie[-1].startswith("sent_id:300\t")
    assert canaries["canary:benchie-de:300"] == benchie[-1].split("\t", 1)[1].strip()
    spanish = json.loads((bench / "re-oie2016" / "Re-OIE2016-Spanish.json").read_text(encoding="utf-8"))
    assert " ".join(canaries["canary:re-oie2016-es:595"].split()) == " ".join(list(spanish)[-1].split())


def test_counts_order_and_edge_cases() -> None:
    assert load_canaries(0, ALL_LANGS, "extract") == []
    assert load_canaries(3, ["ar"], "extract") == []
    assert [c.lang for c in load_canaries(1, ["pt", "en"], "extract")] == ["pt", "en"]  # order of langs
    three = load_canaries(3, ["es"], "extract")
    assert [c.id for c in three] == [f"canary:re-oie2016-es:{i}" for i in (593, 594, 595)]
    # more than the benchmark holds: all of it, once each
    everything = load_canaries(400, ["de"], "extract")
    assert len(everything) == 300 and everything[0].id == "canary:benchie-de:1"


def test_chinese_canaries_are_natural_text() -> None:
    assert natural_text("R T C 可 能   F r o g", "zh") == "RTC可能 Frog"
    assert natural_text("R T C 可 能   F r o g", "zh-Hans") == "RTC可能 Frog"
    assert natural_text("R T C 可 能", "de") == "R T C 可 能"  # only Chinese is respaced
    zh = load_canaries(2, ["zh"], "extract")
    gold = [r.sentence.text for r in _records("benchie-zh")[-2:]]
    for canary, spaced in zip(zh, gold, strict=True):
        assert " " in spaced  # BenchIE's Chinese is one character per token
        assert squeeze(canary.text) == squeeze(spaced)
        assert not re.search(r"[\u3400-\u9fff] +[\u3400-\u9fff]", canary.text), canary.text
    assert "RTC可能" in zh[0].text


def test_project_mode_pairs_each_canary_with_its_parallel_english() -> None:
    canaries = load_canaries(2, ALL_LANGS, "project")
    assert {c.lang for c in canaries} == {"de", "zh", "es", "pt"}  # en is the source; ar has no gold
    for c in canaries:
        assert c.english and c.english.strip()
        assert c.english_triples
        assert all(len(t) >= 3 and t[0] and t[1] for t in c.english_triples)
        assert c.text == natural_text(_records(c.benchmark)[int(c.id.rsplit(":", 1)[1]) - 1].sentence.text,
                                      c.lang)
    by_id = {c.id: c for c in canaries}
    for benchmark, size in (("re-oie2016-es", 595), ("re-oie2016-pt", 594)):
        last = by_id[f"canary:{benchmark}:{size}"]
        assert "Bluth" in last.english and "Bluth" in last.text  # type: ignore[operator]
        assert last.english == _records("re-oie2016-en")[-1].sentence.text
    for lang in ("de", "zh"):
        rtc = by_id[f"canary:benchie-{lang}:299"]
        assert "RTC" in rtc.english and "RTC" in rtc.text  # type: ignore[operator]
        assert "S&L" in rtc.english and "S&L" in rtc.text  # type: ignore[operator]
        last = by_id[f"canary:benchie-{lang}:300"]
        assert last.english == _records("benchie-en")[-1].sentence.text
        assert "Nobody" in last.english  # type: ignore[operator]
    assert "Niemand" in by_id["canary:benchie-de:300"].text
    # the English gold triples are those of the English benchmark's sentence
    english_gold = _records("re-oie2016-en")[-1]
    assert by_id["canary:re-oie2016-es:595"].english_triples[0][0] in english_gold.sentence.text


# -- subset_gold and scoring ----------------------------------------------------------------------


@pytest.mark.parametrize(("benchmark", "lang", "perfect"), [
    ("carb-dev", "en", True),
    ("re-oie2016-es", "es", True),
    ("benchie-de", "de", False),  # the German gold's spelling differs from its sentences' in places
    ("benchie-zh", "zh", True),
])
def test_the_gold_itself_scores_against_the_subset(benchmark: str, lang: str, perfect: bool,
                                                    tmp_path: Path) -> None:
    n = 3
    canaries = load_canaries(n, [lang], "extract")
    gold = gold_records_for(benchmark, canaries)
    assert len(gold) == n

    subset = subset_gold(benchmark, [c.text for c in canaries], tmp_path)
    assert subset.is_file() and subset.parent == tmp_path
    assert gold_sentences_in(subset, benchmark) == n
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(r.model_dump_json() + "\n" for r in gold.values()), encoding="utf-8")
    result = evaluate(benchmark, predictions, gold=subset)
    assert result.gold_sentences == n and result.matched_sentences == n

    book = CanaryBook(canaries)
    for canary_id, record in gold.items():
        book.accept(canary_id, record)
    score = book.score()[lang]
    assert score.benchmark == benchmark
    assert score.sentences == n and score.accepted == n and not score.rejections
    assert score.extractions == sum(len(r.extractions) for r in gold.values()) > 0
    assert score.precision is not None and 0 < score.precision <= 1 and 0 < score.recall <= 1
    assert score.f1 == pytest.approx(result.f1)
    if perfect:
        assert score.precision == score.recall == score.f1 == 1.0
    as_dict = score.as_dict()
    assert set(as_dict) == {"benchmark", "sentences", "accepted", "extractions", "precision", "recall",
                            "f1", "rejections"}


def gold_sentences_in(path: Path, benchmark: str) -> int:
    """How many sentences a gold file in the benchmark's own format holds, parsed independently."""
    text = path.read_text(encoding="utf-8")
    if benchmark.startswith("carb"):
        return len({line.split("\t")[0] for line in text.splitlines() if line.strip()})
    if benchmark.startswith("re-oie2016"):
        return len(json.loads(text))
    return sum(1 for line in text.splitlines() if line.startswith("sent_id:"))


def test_subset_of_texts_not_in_the_benchmark_is_empty(tmp_path: Path) -> None:
    for benchmark in ("carb-dev", "re-oie2016-pt", "benchie-zh"):
        folder = tmp_path / benchmark
        folder.mkdir()
        subset = subset_gold(benchmark, ["A sentence nobody wrote ."], folder)
        assert gold_sentences_in(subset, benchmark) == 0


def test_a_partial_answer_scores_below_one(tmp_path: Path) -> None:
    """One canary answered with its gold, the other with nothing matching: recall drops."""
    canaries = load_canaries(2, ["es"], "extract")
    gold = gold_records_for("re-oie2016-es", canaries)
    book = CanaryBook(canaries)
    book.accept(canaries[1].id, gold[canaries[1].id])
    book.reject(canaries[0].id, "ungrounded")
    score = book.score()["es"]
    assert score.sentences == 2 and score.accepted == 1
    assert score.precision == 1.0 and 0 < score.recall < 1.0 and 0 < score.f1 < 1.0
    assert dict(score.rejections) == {"ungrounded": 1}


# -- CanaryBook -----------------------------------------------------------------------------------


def test_rejected_and_unfinished_canaries_are_counted_and_score_zero() -> None:
    canaries = load_canaries(2, ["de", "en"], "extract")
    de, en = [c for c in canaries if c.lang == "de"], [c for c in canaries if c.lang == "en"]
    gold = gold_records_for("carb-dev", en)
    book = CanaryBook(canaries)
    assert de[0].id in book and "canary:benchie-de:1" not in book and "s1" not in book
    book.reject(de[0].id, "ungrounded")
    book.reject(de[0].id, "ungrounded")
    book.reject(de[1].id, "wrong_language")
    for c in en:
        book.accept(c.id, gold[c.id])
    scores = book.score()
    assert set(scores) == {"de", "en"} and book.scores is scores
    assert scores["de"].precision is None and scores["de"].recall == 0 and scores["de"].f1 == 0
    assert scores["de"].accepted == 0 and scores["de"].sentences == 2 and scores["de"].extractions == 0
    assert dict(scores["de"].rejections) == {"ungrounded": 2, "wrong_language": 1}
    assert scores["de"].as_dict()["precision"] is None
    assert scores["en"].f1 == 1.0 and not scores["en"].rejections

    postfix = book.postfix()
    assert postfix == "de .00 en 1.00"
    for lang in ("de", "en"):
        assert lang in postfix

    unfinished = CanaryBook(load_canaries(2, ["zh"], "extract"))
    score = unfinished.score()["zh"]
    assert dict(score.rejections) == {"unfinished": 2} and score.precision is None and score.f1 == 0
    assert unfinished.postfix() == "zh .00"


def test_an_accepted_canary_does_not_count_its_rejections() -> None:
    """A record-level rejection before an acceptance (a re-ask) is not a reason the canary failed."""
    canaries = load_canaries(1, ["en"], "extract")
    gold = gold_records_for("carb-dev", canaries)
    book = CanaryBook(canaries)
    book.reject(canaries[0].id, "llm_invalid_output")
    book.accept(canaries[0].id, gold[canaries[0].id])
    score = book.score()["en"]
    assert score.accepted == 1 and not score.rejections and score.f1 == 1.0


def test_postfix_before_scoring_is_empty_and_formats_fractions() -> None:
    book = CanaryBook(load_canaries(1, ["es", "en"], "extract"))
    assert book.postfix() == ""
    scores = book.score()
    scores["es"].f1 = 0.5
    scores["en"].f1 = 0.523
    assert book.postfix() == "en .52 es .50"


# -- overlap --------------------------------------------------------------------------------------


def test_overlap_with_a_tagger_evaluation() -> None:
    assert overlap("benchie-de", 100, 10) == 0
    assert overlap("benchie-de", 290, 10) == 0  # eval_limit + per_lang == size: still disjoint
    assert overlap("benchie-de", 291, 10) == 1
    assert overlap("benchie-de", 300, 10) == 10
    assert overlap("benchie-de", 1000, 10) == 10
    assert overlap("benchie-de", None, 10) == 10  # None: every sentence
    assert overlap("carb-dev", None, 3) == 3
    assert overlap("carb-dev", 640, 3) == 2
    assert overlap("re-oie2016-pt", 594, 1) == 1
    assert overlap("benchie-zh", None, 0) == 0
    assert overlap("benchie-de", None, 500) == 300  # more canaries than sentences
    # not a canary source: the tagger's held-out score never shares a sentence with the canaries
    assert overlap("carb-test", None, 10) == 0
    assert overlap("benchie-en", None, 10) == 0
    assert overlap("re-oie2016-en", None, 10) == 0


def test_overlap_counts_exactly_the_shared_sentences() -> None:
    for benchmark, lang in (("carb-dev", "en"), ("benchie-zh", "zh")):
        size, per_lang = SIZES[benchmark], 5
        canary_numbers = {int(c.id.rsplit(":", 1)[1]) for c in load_canaries(per_lang, [lang], "extract")}
        for limit in (None, 0, size - per_lang, size - 2, size, size + 7):
            first = set(range(1, (size if limit is None else min(limit, size)) + 1))
            assert overlap(benchmark, limit, per_lang) == len(first & canary_numbers), (benchmark, limit)


# -- end to end -----------------------------------------------------------------------------------


INPUT = [
    {"id": "e1", "lang": "en", "text": "The baker sells fresh bread."},
    {"id": "e2", "lang": "en", "text": "Worker7 paints wooden chairs."},
    {"id": "d1", "lang": "de", "text": "Die Katze schläft auf dem Sofa."},
    {"id": "d2", "lang": "de", "text": "Der Bäcker verkauft frisches Brot."},
]


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(args)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    return code, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}, captured.err


def test_annotate_scores_canaries_and_never_writes_them(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", INPUT)
    out = tmp_path / "out"
    args = annotate_args(server, source, out, "--canaries", "1", "--canary-langs", "en,de")
    code, summary, _ = run_json(args, capsys)
    assert code in (0, 1)
    assert len(server.requests()) > 0

    outcome = Outcome(out)
    assert not [i for i in outcome.record_ids if i.startswith(CANARY_PREFIX)]
    assert not [r for r in outcome.rejections if str(r.sentence_id or "").startswith(CANARY_PREFIX)]
    benchmarks = set(BENCHMARK_OF.values())
    assert not [r for r in outcome.rejections if CANARY_PREFIX in (r.input or "") or r.file in benchmarks]
    for shard in out.glob("*/shard-*.jsonl"):
        assert CANARY_PREFIX not in shard.read_text(encoding="utf-8")
    rejected = out / "rejected.jsonl"
    if rejected.exists():
        assert CANARY_PREFIX not in rejected.read_text(encoding="utf-8")
    # every input item is accounted for, and nothing else; the folder is a valid dataset
    assert set(outcome.accounted_ids) == {r["id"] for r in INPUT}
    assert outcome.records  # simple sentences the responder answers well: the card exists
    summary_check = validate_paths([out])
    assert summary_check.ok, summary_check.problems

    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert stats["items"] == len(INPUT)  # canaries are not input items
    assert summary["canaries"] == stats["canaries"]
    canaries = stats["canaries"]
    assert set(canaries) == {"en", "de"}
    for lang, score in canaries.items():
        assert score["benchmark"] == BENCHMARK_OF[lang]
        assert score["sentences"] == 1
        assert score["accepted"] in (0, 1)
        assert {"precision", "recall", "f1", "rejections", "extractions"} <= set(score)
        if score["accepted"]:
            assert score["precision"] is not None and 0 <= score["precision"] <= 1
            assert not score["rejections"]
        else:
            assert score["precision"] is None and score["recall"] == 0 and score["f1"] == 0
            assert sum(score["rejections"].values()) >= 1
        assert 0 <= score["recall"] <= 1 and 0 <= score["f1"] <= 1
    # the canary sentences were really asked about
    asked = " ".join(f"{e.get('last_user', '')} {e.get('last_user_tail', '')}" for e in server.requests())
    assert "Municipal bonds" in asked and "Niemand" in asked

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    if outcome.records:
        assert code == 0
        assert manifest["quality"]["canaries"] == canaries
        card = (out / "README.md").read_text(encoding="utf-8")
        assert "gold canaries" in card
        for lang in canaries:
            assert f"| {lang} | {BENCHMARK_OF[lang]} | 1 |" in card
    assert manifest["records"] == len(outcome.records)

    # a rerun: the canaries are asked again, from the cache; same scores, not one request
    server.reset()
    code2, summary2, _ = run_json(args, capsys)
    assert code2 == code
    assert server.requests() == []
    rerun_stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert rerun_stats["requests"] == 0 and summary2["requests"] == 0
    assert rerun_stats["cache_hits"] > 0
    assert rerun_stats["canaries"] == canaries
    assert Outcome(out).record_ids == outcome.record_ids


def test_annotate_without_canaries_has_no_canary_section(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:2])
    out = tmp_path / "out"
    code, summary, _ = run_json(annotate_args(server, source, out, "--canaries", "0"), capsys)
    assert code == 0
    assert "canaries" not in summary
    assert "canaries" not in json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert "quality" not in json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert "gold canaries" not in (out / "README.md").read_text(encoding="utf-8")
    assert len(server.requests()) == 2 * 2  # extract + verify per input item, no canary


def test_project_mode_canaries_skip_the_translation_and_are_never_written(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"id": "p1", "lang": "en", "text": "The cat sleeps on the sofa.",
             "triples": [["The cat", "sleeps", "on the sofa"]]}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    args = annotate_args(server, source, out, "--mode", "project", "--target-lang", "de,es",
                         "--canaries", "1")
    code, _, _ = run_json(args, capsys)
    assert code == 0
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert set(stats["canaries"]) == {"de", "es"}  # the target languages that have a parallel gold
    by_purpose = stats["requests_by_purpose"]
    assert by_purpose["translate"] == 2  # the input's two translations; a canary's translation is known
    assert by_purpose["stage1"] == 2 + 2  # the input's projections and the canaries'
    for lang, score in stats["canaries"].items():
        assert score["benchmark"] == BENCHMARK_OF[lang] and score["sentences"] == 1
        assert score["accepted"] + sum(score["rejections"].values()) >= 1
    outcome = Outcome(out)
    assert sorted(outcome.accounted_ids) == ["p1.de", "p1.es"]
    assert not any(str(r.sentence_id or "").startswith(CANARY_PREFIX) for r in outcome.rejections)
    assert stats["items"] == 2  # (sentence, target) tasks of the input; the canaries are not items


def test_resolve_canaries_defaults() -> None:
    from openie4pp.annotate.canaries import DEFAULT_PER_LANG
    from openie4pp.annotate.run_setup import resolve_canaries
    from openie4pp.app.annotate_command import config_from_args
    from openie4pp.app.cli import build_parser

    def resolved(*extra: str, endpoint: str = "http://127.0.0.1:9/v1") -> list[Canary]:
        args = build_parser().parse_args(annotate_args(endpoint, "in.jsonl", "out", *extra))
        return list(resolve_canaries(config_from_args(args)))

    remote = resolved("--canaries", "auto")
    assert len(remote) == DEFAULT_PER_LANG * 5
    # in the order of the benchmark registry (openie4pp.benchmarks), where canaries are defined
    assert [c.lang for c in remote][::DEFAULT_PER_LANG] == ["en", "es", "pt", "zh", "de"]
    assert resolved("--canaries", "auto", endpoint="local") == []  # each costs seconds on a CPU
    assert resolved("--canaries", "0") == []
    two = resolved("--canaries", "2", "--canary-langs", "de, en")
    assert [c.lang for c in two] == ["de", "de", "en", "en"]
    project = resolved("--mode", "project", "--canaries", "1")  # default targets zh,de,es,pt,ar
    assert [c.lang for c in project] == ["zh", "de", "es", "pt"]
    assert [c.lang for c in resolved("--mode", "project", "--target-lang", "de", "--canaries", "1",
                                     "--canary-langs", "en,de")] == ["de"]  # en has no project canary


# -- usage errors ---------------------------------------------------------------------------------


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(("openie4pp", "error")), lines[0]
    return lines[0]


@pytest.mark.parametrize(("extra", "message"), [
    (["--canaries", "x"], "--canaries"),
    (["--canaries", "-1"], "--canaries"),
    (["--canaries", "1.5"], "--canaries"),
    (["--canaries", "1", "--canary-langs", "ar"], "ar"),
    (["--canaries", "1", "--canary-langs", "en,xx-bogus!"], "--canary-langs"),
])
def test_bad_canary_options_are_usage_errors_before_any_request(
    extra: list[str], message: str, server: FakeServerProcess, tmp_path: Path,
    capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:1])
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(annotate_args(server, source, out, *extra)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert message in line
    assert server.requests() == []
    assert not (out / "manifest.json").exists()


def test_a_missing_benchmark_folder(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Explicit canaries need their gold (exit 2); ``auto`` goes on without them and says so."""
    monkeypatch.setenv("OPENIE4PP_BENCHMARKS", str(tmp_path / "no-benchmarks"))
    source = write_jsonl(tmp_path / "in.jsonl", INPUT[:2])
    capsys.readouterr()
    assert main(annotate_args(server, source, tmp_path / "explicit", "--canaries", "1")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "OPENIE4PP_BENCHMARKS" in line
    assert server.requests() == []

    out = tmp_path / "auto"
    with caplog.at_level(logging.WARNING):
        # annotate_args says --canaries 0 (the helper's default for other tests): auto, as a user's default
        code, summary, err = run_json(annotate_args(server, source, out, "--canaries", "auto"), capsys)
    assert code == 0
    warned = caplog.text + err
    assert "no gold canaries" in warned
    assert "canaries" not in summary
    assert len(server.requests()) == 2 * 2
    assert "quality" not in json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def test_a_gold_file_missing_from_the_folder_is_a_usage_error(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, bench: Path
) -> None:
    """A benchmark folder without BenchIE: explicit German canaries fail before any request."""
    partial = tmp_path / "benchmarks"
    (partial / "carb").mkdir(parents=True)
    for name in ("gold_dev.tsv",):
        (partial / "carb" / name).write_bytes((bench / "carb" / name).read_bytes())
    monkeypatch.setenv("OPENIE4PP_BENCHMARKS", str(partial))
    _records.cache_clear()
    try:
        source = write_jsonl(tmp_path / "in.jsonl", INPUT[:1])
        capsys.readouterr()
        code = main(annotate_args(server, source, tmp_path / "out", "--canaries", "1",
                                  "--canary-langs", "de"))
        assert code == 2
        assert "benchie" in one_error_line(capsys.readouterr().err)
        assert server.requests() == []
    finally:
        _records.cache_clear()

