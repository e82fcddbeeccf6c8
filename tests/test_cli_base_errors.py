"""``validate``, ``convert`` and ``eval`` on bad or surprising inputs: each case fails loudly, on one
line, with the documented exit code, and never loses or invents data (issue 10, items 11-13, 18 and
the low sweep)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openie4pp.app.cli import main
from openie4pp.errors import UsageError

TINY_CARB = (
    "Marie Curie discovered polonium .\tdiscovered\tMarie Curie\tpolonium\n"
    "Marie Curie discovered polonium .\twon\tMarie Curie\tprizes\n"
    "Tom sells old books .\tsells\tTom\told books\n"
)
TINY_BENCHIE = (
    "sent_id:1\tTom sells old books .\n"
    "1--> Cluster 1:\n"
    "Tom --> sells --> [old] books\n"
    "\n"
    "sent_id:2\tAnna reads .\n"
    "2--> Cluster 1:\n"
    "Anna --> reads --> [books]\n"
)


def one_error_line(err: str) -> str:
    """The single stderr line of a failed command (no traceback, nothing else)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def unmatched(summary: dict) -> tuple[int, int]:
    """(gold sentences without predictions, prediction sentences not in the gold) of ``eval --json``."""
    return summary["gold_sentences_without_predictions"], summary["prediction_sentences_not_in_gold"]


@pytest.fixture()
def carb_gold(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_dev.tsv"
    path.write_text(TINY_CARB, encoding="utf-8")
    return path


def convert_carb(gold: Path, out: Path, *extra: str) -> int:
    return main(["convert", "--from", "carb", str(gold), "--out", str(out), *extra])


# ------------------------------------------------------------------------------------------ validate


def bad_jsonl(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(f'{{"broken": {i}\n' for i in range(n)), encoding="utf-8")
    return path


def test_validate_rejected_file_holds_every_problem_not_only_the_listed_ones(tmp_path: Path, capsys) -> None:
    path = bad_jsonl(tmp_path, 7)
    rejected = tmp_path / "problems.jsonl"
    assert main(["validate", str(path), "--max-problems", "2", "--rejected", str(rejected)]) == 1
    out = capsys.readouterr().out
    assert "... and 5 more" in out
    lines = rejected.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["line"] for line in lines] == list(range(1, 8))


def test_validate_streams_problems_to_a_sink_while_keeping_only_a_few() -> None:
    from openie4pp.validate import validate_paths

    seen: list[object] = []
    summary = validate_paths(["/nonexistent/a.jsonl", "/nonexistent/b.jsonl"], max_kept_problems=1,
                             on_problem=seen.append)
    assert len(seen) == 2 and len(summary.problems) == 1


def test_validate_rejected_at_a_directory_fails_before_validating(tmp_path: Path, capsys) -> None:
    path = bad_jsonl(tmp_path, 1)
    (tmp_path / "dir").mkdir()
    assert main(["validate", str(path), "--rejected", str(tmp_path / "dir")]) == 2
    captured = capsys.readouterr()
    assert "--rejected" in one_error_line(captured.err) and captured.out == ""


def test_validate_rejected_inside_a_validated_folder_is_refused(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    bad_jsonl(folder, 1)
    assert main(["validate", str(folder), "--rejected", str(folder / "problems.jsonl")]) == 2
    assert "--rejected" in one_error_line(capsys.readouterr().err)
    assert not (folder / "problems.jsonl").exists()


def test_validate_negative_max_problems_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(bad_jsonl(tmp_path, 1)), "--max-problems", "-1"]) == 2
    assert "--max-problems" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_validate_without_any_record_is_not_ok(tmp_path: Path, kind: str, capsys) -> None:
    target = tmp_path / "empty"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_text("\n", encoding="utf-8")
    assert main(["validate", str(target), "--json"]) == 1
    captured = capsys.readouterr()
    assert "no records" in one_error_line(captured.err)
    assert "OK" not in captured.out.splitlines() and last_json(captured.out)["ok"] is False


