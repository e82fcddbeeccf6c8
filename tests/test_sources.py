"""The one input reader (:mod:`openie4pp.sources`): every format, located problems, streaming.

What these pin: each format yields the rows its consumers map (text lines, JSON objects, records,
table rows, benchmark gold), every bad line comes back as a problem with file, line, field and
reason instead of an exception, a configuration mistake is refused on the call (before any row),
and reading is a stream (a line appended after the first row was pulled is still read).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from openie4pp.errors import UsageError
from openie4pp.schema import Provenance, Record, RejectionReason, Sentence, Source
from openie4pp.sources import (
    Location,
    MappingRow,
    RecordRow,
    SourceProblem,
    TextRow,
    detect_format,
    read_source,
    resolve_format,
)


def record(text: str, lang: str = "en") -> Record:
    return Record(sentence=Sentence.from_text(text, lang), extractions=[],
                  provenance=Provenance(source=Source.model, model="m"))


def shard_folder(root: Path, lines: list[str], lang: str = "en") -> Path:
    shard = root / lang / "shard-00000.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return shard


def test_text_lines_carry_their_line_numbers_and_bad_bytes_are_located(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(b"\xef\xbb\xbfThe cat sat .\n\n  \nAnna buys \xff apples .\r\nA dog ran .")
    rows = list(read_source(source))
    assert rows[0] == TextRow("The cat sat .", Location(str(source), 1))  # the BOM is no text
    assert isinstance(rows[1], SourceProblem) and rows[1].reason is RejectionReason.malformed_text
    assert rows[1].where.line == 4 and "byte 10" in rows[1].detail and "\ufffd" in rows[1].raw
    assert rows[2] == TextRow("A dog ran .", Location(str(source), 5))
    assert str(rows[2].where) == f"{source}:5"


def test_json_lines_become_mappings_records_or_located_problems(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    good = record("The cat sat .")
    bad_record = json.loads(good.model_dump_json())
    bad_record["sentence"]["lang"] = 7
    lines = [
        '{"text": "A dog ran .", "id": "d1"}',
        good.model_dump_json(),
        '{"text": "torn',
        "[1, 2]",
        '{"id": "s", "text": "Anna \\ud800 buys apples ."}',
        json.dumps(bad_record),
        json.dumps({"text": "The cat\u2028sat ."}, ensure_ascii=False),  # U+2028 ends no JSON line
    ]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping, rec, torn, listed, surrogate, invalid, separator = read_source(source)
    assert isinstance(mapping, MappingRow) and mapping.data == {"text": "A dog ran .", "id": "d1"}
    assert mapping.raw == lines[0] and mapping.where == Location(str(source), 1)
    assert isinstance(rec, RecordRow) and rec.record == good and rec.where.line == 2
    assert isinstance(torn, SourceProblem) and torn.reason is RejectionReason.malformed_json
    assert torn.message().startswith("malformed JSON") and torn.raw == lines[2] and torn.where.line == 3
    assert isinstance(listed, SourceProblem) and "a JSON list, not an object" in listed.detail
    assert isinstance(surrogate, SourceProblem) and surrogate.reason is RejectionReason.malformed_text
    assert surrogate.field == "text" and "lone surrogate (\\ud800)" in surrogate.detail
    assert surrogate.data["id"] == "s"  # a consumer can still name the line by its id
    assert isinstance(invalid, SourceProblem) and invalid.field == "sentence.lang" and invalid.where.line == 6
    assert invalid.message().startswith("field 'sentence.lang': ")
    assert isinstance(separator, MappingRow) and separator.data["text"] == "The cat\u2028sat ."


def test_a_line_over_the_byte_limit_is_skipped_unread(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "' + "word " * 10_000 + '"}\n{"text": "short"}\n', encoding="utf-8")
    long, short = read_source(source, max_line_bytes=1000)
    assert isinstance(long, SourceProblem) and long.reason is RejectionReason.too_long
    assert long.raw == "<not read>" and "over the limit of 1000" in long.detail and long.where.line == 1
    assert isinstance(short, MappingRow) and short.data == {"text": "short"}


def test_a_shard_folder_gives_each_record_its_file_and_line(tmp_path: Path) -> None:
    shard = shard_folder(tmp_path / "shards", [record("The cat sat .").model_dump_json(), "{oops",
                                               record("A dog ran .").model_dump_json()])
    first, broken, last = read_source(tmp_path / "shards")
    assert isinstance(first, RecordRow) and first.where == Location(str(shard), 1)
    assert isinstance(broken, SourceProblem) and str(broken.where) == f"{shard}:2"
    assert broken.reason is RejectionReason.malformed_json
    assert isinstance(last, RecordRow) and last.record.sentence.text == "A dog ran ." and last.where.line == 3
    # one JSONL file of records reads as records too
    assert [type(r) for r in read_source(shard, "records")] == [RecordRow, SourceProblem, RecordRow]


def test_parquet_rows_are_numbered(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    source = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "The cat sat .", "lang": "en"},
                                         {"text": "Der Hund bellt .", "lang": "de"}]), source)
    rows = list(read_source(source))
    assert [r.where for r in rows] == [Location(str(source), 1), Location(str(source), 2)]
    assert isinstance(rows[1], MappingRow) and rows[1].data["lang"] == "de"
    assert json.loads(rows[1].raw_text()) == {"text": "Der Hund bellt .", "lang": "de"}


def test_a_local_dataset_is_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "dataset"
    folder.mkdir()
    lines = '{"text": "The cat sat ."}\n{"text": "A dog ran ."}\n'
    (folder / "train.jsonl").write_text(lines, encoding="utf-8")
    rows = list(read_source(f"hf:{folder}"))
    assert [(r.data["text"], r.where.line) for r in rows if isinstance(r, MappingRow)] == [
        ("The cat sat .", 1), ("A dog ran .", 2)]
    assert rows[0].where.source == f"hf:{folder}"


def test_a_benchmark_name_reads_its_gold_records() -> None:
    from openie4pp.benchmarks import get

    try:
        gold = get("carb-dev").gold_path()
    except UsageError:
        pytest.skip("no benchmark data")
    if not gold.is_file():
        pytest.skip("no CaRB gold")
    assert detect_format("carb-dev") == "benchmark"
    rows = read_source("carb-dev")
    first = next(rows)
    assert isinstance(first, RecordRow) and first.where == Location("carb-dev", 1)
    assert first.record.sentence.id == "carb-dev-00001" and first.record.extractions
    assert sum(1 for _ in rows) + 1 == 641


def test_benchmarks_read_here_and_by_training_are_the_same_records() -> None:
    """One reading of a benchmark: ``extract --input NAME`` and ``data.train=[NAME]`` give the same
    records, ids included (so their outputs join by sentence id), and a paused reader leaves the
    converters' logger as it found it."""
    import itertools
    import logging

    from openie4pp.benchmarks import get
    from openie4pp.train.sources import load_records

    try:
        present = get("oie2016-dev").gold_path().is_file()
    except UsageError:
        present = False
    if not present:
        pytest.skip("no OIE2016 gold")
    notes = logging.getLogger("openie4pp.formats")
    before = notes.level
    for name in ("oie2016-dev", "re-oie2016-es"):
        rows = read_source(name)
        here = [row.record for row in itertools.islice(rows, 5) if isinstance(row, RecordRow)]
        assert notes.level == before  # the generator is paused here
        trained = list(load_records([{"benchmark": name, "limit": 5}]))
        assert [r.model_dump() for r in here] == [r.model_dump() for r in trained]
        rows.close()
    assert here[0].sentence.id.startswith("re-oie2016")


