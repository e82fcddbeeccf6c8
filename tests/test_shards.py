"""ShardWriter / iter_records: round trip, rotation, dedup, manifest, torn lines and a real SIGKILL."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from helpers import make_record

from openie4pp import shards
from openie4pp.jsonl import InvalidRecordError, TornLineWarning, iter_jsonl_lines
from openie4pp.schema import (
    SCHEMA_VERSION,
    Record,
    Rejection,
    RejectionReason,
)
from openie4pp.shards import (
    RejectionWriter,
    ShardCorruptError,
    ShardWriter,
    iter_records,
    scrub_config,
)


def line_bytes(record: Record) -> int:
    return len(record.model_dump_json().encode()) + 1


def read_all(path: Path) -> list[Record]:
    items = list(iter_records(path))
    assert all(isinstance(item, Record) for item in items), [i for i in items if not isinstance(i, Record)]
    return [item for item in items if isinstance(item, Record)]


def test_round_trip_all_languages_in_order(tmp_path: Path) -> None:
    written = [make_record(i, "zh-Hans") for i in range(3)] + [make_record(i) for i in range(4)]
    with ShardWriter(tmp_path / "out") as writer:
        assert all(writer.write(r) for r in written)
    back = read_all(tmp_path / "out")
    assert back == written[3:] + written[:3]  # languages in sorted order, records in write order
    assert read_all(tmp_path / "out" / "zh-Hans" / "shard-00000.jsonl") == written[:3]


def test_rotation_by_record_count(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_records=3, durable=True) as writer:  # durable: fsync at rotation/close
        for i in range(7):
            writer.write(make_record(i))
    files = sorted((tmp_path / "en").iterdir())
    assert [f.name for f in files] == ["shard-00000.jsonl", "shard-00001.jsonl", "shard-00002.jsonl"]
    assert [len(f.read_bytes().splitlines()) for f in files] == [3, 3, 1]


def test_rotation_by_bytes_and_oversized_records(tmp_path: Path) -> None:
    size = line_bytes(make_record(0))  # every en record of this template has the same size for i < 10
    with ShardWriter(tmp_path / "a", max_bytes=2 * size + 1) as writer:
        for i in range(5):
            writer.write(make_record(i))
    sizes = [f.stat().st_size for f in sorted((tmp_path / "a" / "en").iterdir())]
    assert sizes == [2 * size, 2 * size, size]
    with ShardWriter(tmp_path / "b", max_bytes=10) as writer:  # each record exceeds the cap: one per shard
        for i in range(3):
            writer.write(make_record(i))
    assert len(list((tmp_path / "b" / "en").iterdir())) == 3
    with pytest.raises(ValueError):
        ShardWriter(tmp_path / "c", max_records=0)


def test_dedup_in_run_and_across_resume(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        assert writer.write(make_record(1)) is True
        assert writer.write(make_record(1)) is False
        assert make_record(1).id in writer and len(writer) == 1
    with ShardWriter(tmp_path, resume=True) as writer:
        assert writer.write(make_record(1)) is False
        assert writer.write(make_record(2)) is True
    assert [r.id for r in read_all(tmp_path)] == [make_record(1).id, make_record(2).id]


def test_manifest_counts_checksums_and_scrubbed_config(tmp_path: Path) -> None:
    config = {"model": "gpt-x", "max_tokens": 512, "api_key": "abc",
              "endpoint": {"hf_token": "t", "url": "u"}, "extra": ["sk-ABCDEFGHIJKLMNOP", 1]}
    with ShardWriter(tmp_path, max_records=2, build_config=config) as writer:
        for i in range(3):
            writer.write(make_record(i))
        writer.write(make_record(0, "zh-Hans"))
        rejection = Rejection(stage="stage1", reason=RejectionReason.llm_invalid_output, detail="x",
                              input="y", sentence_id="s1")
        assert writer.reject(rejection) is True
        assert writer.reject(rejection) is False  # identical rejection written once
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION == "1.2" and manifest["created"].endswith("Z")
    assert manifest["records"] == 4 and manifest["extractions"] == 4
    assert manifest["languages"] == {"en": {"records": 3, "extractions": 3, "shards": 2},
                                     "zh-Hans": {"records": 1, "extractions": 1, "shards": 1}}
    assert [s["path"] for s in manifest["shards"]] == [
        "en/shard-00000.jsonl", "en/shard-00001.jsonl", "zh-Hans/shard-00000.jsonl"]
    for shard in manifest["shards"]:
        data = (tmp_path / shard["path"]).read_bytes()
        assert shard["sha256"] == hashlib.sha256(data).hexdigest()
        assert shard["bytes"] == len(data) and shard["records"] == data.count(b"\n")
    assert manifest["rejected"] == {"path": "rejected.jsonl", "records": 1}
    assert manifest["build_config"] == {"model": "gpt-x", "max_tokens": 512, "endpoint": {"url": "u"},
                                        "extra": [1]}
    left = sorted(p.name for p in tmp_path.iterdir())  # no lock file, no temp files
    assert left == ["README.md", "en", "manifest.json", "rejected.jsonl", "zh-Hans"]
    # Resuming removes the manifest until close, keeps `created`, and re-hashes the appended shard.
    with ShardWriter(tmp_path, resume=True, max_records=2) as writer:
        assert not (tmp_path / "manifest.json").exists()
        assert not (tmp_path / "README.md").exists()  # the card, too, says "finished"
        assert set(writer.rejections.final_reasons) == {"s1"}
        writer.write(make_record(3))
    again = json.loads((tmp_path / "manifest.json").read_text())
    assert again["created"] == manifest["created"] and again["build_config"] == manifest["build_config"]
    last = again["shards"][1]
    assert last["records"] == 2
    assert last["sha256"] == hashlib.sha256((tmp_path / last["path"]).read_bytes()).hexdigest()


def test_scrub_config() -> None:
    config = {"max_tokens": 1, "token_budget": 2, "OPENAI_API_KEY": "x", "apiKey": "x", "password": "x",
              "base_url": "https://user:pw@host/v1", "nested": [{"secret": 1, "keep": (1, 2)}],
              "path": Path("p")}
    assert scrub_config(config) == {"max_tokens": 1, "nested": [{"keep": [1, 2]}], "path": "p"}


def test_refuses_existing_shards_without_resume_and_a_second_writer(tmp_path: Path) -> None:
    with ShardWriter(tmp_path) as writer:
        writer.write(make_record(0))
    with pytest.raises(FileExistsError):
        ShardWriter(tmp_path)
    first = ShardWriter(tmp_path, resume=True)
    with pytest.raises(RuntimeError, match="another process is writing"):
        ShardWriter(tmp_path, resume=True)
    first.close()
    ShardWriter(tmp_path, resume=True, durable=True).close()  # the lock is released by close


def test_iter_jsonl_lines_numbers_blank_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n  \n{"b": "\xe2\x80\xa8"}\n{"c": 3}')  # U+2028 is not a line break
    assert list(iter_jsonl_lines(path)) == [(1, b'{"a": 1}'), (4, b'{"b": "\xe2\x80\xa8"}'), (5, b'{"c": 3}')]


def test_bad_lines_become_rejections_with_file_line_field_reason(tmp_path: Path) -> None:
    good = make_record(0)
    bad_role = good.model_dump(mode="json")
    bad_role["extractions"][0]["arguments"][1]["role"] = "obj"
    out_of_range = good.model_dump(mode="json")
    out_of_range["extractions"][0]["predicate"]["span"] = [1, 9]
    mismatch = good.model_dump(mode="json")
    mismatch["extractions"][0]["arguments"][0]["text"] = "Bob"
    newer = good.model_dump(mode="json") | {"schema_version": "2.0"}
    two_problems = good.model_dump(mode="json")
    two_problems["extractions"][0]["arguments"][0]["span"] = [0, 2]  # "Alice0 visited" != "Alice0"
    two_problems["extractions"][0]["arguments"][1]["span"] = [2, 7]
    lines = [good.model_dump_json(), "{not json", json.dumps(bad_role), json.dumps(out_of_range),
             json.dumps(mismatch), json.dumps(newer), json.dumps(two_problems)]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    items = list(iter_records(path))
    assert items[0] == good
    problems = [(i.line, i.reason.value, i.field) for i in items[1:] if isinstance(i, Rejection)]
    assert problems == [
        (2, "malformed_json", None),
        (3, "schema_invalid", "extractions[0].arguments[1].role"),
        (4, "span_out_of_range", "extractions[0].predicate.span"),
        (5, "span_text_mismatch", "extractions[0].arguments[0].text"),
        (6, "schema_version", "schema_version"),
        (7, "span_text_mismatch", "extractions[0].arguments[0].text"),
    ]
    assert isinstance(items[-1], Rejection) and items[-1].detail.endswith("(and 1 more problem)")
    assert all(isinstance(i, Rejection) and i.file == str(path) and i.input for i in items[1:])
    with pytest.raises(InvalidRecordError, match=r"mixed\.jsonl:2"):
        list(iter_records(path, strict=True))


def test_torn_last_line_by_hand(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, max_records=2) as writer:
        for i in range(3):
            writer.write(make_record(i))
    last = tmp_path / "en" / "shard-00001.jsonl"
    intact = last.read_bytes()
    with last.open("ab") as handle:
        handle.write(make_record(7).model_dump_json().encode()[:60])
    with pytest.warns(TornLineWarning, match=r"shard-00001\.jsonl:2"):
        assert [r.id for r in read_all(tmp_path)] == [make_record(i).id for i in range(3)]
    with pytest.warns(TornLineWarning, match=r"shard-00001\.jsonl:2: truncated"):
        writer = ShardWriter(tmp_path, resume=True, max_records=2)
    assert last.read_bytes() == intact
    assert writer.write(make_record(7)) is True
    writer.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r.id for r in read_all(tmp_path)] == [make_record(i).id for i in (0, 1, 2, 7)]


def test_unterminated_but_complete_last_line_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "en" / "shard-00000.jsonl"
    path.parent.mkdir()
    path.write_bytes(make_record(0).model_dump_json().encode())  # no newline, yet a whole record
    assert [r.id for r in read_all(tmp_path)] == [make_record(0).id]
    with ShardWriter(tmp_path, resume=True) as writer:
        assert writer.write(make_record(0)) is False
        assert writer.write(make_record(1)) is True
    assert path.read_bytes().count(b"\n") == 2 and len(read_all(tmp_path)) == 2


def test_corruption_before_the_last_line_is_not_repaired(tmp_path: Path) -> None:
    path = tmp_path / "en" / "shard-00000.jsonl"
    path.parent.mkdir()
    path.write_text("{broken\n" + make_record(0).model_dump_json() + "\n", encoding="utf-8")
    with pytest.raises(ShardCorruptError, match=r"shard-00000\.jsonl:1"):
        ShardWriter(tmp_path, resume=True)


def test_failed_write_leaves_no_fragment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    with ShardWriter(tmp_path) as writer:
        writer.write(make_record(0))
        monkeypatch.setattr(shards.os, "write", half_then_enospc)
        with pytest.raises(OSError):
            writer.write(make_record(1))
        monkeypatch.setattr(shards.os, "write", real_write)
        assert writer.write(make_record(1)) is True
    assert [r.id for r in read_all(tmp_path)] == [make_record(0).id, make_record(1).id]


def test_rejection_writer_resume(tmp_path: Path) -> None:
    path = tmp_path / "rejected.jsonl"
    path.write_text("{}\n")
    with pytest.raises(FileExistsError):
        RejectionWriter(path)
    old = Rejection(stage="input", reason=RejectionReason.empty_sentence, detail="", input="", line=3)
    path.write_text(old.model_dump_json() + "\n" + '{"stage": "in')
    with pytest.warns(TornLineWarning):
        writer = RejectionWriter(path, resume=True)
    assert writer.count == 1
    writer.write(Rejection(stage="input", reason=RejectionReason.empty_sentence, detail="", input="", line=4))
    writer.close()
    assert len(path.read_text().splitlines()) == 2


# The child writes records forever (well, N) and prints each id once `write` has returned.
_CHILD = """
import sys, time
from helpers import make_record
from openie4pp.shards import ShardWriter
writer = ShardWriter(sys.argv[1], max_records=5, resume=True)
for i in range(int(sys.argv[2])):
    record = make_record(i, "en" if i % 3 else "zh-Hans")
    if writer.write(record):
        print(record.id, flush=True)
    time.sleep(0.005)
