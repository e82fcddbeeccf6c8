"""`openie4pp validate` flags each kind of bad input with file:line:field and a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openie4pp.app.cli import main
from openie4pp.schema import Argument, Element, Extraction, Provenance, Record, Sentence
from openie4pp.validate import validate_paths


def good_record(text: str = "Marie Curie discovered polonium .", lang: str = "en") -> dict:
    sentence = Sentence.from_text(text, lang, pretokenized=True)
    extraction = Extraction(
        predicate=Element(text=sentence.tokens[2], span=(2, 3)),
        arguments=[
            Argument(role="arg0", text=sentence.span_text(0, 2), span=(0, 2)),
            Argument(role="arg1", text=sentence.tokens[3], span=(3, 4)),
        ],
    )
    record = Record(sentence=sentence, extractions=[extraction], provenance=Provenance(source="llm"))  # type: ignore[arg-type]
    return json.loads(record.model_dump_json())


def bad_lines() -> list[tuple[str, str, str | None]]:
    """(line, expected reason, expected field) for each kind of bad input."""
    cases: list[tuple[str, str, str | None]] = [('{"sentence": {"id": ', "malformed_json", None)]
    wrong_type = good_record("A b c d .")
    wrong_type["extractions"][0]["confidence"] = "high"
    cases.append((json.dumps(wrong_type), "schema_invalid", "extractions[0].confidence"))
    out_of_range = good_record("E f g h .")
    out_of_range["extractions"][0]["arguments"][1]["span"] = [3, 9]
    cases.append((json.dumps(out_of_range), "span_out_of_range", "extractions[0].arguments[1].span"))
    mismatch = good_record("I j k l .")
    mismatch["extractions"][0]["predicate"]["text"] = "discovered"
    cases.append((json.dumps(mismatch), "span_text_mismatch", "extractions[0].predicate.text"))
    unknown_lang = good_record("M n o p .")
    unknown_lang["sentence"]["lang"] = "xx"
    cases.append((json.dumps(unknown_lang), "unknown_language", "sentence.lang"))
    empty = good_record("Q r s t .")
    empty["sentence"].update(text=" ", tokens=[], offsets=[])
    cases.append((json.dumps(empty), "empty_sentence", "sentence.text"))
    version = good_record("U v w x .")
    version["schema_version"] = "9.0"
    cases.append((json.dumps(version), "schema_version", "schema_version"))
    ungrounded = good_record("Y z a b .")
    ungrounded["extractions"][0]["arguments"][0]["span"] = None
    cases.append((json.dumps(ungrounded), "ungrounded", "extractions[0].arguments[0].span"))
    return cases


@pytest.fixture()
def mixed_file(tmp_path: Path) -> tuple[Path, list[tuple[str, str, str | None]]]:
    cases = bad_lines()
    lines = [json.dumps(good_record())] + [line for line, _, _ in cases]
    lines.append(json.dumps(good_record()))  # a duplicate of line 1
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n" + '{"torn": tr', encoding="utf-8")  # and a torn last line
    return path, cases


def test_each_bad_line_is_named_with_file_line_field_and_reason(mixed_file) -> None:
    path, cases = mixed_file
    summary = validate_paths([path])
    assert summary.records == 1 and summary.lines == len(cases) + 3
    by_line = {(p.line, p.reason.value, p.field) for p in summary.problems}
    for offset, (_, reason, field) in enumerate(cases, start=2):
        assert (offset, reason, field) in by_line, (offset, reason, field, by_line)
    duplicate_line = len(cases) + 2
    assert (duplicate_line, "duplicate", "sentence.id") in by_line
    torn = [p for p in summary.problems if p.line == len(cases) + 3]
    assert torn and torn[0].reason.value == "malformed_json" and "torn" in torn[0].detail
    assert all(p.file == str(path) for p in summary.problems)


def test_cli_exit_codes_and_output(mixed_file, tmp_path: Path, capsys) -> None:
    path, _ = mixed_file
    rejected = tmp_path / "rejected.jsonl"
    assert main(["validate", str(path), "--json", "--rejected", str(rejected)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:2: malformed_json" in out
    assert f"{path}:5:extractions[0].predicate.text: span_text_mismatch" in out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["ok"] is False and summary["records"] == 1
    assert summary["problems_per_reason"]["span_out_of_range"] == 1
    assert len(rejected.read_text().splitlines()) == sum(summary["problems_per_reason"].values())

    clean = tmp_path / "clean" / "en" / "shard-00000.jsonl"
    clean.parent.mkdir(parents=True)
    clean.write_text(
        json.dumps(good_record()) + "\n" + json.dumps(good_record("Die Katze jagt Mäuse .", "de")) + "\n"
    )
    assert main(["validate", str(tmp_path / "clean")]) == 0
    assert "OK" in capsys.readouterr().out


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"a": "\xff\xfe"}\n')
    summary = validate_paths([tmp_path / "nope.jsonl", binary])
    details = sorted(((p.file, p.line, p.reason.value, p.detail) for p in summary.problems), key=str)
    assert details == [
        (str(binary), 1, "malformed_json", details[0][3]),
        (str(tmp_path / "nope.jsonl"), None, "malformed_json", "no such file"),
    ]


def test_console_script_runs(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(good_record()) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "openie4pp.app.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "records 1" in done.stdout