def test_records_files_need_no_particular_suffix(tmp_path: Path) -> None:
    record = Record(sentence=Sentence.from_text("The cat sat .", "en", id="s1"), extractions=[],
                    provenance=Provenance(source=Source.gold))
    for name in ("train.ndjson", "train.json", "train"):
        path = tmp_path / name
        path.write_text(record.model_dump_json() + "\n", encoding="utf-8")
        rows = list(read_source(path, "records"))
        assert [r.record.sentence.id for r in rows if isinstance(r, RecordRow)] == ["s1"]


def test_a_damaged_parquet_file_is_one_input_error(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    from openie4pp.errors import InputFileError

    path = tmp_path / "in.parquet"
    path.write_text("not parquet\n")
    with pytest.raises(InputFileError, match="not a readable Parquet file") as info:
        list(read_source(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_pipe_is_read_as_json_lines(tmp_path: Path) -> None:
    import os

    pipe = tmp_path / "fifo"
    os.mkfifo(pipe)
    assert detect_format(pipe) == "jsonl"


def test_reading_is_a_stream(tmp_path: Path) -> None:
    source = tmp_path / "in.txt"
    source.write_text("first\n", encoding="utf-8")
    rows = read_source(source)
    assert next(rows) == TextRow("first", Location(str(source), 1))
    with source.open("a", encoding="utf-8") as handle:  # written after the first row was read
        handle.write("second\n")
    assert [r.text for r in rows if isinstance(r, TextRow)] == ["second"]


def test_auto_decides_by_what_the_input_is(tmp_path: Path) -> None:
    (tmp_path / "a.dat").write_text("x\n")
    (tmp_path / "folder").mkdir()
    assert detect_format("hf:user/data:test") == "hf"
    assert detect_format(tmp_path / "folder") == "records"
    suffixes = (".txt", ".JSONL", ".ndjson", ".json", ".parquet")
    detected = [detect_format(tmp_path / f"a{s}") for s in suffixes]
    assert detected == ["txt", "jsonl", "jsonl", "jsonl", "parquet"]
    with pytest.raises(UsageError, match="--input-format"):
        detect_format(tmp_path / "a.dat")
    with pytest.raises(UsageError, match="no such file or folder and not a benchmark name"):
        detect_format(tmp_path / "missing")
    assert resolve_format(tmp_path / "a.dat", "txt") == "txt"


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("missing.jsonl", "auto", "no such file or folder"),
        ("in.txt", "xml", "--input-format 'xml': expected one of auto, txt"),
        ("folder", "auto", "not OpenIE4++ shards"),
        ("folder", "txt", "is a folder, not a txt file"),
        ("in.txt", "benchmark", "not a benchmark name"),
        ("hf:", "hf", "expected hf:NAME_OR_PATH"),
    ],
)
def test_configuration_mistakes_are_refused_on_the_call(
    tmp_path: Path, name: str, fmt: str, expected: str
) -> None:
    (tmp_path / "in.txt").write_text("The cat sat .\n")
    (tmp_path / "folder").mkdir()
    source = name if name.startswith("hf:") else tmp_path / name
    with pytest.raises(UsageError, match=re.escape(expected)) as info:
        read_source(source, fmt)  # not iterated: the mistake is found before the first row
    assert "\n" not in str(info.value)


def test_a_missing_benchmark_gold_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "carb").mkdir()
    monkeypatch.setenv("OPENIE4PP_BENCHMARKS", str(tmp_path))
    with pytest.raises(UsageError, match="OPENIE4PP_BENCHMARKS"):
        read_source("carb-test")


