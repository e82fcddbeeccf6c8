"""``openie4pp extract`` on bad input and bad options (issue 10, items 6, 8, 17, the Low sweep).

The model is a stub (no predicate anywhere, so every sentence gives a record without extractions)
behind a real tokenizer: these tests are about reading, writing, streaming and refusing, and take
well under a second each once the tiny tokenizer exists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import torch
else:
    torch = pytest.importorskip("torch")

from helpers import tiny_tokenizer

from openie4pp.app.cli import build_parser, main
from openie4pp.labels import ARG_O, PRED_O, span_tags, tags_to_extraction
from openie4pp.schema import Provenance, Record, Sentence, Source
from openie4pp.train import extract as extract_module
from openie4pp.train.extract import Extractor, read_sentences, write_records


class NoPredicates(torch.nn.Module):
    """Tags every sub-word ``O``; records each batch's width; Ctrl-C at call ``interrupt_at``."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        super().__init__()
        self.config = SimpleNamespace(languages=["en"])
        self.interrupt_at = interrupt_at
        self.widths: list[int] = []

    def predict_predicates(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> Any:
        if self.interrupt_at == len(self.widths) + 1:
            raise KeyboardInterrupt
        self.widths.append(input_ids.shape[1])
        logits = torch.zeros(*input_ids.shape, 3)
        logits[..., PRED_O] = 5.0
        return SimpleNamespace(encoder_states=input_ids, pred_probs=logits.softmax(-1))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder that passes the model-folder check; loading it is stubbed by :func:`stub`."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "multi2oie"}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``Extractor.from_pretrained`` builds a :class:`NoPredicates` extractor; ``state.model`` is the
    last one built, ``state.interrupt_at`` and ``state.window`` configure the next."""
    state = SimpleNamespace(model=None, interrupt_at=None, window=None, loads=0)

    def from_pretrained(path: Any, **kwargs: Any) -> Extractor:
        state.loads += 1
        state.model = NoPredicates(state.interrupt_at)
        extractor = Extractor(state.model, tiny_tokenizer(), **kwargs)
        if state.window is not None:
            extractor.window_batches = state.window
        return extractor

    monkeypatch.setattr(Extractor, "from_pretrained", staticmethod(from_pretrained))
    return state


def run(model: Path, source: Path | str, *extra: str, out: Path | None = None) -> int:
    argv = ["extract", "--model", str(model), "--input", str(source), "--no-progress", *extra]
    return main([*argv, "--out", str(out)] if out else argv)


def texts(path: Path) -> list[str]:
    return [json.loads(line)["sentence"]["text"] for line in path.read_text(encoding="utf-8").splitlines()]


# -- item 6: the format is decided, not guessed ------------------------------------------------


def test_jsonl_with_a_bom_is_read_as_jsonl(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\xef\xbb\xbf" + json.dumps({"text": "The cat sat .", "id": "s1"}).encode() + b"\n")
    (only,) = read_sentences(source)
    assert (only.id, only.text) == ("s1", "The cat sat .")


def test_a_first_line_that_is_no_object_does_not_make_jsonl_text(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace, capsys: Any
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('[1, 2]\n{"text": "The cat sat ."}\n{"text": "A dog ran ."}\n', encoding="utf-8")
    assert run(model_dir, source, out=out) == 0
    assert texts(out) == ["The cat sat .", "A dog ran ."]
    assert f"{source}:1: a JSON list, not an object" in capsys.readouterr().err


def test_bad_jsonl_lines_are_reported_counted_and_skipped(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace, capsys: Any
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        '{"text": "The cat sat ."}',
        '{"text": "torn',
        '{"lang": "en"}',
        '{"text": "Der Hund bellt .", "lang": "no such language"}',
        '{"text": "A dog ran .", "id": 7}',
        '{"text": "A bird sang .", "lang": "EN"}',
    ]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run(model_dir, source, out=out) == 0
    assert texts(out) == ["The cat sat .", "A bird sang ."]
    assert [json.loads(line)["sentence"]["lang"] for line in out.read_text().splitlines()] == ["en", "en"]
    err = capsys.readouterr().err
    assert f"{source}:2: malformed JSON" in err
    assert f"{source}:3: field 'text': missing" in err
    assert f"{source}:4: field 'lang': unknown language code" in err
    assert f"{source}:5: field 'id': must be a non-empty string" in err
    assert "2 sentences" in err and "4 skipped: 4 bad lines" in err
    assert "Traceback" not in err and "error:" not in err


def test_nothing_readable_exits_1_and_writes_nothing(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace, capsys: Any
) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"id": "a"}\nnot json\n', encoding="utf-8")
    assert run(model_dir, source, out=out) == 1
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if "error:" in line] == [
        f"openie4pp extract: error: {source}: 0 sentences read (2 skipped: 2 bad lines); nothing "
        "extracted, no output written"
    ]
    assert not out.exists()


def test_an_empty_input_is_not_ok(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace, capsys: Any
) -> None:
    source = tmp_path / "empty.txt"
    source.write_text("\n  \n", encoding="utf-8")
    assert run(model_dir, source, out=tmp_path / "out.jsonl") == 1
    assert "0 sentences read" in capsys.readouterr().err


def test_input_format_option_reads_any_extension(tmp_path: Path) -> None:
    source = tmp_path / "sentences.dat"
    source.write_text('{"text": "The cat sat ."}\n', encoding="utf-8")
    (only,) = read_sentences(source, input_format="jsonl")
    assert only.text == "The cat sat ."
    (raw,) = read_sentences(source, input_format="txt")
    assert raw.text == '{"text": "The cat sat ."}'


def test_a_shard_folder_with_a_bad_line_is_read_without_it(tmp_path: Path, capsys: Any) -> None:
    from openie4pp.train.extract_io import ReadStats, iter_sentences

    shard = tmp_path / "shards" / "en" / "shard-00000.jsonl"
    shard.parent.mkdir(parents=True)
    record = Record(sentence=Sentence.from_text("The cat sat .", "en"), extractions=[],
                    provenance=Provenance(source=Source.model, model="m"))  # fmt: skip
    shard.write_text(record.model_dump_json() + "\n{oops\n", encoding="utf-8")
    stats, problems = ReadStats(), []
    found = list(iter_sentences(tmp_path / "shards", stats=stats, on_problem=lambda *p: problems.append(p)))
    assert [s.text for s in found] == ["The cat sat ."] and stats.bad_lines == 1
    assert problems[0][0] == f"{shard}:2"


# -- item 17: U+2028, control characters in tab output, streaming --------------------------------


def test_jsonl_with_a_raw_line_separator_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "The cat\u2028sat ."}, ensure_ascii=False) + "\n", encoding="utf-8")
    (only,) = read_sentences(source)
    assert only.text == "The cat\u2028sat ." and only.tokens == ["The", "cat", "sat", "."]


def test_tab_output_turns_control_characters_into_spaces() -> None:
    sentence = Sentence.from_text("Alice\u2028met\tBob\nin\r\nParis\x85 .", "en")
    assert sentence.tokens == ["Alice", "met", "Bob", "in", "Paris", "."]
    arg_tags = [0, ARG_O, 2, 3, 3, ARG_O]  # arg0 = Alice, arg1 = "Bob\nin\r\nParis"
    extraction = tags_to_extraction(sentence, span_tags((1, 2), 6), arg_tags)
    assert extraction is not None
    record = Record(sentence=sentence, extractions=[extraction], provenance=Provenance(source=Source.model))
    from io import StringIO

    out = StringIO()
    assert write_records([record], out, "carb-tab") == 1
    (line,) = out.getvalue().split("\n")[:-1]
    assert out.getvalue().endswith("\n") and "\u2028" not in line and "\r" not in line
    assert line.split("\t") == ["Alice met Bob in  Paris  .", "1.000000", "met", "Alice", "Bob in  Paris"]


def test_output_is_streamed_so_an_interrupt_keeps_finished_batches(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace
) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("".join(f"Sentence number {i} is here .\n" for i in range(10)), encoding="utf-8")
    stub.interrupt_at, stub.window = 3, 1
    assert run(model_dir, source, "--batch-size", "2", out=out) == 130
    assert texts(out) == [f"Sentence number {i} is here ." for i in range(4)]


def test_sorting_by_length_keeps_input_order_across_windows(tmp_path: Path) -> None:
    model = NoPredicates()
    extractor = Extractor(model, tiny_tokenizer(), batch_size=2, window_batches=2)
    sentences = [Sentence.from_text(" ".join(["word"] * n), "en") for n in (1, 5, 2, 9, 3, 7, 4)]
    chunks = list(extractor.stream_records(iter(sentences)))  # a stream, not a list
    assert [r.sentence for chunk in chunks for r in chunk] == sentences
    assert len(model.widths) == 4  # windows of 4 + 3 sentences, 2 per batch
    assert model.widths[:2] == sorted(model.widths[:2], reverse=True)  # longest first within a window


# -- item 8: bounded work per sentence -----------------------------------------------------------


def test_sentences_over_max_chars_are_skipped_with_one_warning(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace, capsys: Any
) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("The cat sat .\n" + "word " * 600 + "\nA dog ran .\n", encoding="utf-8")
    assert run(model_dir, source, out=out) == 0  # default --max-chars 2000
    assert texts(out) == ["The cat sat .", "A dog ran ."]
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and f"{source}:2: sentence of 3000 characters" in err
    assert "1 longer than --max-chars 2000" in err
    assert run(model_dir, source, "--max-chars", "3000", out=out) == 0
    assert len(texts(out)) == 3


def test_sub_words_beyond_max_length_are_truncated() -> None:
    model = NoPredicates()
    extractor = Extractor(model, tiny_tokenizer(), max_length=16)
    sentence = Sentence.from_text(" ".join(["word"] * 300), "en")
    assert extractor.extract([sentence]) == [[]] and model.widths == [16]


# -- the Low sweep: options and paths, all refused before the model is loaded --------------------


def usage_cases(tmp: Path, model: Path) -> list[tuple[list[str], str]]:
    text = tmp / "in.txt"
    text.write_text("The cat sat .\n", encoding="utf-8")
    (tmp / "plain-folder").mkdir()
    (tmp / "in.dat").write_text("The cat sat .\n", encoding="utf-8")
    ok = ["--model", str(model), "--input", str(text)]
    return [
        (["--model", str(tmp / "nowhere"), "--input", str(text)], "openie4pp train"),
        (["--model", str(tmp / "plain-folder"), "--input", str(text)], "not a trained openie4pp model"),
        ([*ok, "--device", "cuda"], "use --device cpu"),
        ([*ok, "--device", "toaster"], "--device"),
        ([*ok, "--max-length", "-3"], "--max-length -3: must be an integer >= 3"),
        ([*ok, "--max-length", "0"], "--max-length 0"),
        ([*ok, "--max-length", "2"], "--max-length 2: must be an integer >= 3"),
        ([*ok, "--batch-size", "0"], "--batch-size 0"),
        ([*ok, "--limit", "-1"], "--limit -1: must be an integer >= 0"),
        ([*ok, "--max-chars", "0"], "--max-chars 0"),
        ([*ok, "--lang", "no such language"], "--lang"),
        (["--model", str(model), "--input", str(tmp / "missing.txt")], "no such file or folder"),
        (["--model", str(model), "--input", str(tmp / "plain-folder")], "not OpenIE4++ shards"),
        (["--model", str(model), "--input", str(tmp / "in.dat")], "--input-format"),
        ([*ok, "--out", str(text / "out.jsonl")], "is a file, not a folder"),
        ([*ok, "--out", str(tmp / "plain-folder")], "is a folder"),
        ([*ok, "--out", str(text)], "is the input file"),
    ]


def test_usage_errors_are_one_line_exit_2_before_loading_the_model(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv, expected in usage_cases(tmp_path, model_dir):
        code = main(["extract", *argv])
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert err.startswith("openie4pp extract: error: ") and err.count("\n") == 1, (argv, err)
        assert expected in err and "Traceback" not in err, (argv, err)
        assert stub.loads == 0, argv
    assert (tmp_path / "in.txt").read_text() == "The cat sat .\n"


def test_a_model_folder_that_does_not_load_is_a_usage_error(
    tmp_path: Path, model_dir: Path, capsys: Any
) -> None:
    source = tmp_path / "in.txt"
    source.write_text("The cat sat .\n", encoding="utf-8")
    assert run(model_dir, source, "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"openie4pp extract: error: --model {model_dir}: cannot load") and err.count("\n") == 1
    )


def test_limit_counts_readable_sentences(tmp_path: Path, model_dir: Path, stub: SimpleNamespace) -> None:
    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("The cat sat .\nA dog ran .\nA bird sang .\n", encoding="utf-8")
    assert run(model_dir, source, "--limit", "2", out=out) == 0
    assert texts(out) == ["The cat sat .", "A dog ran ."]
    assert run(model_dir, source, "--limit", "0", out=out) == 0
    assert out.read_text() == ""


def test_every_extract_option_has_help() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    extract = commands.choices["extract"]
    undocumented = [a.option_strings for a in extract._actions if not a.help]
    assert not undocumented
    assert "--input-format" in extract.format_help() and "by its content" in extract.format_help()


def test_the_modules_keep_their_public_names() -> None:
    from openie4pp.app import extract_command

    for name in ("Extractor", "read_sentences", "write_records", "word_tags"):
        assert hasattr(extract_module, name)
    for name in ("add_arguments", "options_from_args", "main"):
        assert hasattr(extract_command, name)


def test_the_command_line_repeats_the_options_defaults_and_choices() -> None:
    """The parser is built without importing the library (torch, pydantic): its literals must stay
    those of :class:`ExtractOptions` and of the reader."""
    from openie4pp.app import extract_command
    from openie4pp.train.extract_io import INPUT_FORMATS, OUTPUT_FORMATS
    from openie4pp.train.extract_options import ExtractOptions

    assert extract_command.INPUT_FORMATS == INPUT_FORMATS
    assert extract_command.OUTPUT_FORMATS == OUTPUT_FORMATS
    parser = argparse.ArgumentParser()
    extract_command.add_arguments(parser)
    defaults = vars(parser.parse_args(["--model", "m", "--input", "i"]))
    options = extract_command.options_from_args(argparse.Namespace(**defaults))
    built = ExtractOptions(model="m", input="i")
    assert options == built and defaults["no_progress"] is not built.progress


def test_options_name_the_first_bad_one_and_forbid_unknown_ones() -> None:
    from openie4pp.errors import UsageError
    from openie4pp.train.extract_options import ExtractOptions

    with pytest.raises(UsageError, match=r"^--batch-size True: must be an integer >= 1$"):
        ExtractOptions.build(model="m", input="i", batch_size=True)
    with pytest.raises(UsageError, match=r"^--limit many: must be an integer >= 0$"):
        ExtractOptions.build(model="m", input="i", limit="many")
    with pytest.raises(UsageError, match=r"^--pretokenized: Input should be a valid boolean"):
        ExtractOptions.build(model="m", input="i", pretokenized="perhaps")
    with pytest.raises(UsageError, match="--shuffle"):
        ExtractOptions.build(model="m", input="i", shuffle=True)
    assert ExtractOptions.build(model="m", input="i", lang="EN", input_format="shards").lang == "en"
    assert ExtractOptions.build(model="m", input="i", input_format="shards").input_format == "records"


def test_extract_to_file_is_the_library_call(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace
) -> None:
    from openie4pp.app.extract_command import options_from_args
    from openie4pp.train.extract_job import extract_to_file

    source, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    source.write_text("The cat sat .\n" + "word " * 600 + "\nA dog ran .\n", encoding="utf-8")
    args = build_parser().parse_args(["extract", "--model", str(model_dir), "--input", str(source),
                                      "--out", str(out)])
    warnings: list[str] = []
    summary = extract_to_file(options_from_args(args), warn=warnings.append)
    assert (summary.sentences, summary.extractions, summary.skipped, summary.out) == (2, 0, 1, str(out))
    skipped = "1 skipped: 1 longer than --max-chars 2000"
    assert summary.line() == f"2 sentences, 0 extractions -> {out} ({skipped})"
    assert len(warnings) == 1 and warnings[0].startswith(f"{source}:2: sentence of 3000 characters")
    assert texts(out) == ["The cat sat .", "A dog ran ."]


def test_parquet_and_records_inputs_are_read_through_the_shared_reader(
    tmp_path: Path, model_dir: Path, stub: SimpleNamespace
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    table = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": "The cat sat .", "id": "c"}, {"text": ""}]), table)
    from openie4pp.train.extract_io import ReadStats, iter_sentences

    stats, problems = ReadStats(), []
    found = list(iter_sentences(table, stats=stats, on_problem=lambda *p: problems.append(p)))
    assert [(s.id, s.text) for s in found] == [("c", "The cat sat .")]
    assert problems == [(f"{table}:2", "field 'text': empty sentence")]
    out = tmp_path / "out.jsonl"
    assert run(model_dir, table, out=out) == 0
    assert run(model_dir, out, "--input-format", "records", out=tmp_path / "again.jsonl") == 0
    assert texts(tmp_path / "again.jsonl") == ["The cat sat ."]
