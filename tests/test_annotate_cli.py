"""``openie4pp annotate`` and ``openie4pp merge`` end to end against a real HTTP server process.

Resume after ``kill -9``, a rerun that costs nothing, ``--shard i/N`` + ``merge``, every input
format, and key hygiene. The server is ``tests/fake_openai_server.py`` answering with
``annotate_responder:respond``; its request log is the ground truth for "how many requests".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import PHRASES, TRANSLATIONS, Outcome, annotate_args, write_jsonl
from fake_openai_server import FakeServerProcess, spawn

from openie4pp.app.cli import main
from openie4pp.schema import Record, RejectionReason, sentence_id_for
from openie4pp.validate import validate_paths

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    """``openie4pp ARGS`` in this process; the exit code and the JSON summary it printed last."""
    code = main(args)
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1]) if out and out[-1].startswith("{") else {}


def settled_log(server: FakeServerProcess, timeout_s: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while server.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.requests()


def sentences(count: int) -> list[str]:
    """Distinct, simple English sentences (the responder extracts one triple from each)."""
    objects = ["old bicycles", "red apples", "short poems", "wooden chairs", "green tea"]
    return [
        f"Worker{i} {('repairs', 'buys', 'writes', 'paints', 'sells')[i % 5]} {objects[i % 5]}."
        for i in range(count)
    ]


def check_folder(out: Path, expected_ids: set[str]) -> Outcome:
    outcome = Outcome(out)
    counts = Counter(outcome.accounted_ids)
    assert set(counts) == expected_ids, set(counts) ^ expected_ids
    assert max(counts.values()) == 1
    summary = validate_paths([out])
    assert summary.ok, summary.problems
    return outcome


def mixed_items(count: int) -> list[dict[str, str]]:
    langs = ["en", "de", "es"]
    return [
        {"id": f"m{i:03d}", "lang": langs[i % 3], "text": text} for i, text in enumerate(sentences(count))
    ]


# -- resume after kill -9 ---------------------------------------------------------------------


def test_resume_after_sigkill_repeats_at_most_the_requests_in_flight(
    server: FakeServerProcess, tmp_path: Path
) -> None:
    items, concurrency = 60, 4
    source = tmp_path / "in.txt"
    source.write_text("\n".join(sentences(items)) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "openie4pp.app.cli",
        *annotate_args(server, source, out, "--lang", "en", "--concurrency", str(concurrency)),
    ]
    server.set_script([], latency_ms=100)  # 2 requests per item: about 3 s for the whole run

    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    written = 0
    while written < 10:
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        assert time.monotonic() < deadline, "no records appeared"
        time.sleep(0.02)
        written = sum(p.read_bytes().count(b"\n") for p in out.glob("*/shard-*.jsonl"))
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=10) == -signal.SIGKILL
    assert first.stderr is not None
    first.stderr.close()
    assert not (out / "manifest.json").exists()  # the writer never closed: a killed run
    killed_at = len(Outcome(out).records)
    assert 10 <= killed_at < items
    before = settled_log(server)  # requests of the killed run, incl. those it no longer waited for
    server.reset()

    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = settled_log(server)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["skipped_already_done"] >= killed_at
    assert summary["items"] == items

    ids = {sentence_id_for("en", s) for s in sentences(items)}
    outcome = check_folder(out, ids)
    assert len(outcome.records) == items
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"] == items

    # per (purpose, sentence): the end of the last user message names both (its start holds the
    # language notes). A request whose body was still being sent at the kill reaches the server
    # torn (no messages): it was in flight, too.
    torn = [e for e in before if not e["last_user"]]
    first_keys = Counter(e["last_user_tail"] for e in before if e["last_user"])
    second_keys = Counter(e["last_user_tail"] for e in after)
    assert max(first_keys.values()) == 1 and max(second_keys.values()) == 1
    repeated = set(first_keys) & set(second_keys)
    assert len(repeated) + len(torn) <= concurrency, f"{len(repeated)} requests repeated after the kill"
    assert len(set(first_keys) | set(second_keys)) == 2 * items  # extract + verify for each sentence
    assert len(before) + len(after) <= 2 * items + concurrency

    # a third run of the same command: nothing left to do, not one request, not one byte changed
    server.reset()
    files = [*out.glob("*/shard-*.jsonl"), out / "rejected.jsonl"]
    snapshot = {p: p.read_bytes() for p in files if p.exists()}
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert server.requests() == []
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    assert sorted(out.glob("*/shard-*.jsonl")) == sorted(p for p in snapshot if p.name != "rejected.jsonl")
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped_already_done"] == items


def test_rerun_makes_no_request_and_changes_no_byte(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[Any] = [*mixed_items(12), {"id": "bad", "lang": "en", "text": ""}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    code, first = run_cli(annotate_args(server, source, out), capsys)
    assert code == 0 and first["records"]["accepted"] == 12 and first["input_rejections"] == 1
    assert len(server.requests()) == 24
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.json", "README.md"))
    snapshot = {p: p.read_bytes() for p in files if p.name != "stats.json"}
    manifest = json.loads((out / "manifest.json").read_text())

    server.reset()
    code, second = run_cli(annotate_args(server, source, out), capsys)
    assert code == 0
    assert server.requests() == []
    assert second["requests"] == 0 and second["skipped_already_done"] == 12
    assert {p: p.read_bytes() for p in snapshot} == snapshot
    rerun_manifest = json.loads((out / "manifest.json").read_text())
    assert {k: v for k, v in rerun_manifest.items() if k != "updated"} == {
        k: v for k, v in manifest.items() if k != "updated"
    }


# -- sharding ---------------------------------------------------------------------------------


def test_shards_are_disjoint_cover_the_input_and_merge_cleanly(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[Any] = mixed_items(30)
    rows += [
        {"id": "bad1", "lang": "en", "text": ""},
        "not an object",
        {"id": "bad3", "text": "x", "lang": "??"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    ids = {r["id"] for r in rows[:30]}
    outs = [tmp_path / f"shard{i}" for i in range(3)]
    seen: list[set[str]] = []
    bad_lines: list[int] = []
    for i, out in enumerate(outs):
        code, summary = run_cli(annotate_args(server, source, out, "--shard", f"{i}/3"), capsys)
        assert code == 0
        outcome = Outcome(out)
        seen.append(set(outcome.accounted_ids))
        bad_lines += [r.line for r in outcome.inputs]
        assert summary["items"] == len(seen[-1]) > 0
    assert seen[0].isdisjoint(seen[1]) and seen[0].isdisjoint(seen[2]) and seen[1].isdisjoint(seen[2])
    assert seen[0] | seen[1] | seen[2] == ids
    assert sorted(bad_lines) == [31, 32, 33]  # each bad line in exactly one shard
    assert len(server.requests()) == 2 * 30

    merged = tmp_path / "merged"
    code, summary = run_cli(["merge", *map(str, outs), "--out", str(merged)], capsys)
    assert code == 0
    assert summary == {"out": str(merged), "records_read": 30, "unique": 30, "duplicates": 0, "unreadable": 0}
    outcome = check_folder(merged, ids)
    assert len(outcome.inputs) == 3
    assert main(["validate", str(merged)]) == 0
    capsys.readouterr()

    code, summary = run_cli(["merge", str(merged), str(merged), "--out", str(tmp_path / "twice")], capsys)
    assert code == 1
    assert summary["duplicates"] == 30 and summary["unique"] == 30

    nowhere = tmp_path / "no-such-shards"
    assert main(["merge", str(merged), str(nowhere), "--out", str(tmp_path / "typo")]) == 2
    assert str(nowhere) in capsys.readouterr().err and not (tmp_path / "typo").exists()


# -- input formats ----------------------------------------------------------------------------


def test_txt_input_with_lang_and_limit(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        "Die Katze schläft auf dem Sofa.",
        "",
        "Der Bäcker verkauft frisches Brot.",
        "Die Kinder spielen im Garten.",
        "Der Zug fährt nach München.",
        "Das Museum wurde 1990 eröffnet.",
    ]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, summary = run_cli(annotate_args(server, source, tmp_path / "all", "--lang", "de"), capsys)
    assert code == 0 and summary["records"]["accepted"] == 5
    outcome = check_folder(tmp_path / "all", {sentence_id_for("de", t) for t in lines if t})
    assert {r.lang for r in outcome.records} == {"de"}

    server.reset()
    code, summary = run_cli(
        annotate_args(server, source, tmp_path / "three", "--lang", "de", "--limit", "3"), capsys
    )
    assert code == 0 and summary["items"] == 3
    check_folder(
        tmp_path / "three",
        {sentence_id_for("de", t) for t in lines if t}
        - {sentence_id_for("de", lines[4]), sentence_id_for("de", lines[5])},
    )
    assert len(server.requests()) == 6

    assert (
        main(
            [
                "annotate",
                "--input",
                str(source),
                "--out",
                str(tmp_path / "x"),
                "--endpoint",
                server.base_url,
                "--model",
                "m",
                "--no-progress",
                "--canaries",
                "0",
            ]
        )
        == 2
    )
    assert "needs --lang" in capsys.readouterr().err


def test_parquet_input(server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [*mixed_items(7), {"id": "empty", "lang": "en", "text": ""}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    code, summary = run_cli(annotate_args(server, tmp_path / "in.parquet", tmp_path / "out"), capsys)
    assert code == 0 and summary["records"]["accepted"] == 7 and summary["input_rejections"] == 1
    outcome = check_folder(tmp_path / "out", {r["id"] for r in rows[:7]})
    (problem,) = outcome.inputs
    assert problem.reason is RejectionReason.empty_sentence and problem.line == 8
    assert problem.file == str(tmp_path / "in.parquet")


def test_records_folder_feeds_project_mode(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str], bench: Path
) -> None:
    """CaRB-format gold converted with ``openie4pp convert``: its extractions are the known triples."""
    english = [
        "The cat sleeps on the sofa.",
        "The baker sells fresh bread.",
        "The children play in the garden.",
    ]
    tsv = tmp_path / "mini_dev.tsv"
    rows = [
        f"{s}\t{s.split()[2].rstrip('.')}\t{' '.join(s.split()[:2])}\t{' '.join(s.rstrip('.').split()[3:])}"
        for s in english
    ]
    real = (bench / "carb" / "gold_dev.tsv").read_text(encoding="utf-8").splitlines()
    first_real = [line for line in real if line.split("\t")[0] == real[0].split("\t")[0]]
    tsv.write_text("\n".join(rows + first_real) + "\n", encoding="utf-8")
    records = tmp_path / "gold"
    assert main(["convert", "--from", "carb", str(tsv), "--out", str(records), "--lang", "en"]) == 0
    capsys.readouterr()

    out = tmp_path / "out"
    code, summary = run_cli(
        annotate_args(server, records, out, "--mode", "project", "--target-lang", "de,zh"), capsys
    )
    assert code == 0
    ids = {f"carb-dev-{n:05d}.{lang}" for n in range(1, 5) for lang in ("de", "zh")}
    outcome = check_folder(out, ids)
    by_id = outcome.by_id()
    for n, sentence in enumerate(english, 1):
        for lang in ("de", "zh"):
            record = by_id[f"carb-dev-{n:05d}.{lang}"]
            assert isinstance(record, Record), record
            assert record.sentence.text == TRANSLATIONS[sentence][lang]
            (extraction,) = record.extractions
            words = sentence.rstrip(".").split()
            known = [" ".join(words[:2]), words[2], " ".join(words[3:])]  # the gold triple
            assert [a.text for a in extraction.arguments] == [
                PHRASES[lang][known[0]],
                PHRASES[lang][known[2]],
            ]
            assert extraction.predicate.text == PHRASES[lang][known[1]]
    # the real CaRB sentence has no translation in the responder's table: it stays English
    for lang in ("de", "zh"):
        assert by_id[f"carb-dev-00004.{lang}"].reason is RejectionReason.wrong_language
    assert summary["requests_by_purpose"]["stage1"] == 6  # projections; none for the untranslated one


# -- key hygiene ------------------------------------------------------------------------------


def test_api_key_reaches_the_server_but_nothing_else(tmp_path: Path) -> None:
    secret = "sk-test-0123456789abcdefSECRET"
    env = {**os.environ, "OPENAI_API_KEY": secret, "OPENIE4PP_TEST_KEY": secret}
    rows: list[Any] = [
        *mixed_items(6),
        {"id": "echo", "lang": "en", "text": "The server echoes the key back."},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    server = spawn(
        "--responder", "annotate_responder:respond", "--expected-key-env", "OPENIE4PP_TEST_KEY", env=env
    )
    try:  # a server that quotes the key in an error message, as OpenAI's 401 does in part
        server.set_script(
            [{"match": "echoes the key", "fault": {"status": 400, "message": f"bad key {secret}"}}]
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "openie4pp.app.cli",
                "annotate",
                "--input",
                str(source),
                "--out",
                str(out),
                "--endpoint",
                server.base_url,
                "--model",
                "fake-model",
                "--canaries",
                "0",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        log = server.requests()
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert len(log) == 13 and all(e["auth"] and e["auth_ok"] for e in log)
    outcome = check_folder(out, {r["id"] for r in rows})
    echo = outcome.by_id()["echo"]
    assert echo.reason is RejectionReason.request_failed and "[REDACTED]" in echo.detail

    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {
        "cache.sqlite",
        "manifest.json",
        "stats.json",
        "rejected.jsonl",
        "README.md",
    }
    for path in files:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in done.stdout and secret not in done.stderr
    assert "Bearer" not in (out / "manifest.json").read_text()


def test_bad_options_are_errors_not_hangs(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", mixed_items(2))
    assert main(annotate_args(server, source, tmp_path / "out", "--concurrency", "0")) == 2
    assert "--concurrency 0: must be at least 1" in capsys.readouterr().err
    assert main(annotate_args(server, source, tmp_path / "out", "--shard", "3/3")) == 2
    assert "need 0 <= I < N" in capsys.readouterr().err
    assert main(["annotate", "--input", str(source), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "--endpoint" in capsys.readouterr().err
    assert server.requests() == []