writer.close()
"""


def test_sigkill_mid_run_then_resume(tmp_path: Path) -> None:
    out, total, kill_after = tmp_path / "out", 200, 25
    python_path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": python_path}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(out), str(total)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None and child.stderr is not None
    committed: list[str] = []
    while len(committed) < kill_after:
        line = child.stdout.readline()
        assert line, f"child ended early: {child.stderr.read()}"
        committed.append(line.strip())
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    committed += child.stdout.read().split()  # ids printed before the kill landed are committed too
    child.stderr.close()
    child.stdout.close()
    assert child.returncode == -signal.SIGKILL and len(committed) < total
    assert not (out / "manifest.json").exists()

    # The kill may or may not have hit mid-line; make sure there is a torn line to survive.
    with (out / "en" / max(p.name for p in (out / "en").iterdir())).open("ab") as handle:
        handle.write(make_record(10_000).model_dump_json().encode()[:77])
    with pytest.warns(TornLineWarning):
        ids = [r.id for r in read_all(out)]
    assert len(ids) == len(set(ids)) and set(committed) <= set(ids)

    everything = [make_record(i, "en" if i % 3 else "zh-Hans") for i in range(total)]
    with pytest.warns(TornLineWarning), ShardWriter(out, max_records=5, resume=True) as writer:
        added = sum(writer.write(r) for r in everything)
    assert added == total - len(ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        final = Counter(r.id for r in read_all(out))
    assert final == Counter(r.id for r in everything)
    assert json.loads((out / "manifest.json").read_text())["records"] == total


# -- incomplete runs and the rejection writer's rewrite (issue 10) -----------------------------


def _rejection(sentence_id: str | None, reason: RejectionReason, field: str | None = None,
               stage: str = "stage2") -> Rejection:
    return Rejection(stage=stage, reason=reason, detail="d", input="i",  # type: ignore[arg-type]
                     sentence_id=sentence_id, field=field)


def test_an_interrupted_writer_leaves_an_incomplete_manifest_and_no_card(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), ShardWriter(tmp_path) as writer:
        writer.write(make_record(0))
        raise KeyboardInterrupt
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["records"] == 1
    assert not (tmp_path / "README.md").exists()
    with ShardWriter(tmp_path, resume=True) as writer:  # the rerun completes it
        assert len(writer) > 0
    assert json.loads((tmp_path / "manifest.json").read_text())["complete"] is True
    assert (tmp_path / "README.md").exists()


def test_a_manifest_that_cannot_be_written_keeps_the_first_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = ShardWriter(tmp_path)
    writer.write(make_record(0))
    monkeypatch.setattr(writer, "_write_atomically", disk_full)
    with pytest.raises(ValueError, match="the original"), writer:
        raise ValueError("the original")
    ShardWriter(tmp_path, resume=True).close()  # the lock was released all the same
    writer = ShardWriter(tmp_path, resume=True)
    monkeypatch.setattr(writer, "_write_atomically", disk_full)
    with pytest.raises(OSError, match="No space"), writer:
        pass  # no error of its own: the manifest's is the one to report


def test_forget_drops_only_the_asked_sentence_level_lines_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "rejected.jsonl"
    writer = RejectionWriter(path)
    kept = [
        _rejection("a", RejectionReason.ungrounded, field="candidates[0]"),
        _rejection("a", RejectionReason.ungrounded),
        _rejection("b", RejectionReason.llm_rejected),
        _rejection(None, RejectionReason.malformed_json, stage="input"),
    ]
    forgotten = [_rejection(i, RejectionReason.request_failed) for i in ("c", "d")]
    for rejection in [*kept[:2], forgotten[0], *kept[2:], forgotten[1]]:
        writer.write(rejection)
    assert writer.final_reasons == {"a": "ungrounded", "b": "llm_rejected", "c": "request_failed",
                                    "d": "request_failed"}
    inode = path.stat().st_ino
    assert writer.forget({"wrong_language"}) == {}  # nothing to drop: the file is not rewritten
    assert path.stat().st_ino == inode
    assert writer.forget({"request_failed"}) == {"request_failed": 2}
    assert path.read_text() == "".join(r.model_dump_json() + "\n" for r in kept)
    assert writer.final_reasons == {"a": "ungrounded", "b": "llm_rejected"}
    assert writer.write(forgotten[0]) is True  # forgotten lines may be written again
    writer.close()
    assert not list(tmp_path.glob(".*.tmp"))


def test_internal_errors_and_duplicates_finish_nothing(tmp_path: Path) -> None:
    from openie4pp.rejections import is_final_rejection

    assert not is_final_rejection(_rejection("a", RejectionReason.internal_error))
    assert not is_final_rejection(_rejection("a", RejectionReason.duplicate, stage="input"))
    assert not is_final_rejection(_rejection("a", RejectionReason.ungrounded, field="candidates[1]"))
    assert not is_final_rejection(_rejection(None, RejectionReason.malformed_json, stage="input"))
    assert is_final_rejection(_rejection("a", RejectionReason.too_long, stage="input"))
    assert is_final_rejection(json.loads(_rejection("a", RejectionReason.ungrounded).model_dump_json()))