def test_the_reader_is_base_layer() -> None:
    """``openie4pp.sources`` must not reach into the annotator, the trainer or the application."""
    import ast

    import openie4pp.sources as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    layers_above = (["openie4pp", "annotate"], ["openie4pp", "train"], ["openie4pp", "app"])
    assert not {m for m in imported if m.split(".")[:2] in layers_above}


# -- the registry's other readers ------------------------------------------------------------------


def test_eval_refuses_a_benchmark_without_a_scorer(tmp_path: Path) -> None:
    from openie4pp.benchmarks import names
    from openie4pp.eval.run import evaluate

    predictions = tmp_path / "pred.jsonl"
    predictions.write_text(record("The cat sat .").model_dump_json() + "\n", encoding="utf-8")
    assert "oie2016-dev" not in names(scorable=True)
    with pytest.raises(UsageError, match="oie2016-dev: has no scorer") as info:
        evaluate("oie2016-dev", predictions)
    assert "carb-test" in str(info.value)
    with pytest.raises(UsageError, match="unknown benchmark 'carb-x'"):
        evaluate("carb-x", predictions)


def test_canary_sources_are_the_registry_canaries() -> None:
    from openie4pp.annotate.canaries import CANARY_SOURCES
    from openie4pp.benchmarks import canary_for

    assert set(CANARY_SOURCES) == {"en", "de", "zh", "es", "pt"}
    for lang, source in CANARY_SOURCES.items():
        benchmark = canary_for(lang)
        assert benchmark is not None and source.benchmark == benchmark.name
        assert (source.english, source.pretokenized) == (benchmark.parallel, benchmark.pretokenized)