def test_validate_reports_a_folder_whose_run_did_not_complete(
    carb_gold: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "run"
    assert convert_carb(carb_gold, out) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert main(["validate", str(out)]) == 1
    captured = capsys.readouterr()
    assert "incomplete" in one_error_line(captured.err) and str(out) in captured.err
    manifest.pop("complete")  # an old folder: no key means complete
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert main(["validate", str(out)]) == 0


def test_convert_benchie_then_validate_is_ok(tmp_path: Path, capsys) -> None:
    gold = tmp_path / "gold_en.txt"
    gold.write_text(TINY_BENCHIE, encoding="utf-8")
    out = tmp_path / "benchie"
    assert main(["convert", "--from", "benchie", str(gold), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["validate", str(out), "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["ok"], summary["files"], summary["records"]) == (True, 1, 2)


def test_validate_reads_only_the_shards_of_each_shard_folder_under_a_parent(
    carb_gold: Path, tmp_path: Path, capsys
) -> None:
    parent = tmp_path / "runs"
    assert convert_carb(carb_gold, parent / "a") == 0
    (parent / "a" / "notes.jsonl").write_text("not a record\n", encoding="utf-8")
    (parent / "loose.jsonl").write_text("", encoding="utf-8")
    capsys.readouterr()
    assert main(["validate", str(parent), "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert (summary["files"], summary["records"]) == (2, 2)  # a/en/shard-00000.jsonl and loose.jsonl


# ------------------------------------------------------------------------------------------- convert


def test_convert_into_an_existing_dataset_is_refused(carb_gold: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert convert_carb(carb_gold, out) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert convert_carb(carb_gold, out) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--append" in line and "--overwrite" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_convert_append_reports_what_it_wrote(carb_gold: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert convert_carb(carb_gold, out) == 0
    first = last_json(capsys.readouterr().out)
    assert (first["records"], first["duplicates_skipped"]) == (2, 0)
    assert convert_carb(carb_gold, out, "--append") == 0
    again = last_json(capsys.readouterr().out)
    assert (again["records"], again["extractions"], again["duplicates_skipped"]) == (0, 0, 2)
    assert json.loads((out / "manifest.json").read_text())["records"] == 2


def test_convert_overwrite_replaces_only_the_dataset(carb_gold: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    gold = tmp_path / "gold_en.txt"
    gold.write_text(TINY_BENCHIE, encoding="utf-8")
    assert main(["convert", "--from", "benchie", str(gold), "--out", str(out), "--dataset", "old"]) == 0
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    (out / "en" / "keep.txt").write_text("mine too", encoding="utf-8")
    capsys.readouterr()
    assert convert_carb(carb_gold, out, "--overwrite") == 0
    assert last_json(capsys.readouterr().out)["records"] == 2
    assert not (out / "benchie-gold.jsonl").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / "en" / "keep.txt").exists()
    ids = [json.loads(line)["sentence"]["id"] for line in (out / "en" / "shard-00000.jsonl").open()]
    assert ids == ["carb-dev-00001", "carb-dev-00002"]
    assert json.loads((out / "manifest.json").read_text())["records"] == 2


def test_convert_overwrite_waits_for_no_one_and_removes_nothing_while_a_writer_runs(
    carb_gold: Path, tmp_path: Path, capsys
) -> None:
    from openie4pp.shards import ShardWriter

    out = tmp_path / "out"
    assert convert_carb(carb_gold, out) == 0
    capsys.readouterr()
    shard = out / "en" / "shard-00000.jsonl"
    before = shard.read_bytes()
    with ShardWriter(out, resume=True):  # another command is writing here
        assert convert_carb(carb_gold, out, "--overwrite") == 2
        assert "another process is writing" in one_error_line(capsys.readouterr().err)
        assert shard.read_bytes() == before


def test_convert_append_and_overwrite_exclude_each_other(carb_gold: Path, tmp_path: Path, capsys) -> None:
    assert convert_carb(carb_gold, tmp_path / "out", "--append", "--overwrite") == 2
    assert "not allowed with" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_convert_out_that_is_a_file_is_refused(carb_gold: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert convert_carb(carb_gold, target) == 2
    assert "--out" in one_error_line(capsys.readouterr().err)


def test_convert_lang_is_canonicalised(carb_gold: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert convert_carb(carb_gold, out, "--lang", "EN") == 0
    assert [p.name for p in out.iterdir() if p.is_dir()] == ["en"]


def test_library_convert_canonicalises_a_given_lang(carb_gold: Path) -> None:
    from openie4pp.formats.registry import convert
    from openie4pp.schema import Record, Rejection, RejectionReason

    assert {r.lang for r in convert("carb", carb_gold, lang="EN") if isinstance(r, Record)} == {"en"}
    (bad,) = list(convert("carb", carb_gold, lang="und"))  # names no language: a rejection
    assert isinstance(bad, Rejection) and bad.reason is RejectionReason.unknown_language


def test_convert_bad_lang_fails_before_writing(carb_gold: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert convert_carb(carb_gold, out, "--lang", "und") == 2
    assert "--lang" in one_error_line(capsys.readouterr().err)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- eval


def eval_carb(gold: Path, pred: Path, *extra: str) -> int:
    return main(["eval", "--benchmark", "carb-dev", "--gold", str(gold), "--pred", str(pred), *extra])


def test_eval_predictions_for_other_sentences_fail(carb_gold: Path, tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred.tsv"
    pred.write_text("A different sentence .\t0.9\tis\tA\tsentence\n", encoding="utf-8")
    assert eval_carb(carb_gold, pred, "--json") == 1
    line = one_error_line(capsys.readouterr().err)
    assert "none of the 1 prediction sentences" in line and "2 gold sentences" in line


def test_eval_reports_and_warns_about_unmatched_sentences(carb_gold: Path, tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred.tsv"
    pred.write_text(
        "Marie Curie discovered polonium .\t0.9\tdiscovered\tMarie Curie\tpolonium\n"
        "Not in the gold .\t0.8\tis\tNot\tgold\n",
        encoding="utf-8",
    )
    assert eval_carb(carb_gold, pred, "--json") == 0
    captured = capsys.readouterr()
    warning = one_error_line(captured.err)
    assert warning.startswith("openie4pp eval: warning: 1 of 2 prediction sentences")
    summary = last_json(captured.out)
    assert unmatched(summary) == (1, 1)
    assert "gold sentences without predictions" in captured.out


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_eval_empty_prediction_file_fails(carb_gold: Path, tmp_path: Path, content: str, capsys) -> None:
    pred = tmp_path / "pred.tsv"
    pred.write_text(content, encoding="utf-8")
    assert eval_carb(carb_gold, pred) == 1
    assert "no predictions" in one_error_line(capsys.readouterr().err)


def test_eval_benchie_unmatched_ids_warn_once_on_one_line(tmp_path: Path, capsys) -> None:
    gold = tmp_path / "gold_en.txt"
    gold.write_text(TINY_BENCHIE, encoding="utf-8")
    pred = tmp_path / "sys.txt"
    pred.write_text("1\tTom\tsells\tbooks\n7\tX\ty\tz\n", encoding="utf-8")
    args = ["eval", "--benchmark", "benchie-en", "--gold", str(gold), "--pred", str(pred), "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "warning" in one_error_line(captured.err)
    summary = last_json(captured.out)
    assert unmatched(summary) == (1, 1)
    pred.write_text("0\tTom\tsells\tbooks\n", encoding="utf-8")  # 0-based ids: nothing matches
    assert main(args) == 1
    assert "none of the 1 prediction sentences" in one_error_line(capsys.readouterr().err)


def test_eval_records_without_extractions_still_match_their_sentences(carb_gold: Path, tmp_path: Path,
                                                                      capsys) -> None:
    from openie4pp.schema import Provenance, Record, Sentence

    record = Record(sentence=Sentence.from_text("Tom sells old books .", "en", pretokenized=True),
                    extractions=[], provenance=Provenance(source="model"))  # type: ignore[arg-type]
    pred = tmp_path / "pred.jsonl"
    pred.write_text(record.model_dump_json() + "\n", encoding="utf-8")
    assert eval_carb(carb_gold, pred, "--json") == 0
    summary = last_json(capsys.readouterr().out)
    assert unmatched(summary) == (1, 0)


def test_eval_plot_at_a_directory_fails_before_scoring(carb_gold: Path, tmp_path: Path, capsys) -> None:
    pred = tmp_path / "pred.tsv"
    pred.write_text("Tom sells old books .\t0.9\tsells\tTom\told books\n", encoding="utf-8")
    (tmp_path / "plots").mkdir()
    assert eval_carb(carb_gold, pred, "--plot", str(tmp_path / "plots")) == 2
    captured = capsys.readouterr()
    assert "--plot" in one_error_line(captured.err) and captured.out == ""


def test_wrong_benchmarks_variable_names_itself(tmp_path: Path, monkeypatch, capsys) -> None:
    from openie4pp.paths import benchmarks_dir

    monkeypatch.setenv("OPENIE4PP_BENCHMARKS", str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="OPENIE4PP_BENCHMARKS") as info:
        benchmarks_dir()
    assert str(tmp_path / "nowhere") in str(info.value)
    pred = tmp_path / "pred.tsv"
    pred.write_text("Tom sells old books .\t0.9\tsells\tTom\told books\n", encoding="utf-8")
    assert main(["eval", "--benchmark", "carb-dev", "--pred", str(pred)]) == 2
    assert "OPENIE4PP_BENCHMARKS" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["eval", "convert"])
def test_a_folder_given_for_an_input_file_is_named_as_such(command: str, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    argv = {
        "eval": ["eval", "--benchmark", "carb-dev", "--pred", str(folder)],
        "convert": ["convert", "--from", "carb", str(folder), "--out", str(tmp_path / "out")],
    }[command]
    assert main(argv) == 2
    assert "is a folder" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_validate_of_a_missing_path_is_a_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path / "typo")]) == 2
    captured = capsys.readouterr()
    assert str(tmp_path / "typo") in one_error_line(captured.err) and captured.out == ""
