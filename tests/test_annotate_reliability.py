"""``openie4pp annotate`` when things go wrong: nothing lost, every failure loud, bounded, recoverable.

Each test reproduces one case of issue 10 (found by trying the command as a demanding user and as an
attacker would). The server is ``tests/fake_openai_server.py`` with the annotation responder; its
request log says how many requests a run paid for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import ALWAYS_UNTRANSLATED, Outcome, annotate_args, write_jsonl
from fake_openai_server import FakeServerProcess

from openie4pp.app.cli import main
from openie4pp.shards import ShardWriter

ROOT = Path(__file__).resolve().parents[1]


def sentences(count: int, start: int = 0) -> list[dict[str, str]]:
    objects = ["old bicycles", "red apples", "short poems", "wooden chairs", "green tea"]
    verbs = ("repairs", "buys", "writes", "paints", "sells")
    return [
        {"id": f"s{i:03d}", "lang": "en", "text": f"Worker{i} {verbs[i % 5]} {objects[i % 5]}."}
        for i in range(start, start + count)
    ]


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def finished_ids(out: Path) -> Counter[str]:
    return Counter(Outcome(out).accounted_ids)


# -- 1. an input inside the output folder --------------------------------------------------------


def test_input_inside_output_folder_is_refused_before_any_request(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, _, _ = run(annotate_args(server, write_jsonl(tmp_path / "in.jsonl", sentences(3)), out), capsys)
    assert code == 0
    server.reset()
    for source in (out, out / "en" / "shard-00000.jsonl"):
        code, _, err = run(
            annotate_args(server, source, out, "--mode", "project", "--target-lang", "de"), capsys
        )
        assert code == 2
        assert "inside the output folder" in one_error_line(err)
    # and the reverse: an output folder inside the input folder
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    write_jsonl(inputs / "a.jsonl", sentences(2))
    code, _, err = run(annotate_args(server, inputs, inputs / "out"), capsys)
    assert code == 2 and "inside the input" in one_error_line(err)
    assert server.requests() == []
    assert len(Outcome(out).records) == 3


# -- 2. --retry-failed only under the writer's lock ----------------------------------------------


def test_retry_failed_does_not_touch_rejected_jsonl_while_another_run_writes(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    source = write_jsonl(tmp_path / "in.jsonl", sentences(4))
    server.set_script([{"match": "Worker1 ", "fault": {"status": 400}}])
    code, _, _ = run(annotate_args(server, source, out), capsys)
    rejected = out / "rejected.jsonl"
    before = rejected.read_bytes()
    assert b"request_failed" in before
    inode = rejected.stat().st_ino
    with ShardWriter(out, resume=True):  # another run is writing to this folder
        code, _, err = run(annotate_args(server, source, out, "--retry-failed"), capsys)
        assert code == 2
        assert "another" in one_error_line(err)
        assert rejected.read_bytes() == before and rejected.stat().st_ino == inode


# -- 3. exit codes and the circuit breaker -------------------------------------------------------


def test_endpoint_down_stops_the_run_quickly_and_leaves_items_unfinished(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    source = write_jsonl(tmp_path / "in.jsonl", sentences(5))
    dead = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    code, _, err = run(annotate_args(dead, source, out, "--breaker-after-s", "2", "--timeout", "2"), capsys)
    assert time.monotonic() - started < 30
    assert code == 1
    line = one_error_line(err)
    assert "endpoint" in line and "rerun" in line
    outcome = Outcome(out)
    assert not outcome.records and not outcome.final  # nothing became request_failed
    assert not (out / "README.md").exists()  # no finished-looking dataset
    # the same command against a live server continues and finishes every item
    code, _, _ = run(annotate_args(server, source, out), capsys)
    assert code == 0
    assert finished_ids(out) == Counter({row["id"]: 1 for row in sentences(5)})


def test_nothing_accepted_exits_1(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # every input line rejected
    source = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "lang": "en", "text": ""}, {"lang": "xx!"}])
    code, out, err = run(annotate_args(server, source, tmp_path / "o1"), capsys)
    assert code == 1 and server.requests() == []
    assert "2 input lines rejected" in out
    assert "no record accepted" in one_error_line(err)
    # every answer invalid
    server.set_script([{"match": "*", "fault": {"truncate": True}}])
    code, out, err = run(
        annotate_args(server, write_jsonl(tmp_path / "in.jsonl", sentences(2)), tmp_path / "o2"), capsys
    )
    assert code == 1 and "no record accepted" in one_error_line(err)
    assert [r.reason.value for r in Outcome(tmp_path / "o2").final] == ["llm_invalid_output"] * 2
    # an empty input
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, out, _ = run(annotate_args(server, empty, tmp_path / "o3"), capsys)
    assert code == 1 and "no input" in out.lower()


# -- 4. invalid answers are not cached -----------------------------------------------------------


def test_invalid_answers_are_not_replayed_from_the_cache(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    server.set_script([{"match": "*", "fault": {"truncate": True}}])
    code, _, _ = run(annotate_args(server, source, out), capsys)
    assert code == 1
    assert {r.reason.value for r in Outcome(out).final} == {"llm_invalid_output"}
    server.set_script([])  # the server is fixed
    server.reset()
    code, _, _ = run(annotate_args(server, source, out, "--retry-failed", "llm_invalid_output"), capsys)
    assert code == 0
    assert len(server.requests()) == 6  # extract + verify per sentence, nothing replayed
    assert len(Outcome(out).records) == 3
    assert finished_ids(out) == Counter({row["id"]: 1 for row in sentences(3)})


def test_retry_failed_takes_reasons_and_refuses_unknown_ones(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        annotate_args(
            server,
            write_jsonl(tmp_path / "in.jsonl", sentences(1)),
            tmp_path / "out",
            "--retry-failed",
            "request_failed,bogus",
        ),
        capsys,
    )
    assert code == 2 and "bogus" in one_error_line(err) and server.requests() == []


# -- 5. configuration faults fail before the first request ---------------------------------------


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--mode", "project", "--target-lang", "../../etc"], "target-lang"),
        (["--mode", "project", "--target-lang", ""], "target-lang"),
        (["--lang", "klingon!"], "--lang"),
        (["--concurrency", "0"], "--concurrency"),
        (["--limit", "-1"], "--limit"),
        (["--max-tokens", "-1"], "--max-tokens"),
        (["--timeout", "0"], "--timeout"),
        (["--price-out", "nan"], "--price-out"),
        (["--price-in", "-1"], "--price-in"),
        (["--max-rpm", "0"], "--max-rpm"),
        (["--max-sentence-chars", "0"], "--max-sentence-chars"),
    ],
)
def test_bad_options_fail_before_the_first_request(
    server: FakeServerProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    words: str,
) -> None:
    out = tmp_path / "out"
    code, _, err = run(
        annotate_args(server, write_jsonl(tmp_path / "in.jsonl", sentences(2)), out, *extra), capsys
    )
    assert code == 2
    assert words in one_error_line(err)
    assert server.requests() == []
    assert not (out / "rejected.jsonl").exists()


def test_project_input_without_triples_is_a_configuration_error(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(3))
    code, _, err = run(
        annotate_args(server, source, tmp_path / "out", "--mode", "project", "--target-lang", "de"), capsys
    )
    assert code == 2 and "triples" in one_error_line(err) and server.requests() == []


def test_url_with_credentials_fails_before_any_item(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.base_url.replace("http://", "http://user:secretpw@")
    out = tmp_path / "out"
    code, _, err = run(annotate_args(url, write_jsonl(tmp_path / "in.jsonl", sentences(2)), out), capsys)
    assert code == 2 and "secretpw" not in err
    one_error_line(err)
    assert not (out / "rejected.jsonl").exists()


def test_a_bug_is_internal_error_and_not_final(
    server: FakeServerProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from openie4pp.annotate import annotator as annotator_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")

    out = tmp_path / "out"
    source = write_jsonl(tmp_path / "in.jsonl", sentences(2))
    with monkeypatch.context() as patch:
        patch.setattr(annotator_module, "ground_candidates", broken)
        code, _, _ = run(annotate_args(server, source, out), capsys)
    assert code == 1
    final = Outcome(out).final
    assert {r.reason.value for r in final} == {"internal_error"}
    assert all("KeyError" in r.detail for r in final)
    # not final: a plain rerun (the bug fixed) annotates them; stage 1 comes from the cache
    server.reset()
    code, _, _ = run(annotate_args(server, source, out), capsys)
    assert code == 0
    assert len(server.requests()) == 2 and all(
        "<candidates>" in r["last_user"] + r["last_user_tail"] for r in server.requests()
    )
    assert len(Outcome(out).records) == 2
    assert finished_ids(out) == Counter({row["id"]: 1 for row in sentences(2)})


def test_deeply_nested_json_answer_is_llm_invalid_output() -> None:
    from openie4pp.annotate.contract import AnswerInvalid, ExtractionAnswer, parse_answer

    with pytest.raises(AnswerInvalid):
        parse_answer("[" * 100_000 + "]" * 100_000, ExtractionAnswer)
    with pytest.raises(AnswerInvalid):
        parse_answer('{"triples": ' + "[" * 100_000 + "]" * 100_000 + "}", ExtractionAnswer)


# -- 7, 8. bad bytes and size limits -------------------------------------------------------------


def test_invalid_utf8_is_rejected_with_its_byte_offset(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    good = json.dumps(sentences(1)[0]).encode()
    source.write_bytes(good + b"\n" + b'{"id": "bad", "lang": "en", "text": "Caf\xe9 sells tea."}\n')
    txt = tmp_path / "in.txt"
    txt.write_bytes(b"Tom sells old books.\nAnna buys \xff\xfe red apples.\n")
    for path, extra in ((source, []), (txt, ["--lang", "en"])):
        out = tmp_path / f"out-{path.suffix}"
        run(annotate_args(server, path, out, *extra), capsys)
        outcome = Outcome(out)
        assert len(outcome.records) == 1
        (bad,) = outcome.inputs
        assert bad.reason.value == "malformed_text" and bad.line == 2
        assert "byte" in bad.detail
        assert "\ufffd" not in "".join(r.sentence.text for r in outcome.records)


def test_long_sentences_are_rejected_and_rejections_stay_small(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    huge = "word " * 400_000  # 2 MB in one line: skipped while reading, never held whole
    rows = [
        *sentences(1),
        {"id": "huge", "lang": "en", "text": huge},
        {"id": "long", "lang": "en", "text": "word " * 1500},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    code, _, _ = run(annotate_args(server, source, out), capsys)
    assert code == 0
    outcome = Outcome(out)
    unread, too_long = sorted(outcome.inputs, key=lambda r: r.line or 0)
    assert (unread.reason.value, unread.line, unread.sentence_id) == ("too_long", 2, None)
    line_bytes = len(source.read_bytes().splitlines(keepends=True)[1])
    assert f"the line has {line_bytes} bytes" in unread.detail
    assert (too_long.reason.value, too_long.line, too_long.sentence_id) == ("too_long", 3, "long")
    assert len(too_long.input) < 3000 and "sha256" in too_long.input
    assert (out / "rejected.jsonl").stat().st_size < 10_000
    assert len(server.requests()) == 2
    # a configurable limit, in characters
    code, _, _ = run(
        annotate_args(
            server,
            write_jsonl(tmp_path / "b.jsonl", sentences(2)),
            tmp_path / "out2",
            "--max-sentence-chars",
            "10",
        ),
        capsys,
    )
    assert code == 1
    assert {r.reason.value for r in Outcome(tmp_path / "out2").inputs} == {"too_long"}


def test_a_huge_answer_is_stored_as_a_prefix_with_length_and_hash(tmp_path: Path) -> None:
    """A (valid-looking) answer whose triple is 1 MB of text: the candidate fails grounding and its
    rejection keeps a prefix, the length and the hash, not the megabyte."""
    import asyncio

    from openie4pp.annotate.inputs import WorkItem
    from openie4pp.annotate.llm import ChatResponse
    from openie4pp.annotate.pipeline import Pipeline, PipelineConfig

    huge = "x" * 1_000_000

    class HugeAnswers:
        model = "stub"

        async def complete(self, request: Any) -> ChatResponse:
            content = json.dumps({"triples": [{"subject": huge, "relation": "sells", "object": "books"}]})
            return ChatResponse(content=content, model="stub", endpoint="stub", prompt_tokens=1,
                                completion_tokens=1)

        async def aclose(self) -> None:
            pass

    out = tmp_path / "out"
    pipeline = Pipeline(HugeAnswers(), out, PipelineConfig(verify=False))  # type: ignore[arg-type]
    item = WorkItem("t", "en", "Tom sells books.")
    asyncio.run(pipeline.run([item]))
    outcome = Outcome(out)
    (candidate,) = outcome.candidates
    assert len(candidate.input) < 3000 and "sha256" in candidate.input and str(len(candidate.input)) != "0"
    assert "characters in all" in candidate.input
    assert (out / "rejected.jsonl").stat().st_size < 10_000
    assert [r.sentence_id for r in outcome.final] == ["t"]


def test_clip_input_keeps_short_text_and_names_long_text() -> None:
    from openie4pp.schema import clip_input

    text = "x" * 1_000_000
    clipped = clip_input(text)
    assert len(clipped) < 3000 and "1000000" in clipped and "sha256" in clipped
    assert clip_input("short") == "short"


def test_an_id_rejected_at_input_is_not_annotated_under_other_limits(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*sentences(1), {"id": "long", "lang": "en", "text": "one two three four five six seven."}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    run(annotate_args(server, source, out, "--max-sentence-words", "5"), capsys)
    assert [r.sentence_id for r in Outcome(out).inputs] == ["long"]
    run(annotate_args(server, source, out), capsys)  # looser limits: the id is finished already
    assert "long" not in Outcome(out).record_ids
    code, _, _ = run(annotate_args(server, source, out, "--retry-failed", "too_long"), capsys)
    assert code == 0
    outcome = Outcome(out)
    assert "long" in outcome.record_ids and not [r for r in outcome.inputs if r.sentence_id == "long"]
    # and the reverse: a tighter limit on a rerun does not reject an id that is in a shard
    run(annotate_args(server, source, out, "--max-sentence-words", "2"), capsys)
    assert not Outcome(out).inputs


def test_lone_surrogates_and_record_inputs_are_checked_at_input(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"id": "ok", "lang": "en", "text": "Tom sells old books."}\n'
                      '{"id": "bad", "lang": "en", "text": "Anna \\ud800 buys apples."}\n', encoding="utf-8")
    out = tmp_path / "out"
    code, _, err = run(annotate_args(server, source, out), capsys)
    assert code == 0 and "Traceback" not in err
    (bad,) = Outcome(out).inputs
    assert (bad.reason.value, bad.field, bad.sentence_id) == ("malformed_text", "text", "bad")
    # records whose language is spelt `EN` go to `en`
    from openie4pp.schema import Record

    gold = tmp_path / "gold.tsv"
    gold.write_text("Tom sells old books .\tsells\tTom\told books\n", encoding="utf-8")
    assert main(["convert", "--from", "carb", str(gold), "--out", str(tmp_path / "gold")]) == 0
    record = Outcome(tmp_path / "gold").records[0]
    upper = json.loads(record.model_dump_json())
    upper["sentence"]["lang"], upper["sentence"]["id"] = "EN", "upper"
    records = write_jsonl(tmp_path / "records.jsonl", [upper])
    assert Record.model_validate(upper).lang == "EN"
    code, _, _ = run(annotate_args(server, records, tmp_path / "out2"), capsys)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out2").iterdir() if p.is_dir()) == ["en"]


# -- 18 and the low sweep: input lines ------------------------------------------------------------


def test_language_tags_are_canonical_and_ids_are_not_coerced(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[Any] = [
        {"id": "a", "lang": "EN", "text": "Tom sells old books."},
        {"id": "b", "lang": "en", "text": "Anna buys red apples."},
        {"id": {"a": 1}, "lang": "en", "text": "Bob writes short poems."},
        {"id": True, "lang": "en", "text": "Eve paints wooden chairs."},
        {"id": "c", "lang": "und", "text": "Sam drinks green tea."},
        {"id": "d", "lang": "i-klingon", "text": "Kim sells old books."},
        {"id": "x-16", "lang": "en", "text": ""},
        {"id": "zw", "lang": "en", "text": "\u200b\u200c\u2060\ufeff "},
        {"id": 7, "lang": "en", "text": "Max repairs old bicycles."},
    ]
    out = tmp_path / "out"
    code, _, _ = run(annotate_args(server, write_jsonl(tmp_path / "in.jsonl", rows), out), capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["en", "tlh"]
    outcome = Outcome(out)
    assert sorted(outcome.record_ids) == ["7", "a", "b", "d"]
    by_line = {r.line: r for r in outcome.inputs}
    assert by_line[3].field == "id" and by_line[4].field == "id"
    assert by_line[5].reason.value == "unknown_language"
    assert by_line[7].reason.value == "empty_sentence" and by_line[7].sentence_id == "x-16"
    assert by_line[8].reason.value == "empty_sentence" and by_line[8].sentence_id == "zw"


def test_wrong_language_translation_is_a_stage1_rejection(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {
            "id": "w",
            "lang": "en",
            "text": ALWAYS_UNTRANSLATED,
            "triples": [["The weather", "is", "very nice today"]],
        }
    ]
    out = tmp_path / "out"
    run(
        annotate_args(
            server, write_jsonl(tmp_path / "in.jsonl", rows), out, "--mode", "project", "--target-lang", "de"
        ),
        capsys,
    )
    (rejection,) = Outcome(out).final
    assert rejection.reason.value == "wrong_language" and rejection.stage == "stage1"


# -- the low sweep: folders, caches, locks --------------------------------------------------------


def test_bad_output_and_cache_paths_are_one_line(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", sentences(1))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    not_db = tmp_path / "cache.sqlite"
    not_db.write_text("this is not a database" * 100)
    cases = [
        annotate_args(server, source, a_file),
        annotate_args(server, source, a_file / "sub"),
        annotate_args(server, source, tmp_path / "o", "--cache", str(not_db)),
        annotate_args(server, tmp_path / "missing.jsonl", tmp_path / "o2"),
        annotate_args(server, source, tmp_path / "o3", "--input-format", "txt"),  # txt needs --lang
    ]
    for args in cases:
        code, _, err = run(args, capsys)
        assert code == 2, args
        one_error_line(err)
    assert server.requests() == []
    out = tmp_path / "locked"
    with ShardWriter(out, resume=True):
        code, _, err = run(annotate_args(server, source, out), capsys)
        assert code == 2 and "another" in one_error_line(err)


def test_local_endpoint_without_the_extra_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_llama(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("llama_cpp"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_llama)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if "llama" in name else object())
    source = write_jsonl(tmp_path / "in.jsonl", sentences(1))
    code, _, err = run(
        [
            "annotate",
            "--input",
            str(source),
            "--out",
            str(tmp_path / "o"),
            "--endpoint",
            "local",
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2 and "openie4pp[local]" in one_error_line(err)


def test_a_failed_run_leaves_no_finished_looking_dataset(
    server: FakeServerProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    from openie4pp import shards

    real_append = shards._append
    calls = {"n": 0}

    def disk_full(fd: int, data: bytes, size_before: int) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(fd, data, size_before)

    out = tmp_path / "out"
    source = write_jsonl(tmp_path / "in.jsonl", sentences(8))
    with monkeypatch.context() as patch:
        patch.setattr(shards, "_append", disk_full)
        code, _, err = run(annotate_args(server, source, out, "--concurrency", "2"), capsys)
    assert code == 1
    assert "No space left" in one_error_line(err)
    assert not (out / "README.md").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False
    # the disk has room again: the same command finishes, every id exactly once
    code, _, _ = run(annotate_args(server, source, out), capsys)
    assert code == 0
    assert finished_ids(out) == Counter({row["id"]: 1 for row in sentences(8)})
    assert json.loads((out / "manifest.json").read_text())["complete"] is True


def test_summary_counts_input_rejections_and_names_retryable_items(
    server: FakeServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[Any] = [*sentences(3), {"id": "e", "lang": "en", "text": ""}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    server.set_script([{"match": "Worker1 ", "fault": {"status": 400}}])
    code, stdout, _ = run(annotate_args(server, source, out), capsys)
    assert code == 0
    assert "1 input lines rejected" in stdout and "--retry-failed" in stdout
    code, stdout, _ = run(annotate_args(server, source, out), capsys)  # a plain rerun says so too
    assert "1 items wait for --retry-failed" in stdout


# -- signals: SIGTERM and SIGINT end cleanly, resumable --------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_exit_130_and_the_rerun_finishes(
    server: FakeServerProcess, tmp_path: Path, sig: signal.Signals
) -> None:
    count = 40
    source = write_jsonl(tmp_path / "in.jsonl", sentences(count))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "openie4pp.app.cli",
        *annotate_args(server, source, out, "--concurrency", "4"),
    ]
    server.set_script([], latency_ms=100)
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sum(p.read_bytes().count(b"\n") for p in out.glob("*/shard-*.jsonl")) < 5:
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    child.send_signal(sig)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not (out / "README.md").exists()
    done = Outcome(out)
    assert 5 <= len(done.records) < count and not done.final
    server.set_script([], latency_ms=0)
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert finished_ids(out) == Counter({row["id"]: 1 for row in sentences(count)})
    assert os.path.exists(out / "README.md")
