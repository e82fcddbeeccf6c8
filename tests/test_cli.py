"""The command line end to end on real benchmark files: convert -> validate -> load -> eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import openie4pp
from openie4pp.app.cli import main
from openie4pp.schema import Record


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_convert_validate_load_and_score_gold(bench: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "carb-test"
    assert main(["convert", "--from", "carb", str(bench / "carb" / "gold_test.tsv"), "--out", str(out)]) == 0
    stats = last_json(capsys.readouterr().out)
    assert (stats["records"], stats["extractions"], stats["rejections"]) == (641, 2715, {})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"] == 641 and manifest["build_config"]["format"] == "carb"

    assert main(["validate", str(out), "--json"]) == 0
    assert last_json(capsys.readouterr().out)["records_per_lang"] == {"en": 641}

    loaded = openie4pp.load(out)
    assert list(loaded) == ["en"] and len(loaded["en"]) == 641
    assert Record.model_validate(loaded["en"][0]).sentence.id == "carb-test-00001"

    # the converted gold as JSONL predictions scores exactly as the gold rows in CaRB's tab format
    shard = next((out / "en").glob("shard-*.jsonl"))
    assert (
        main(
            [
                "eval",
                "--benchmark",
                "carb-test",
                "--pred",
                str(shard),
                "--json",
                "--plot",
                str(tmp_path / "pr.png"),
            ]
        )
        == 0
    )
    summary = last_json(capsys.readouterr().out)
    tab = tmp_path / "gold-as-pred.tsv"
    rows = (bench / "carb" / "gold_test.tsv").read_text(encoding="utf-8").splitlines()
    tab.write_text(
        "".join(f"{r.split(chr(9))[0]}\t1.0\t" + "\t".join(r.split("\t")[1:]) + "\n" for r in rows)
    )
    assert main(["eval", "--benchmark", "carb-test", "--pred", str(tab), "--json"]) == 0
    from_tab = last_json(capsys.readouterr().out)
    assert summary["n_predictions"] == from_tab["n_predictions"] == 2715
    # not bit-identical: a grounded element stores the sentence's own spelling of the phrase
    # (e.g. "in  Pittsburgh" with the gold's double space becomes "in Pittsburgh")
    assert summary["f1"] == pytest.approx(from_tab["f1"], abs=2e-3) and summary["f1"] > 0.98
    assert set(summary) >= {"auc", "precision", "recall", "f1", "n_predictions"}
    assert (tmp_path / "pr.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_scores_a_whole_shard_folder_like_its_one_file(bench: Path, tmp_path: Path, capsys) -> None:
    """Issue 11: the annotator as an OIE system is ``annotate`` over a benchmark's sentences, then
    ``eval --pred FOLDER``: the folder's records, every shard, score as one prediction file."""
    out = tmp_path / "carb-dev"
    assert main(["convert", "--from", "carb", str(bench / "carb" / "gold_dev.tsv"), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", "--benchmark", "carb-dev", "--pred", str(out), "--json"]) == 0
    folder = last_json(capsys.readouterr().out)
    shard = next((out / "en").glob("shard-*.jsonl"))
    assert main(["eval", "--benchmark", "carb-dev", "--pred", str(shard), "--json"]) == 0
    assert last_json(capsys.readouterr().out) == folder and folder["f1"] > 0.98
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["eval", "--benchmark", "carb-dev", "--pred", str(empty)]) == 2
    assert "without shards" in capsys.readouterr().err


def test_eval_reproduces_the_original_carb_numbers(bench: Path, capsys) -> None:
    pred = bench / "carb" / "system_outputs" / "clausie_test.tsv"
    assert main(["eval", "--benchmark", "carb-test", "--pred", str(pred), "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert (round(summary["auc"], 4), round(summary["f1"], 4)) == (0.2236, 0.4496)


def test_benchie_summary_has_no_auc(bench: Path, tmp_path: Path, capsys) -> None:
    pred = tmp_path / "sys.txt"
    pred.write_text("1\tHe\tserved as\tthe first Prime Minister of Australia\n1\tHe\tbecame\tthe king\n")
    assert main(["eval", "--benchmark", "benchie-en", "--pred", str(pred), "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert "auc" not in summary and summary["n_predictions"] == 2 and summary["precision"] == 0.5


def test_convert_benchie_writes_one_record_per_sentence(bench: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "benchie-de"
    gold = bench / "benchie" / "benchie_gold_annotations_de.txt"
    assert main(["convert", "--from", "benchie", str(gold), "--out", str(out)]) == 0
    assert last_json(capsys.readouterr().out)["records"] == 300


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--benchmark", "carb-test", "--pred", "/nonexistent.tsv"],
        ["convert", "--from", "carb", "/nonexistent.tsv", "--out", "/tmp/x"],
    ],
)
def test_user_errors_are_messages_not_tracebacks(argv: list[str], capsys) -> None:
    assert main(argv) == 2
    assert "error: " in capsys.readouterr().err


def test_garbage_predictions_name_the_line(tmp_path: Path, capsys) -> None:
    pred = tmp_path / "bad.tsv"
    pred.write_text("A sentence .\t0.5\trel\targ\nA sentence .\thigh\trel\targ\n")
    assert main(["eval", "--benchmark", "carb-dev", "--pred", str(pred)]) == 2
    assert f"{pred}:2" in capsys.readouterr().err
