"""SpanOIE ``structured_data.json`` and the OpenIE4++ release files: streaming reads, exact counts of
malformed tuples and sentences, BasicTokenizer positions, the CLI, and export -> convert round trips.

Every input is written here by hand, small enough to count by eye; the expected numbers are literals.
"""

from __future__ import annotations

import io
import json
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from openie4pp import jsonstream
from openie4pp.app.cli import main
from openie4pp.formats import spanoie, spanoie_export
from openie4pp.formats.basic_tokens import basic_tokens
from openie4pp.formats.registry import ConversionStats, convert
from openie4pp.formats.spanoie import TUPLE_REASONS, read_spanoie
from openie4pp.formats.spanoie_export import export_spanoie
from openie4pp.jsonstream import JsonStreamError, iter_json_array
from openie4pp.schema import Argument, Element, Extraction, Provenance, Record, Rejection, Sentence, Source
from openie4pp.shards import ShardWriter, iter_records


def _tuple(arg0: str, a0: list[int], rel: str, r: list[int], *args: tuple[str, list[int]],
           **extra: Any) -> dict[str, Any]:
    return {"arg0": arg0, "relation": rel, "args": [a for a, _ in args], "arg0_pos": a0, "rel_pos": r,
            "args_pos": [p for _, p in args], **extra}


# Element i (0-based) starts on line i + 2 of the file _write_list writes.
LIST_ELEMENTS: list[Any] = [
    {"sentence": "Obama was born in Hawaii .", "tuples": [
        _tuple("Obama", [0, 0], "was born in", [1, 3], ("Hawaii", [4, 4]), score=0.9, context="he said"),
        _tuple("Obama", [0, 0], "was", [-1, -1]),  # SpanOIE's malformed mark
        _tuple("Obama", [0, 0], "is born", [1, 2], ("Hawaii", [4, 4])),  # phrase differs from its words
    ]},
    # \xa0 counts as a space, the double space gives an empty word 2 ("A", "B", "", "C", ".")
    {"sentence": "A\xa0B  C .", "tuples": [_tuple("A B", [0, 1], "C", [2, 3], (".", [4, 4]))]},
    {"sentence": "x y z", "tuples": [
        _tuple("x", [0, 0], "y", [1, 1], ("z", [5, 5])),  # out of range
        _tuple("x", [0, 0], "y", [1, 0]),  # first > last
        {**_tuple("x", [0, 0], "y", [1, 1], ("z", [2, 2])), "args_pos": []},  # args vs args_pos
        "not a tuple",
        _tuple("x", [0, 0], "y", [1, 1], score=7),
    ]},
    5,
    {"tuples": []},
    {"sentence": "a b", "tuples": {"arg0": "a"}},
    {"sentence": " \xa0 ", "tuples": []},
    {"sentence": "Nothing to say .", "tuples": []},
]


def _write_list(path: Path, elements: list[Any]) -> str:
    text = "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in elements) + "\n]\n"
    path.write_text(text, encoding="utf-8")
    return text


def _split(items: list[Record | Rejection]) -> tuple[list[Record], list[Rejection]]:
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Rejection)]


def _summary(rejections: list[Rejection]) -> list[tuple[str, int | None, str | None]]:
    return [(r.reason.value, r.line, r.field) for r in rejections]


def test_list_format_records_and_exact_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "structured_data.json"
    _write_list(path, LIST_ELEMENTS)
    with caplog.at_level(logging.WARNING):
        records, rejections = _split(list(convert("spanoie", path)))
    assert _summary(rejections) == [
        ("span_out_of_range", 2, "tuples[1].rel_pos"),
        ("span_text_mismatch", 2, "tuples[2].relation"),
        ("span_out_of_range", 4, "tuples[0].args_pos[0]"),
        ("span_out_of_range", 4, "tuples[1].rel_pos"),
        ("ungrounded", 4, "tuples[2].args_pos"),
        ("ungrounded", 4, "tuples[3]"),
        ("ungrounded", 4, "tuples[4].score"),
        ("no_extractions", 4, "tuples"),
        ("schema_invalid", 5, None),
        ("schema_invalid", 6, "sentence"),
        ("schema_invalid", 7, "tuples"),
        ("empty_sentence", 8, "sentence"),
    ]
    tuple_level = [r for r in rejections if spanoie.is_tuple_rejection(r)]
    assert all(r.field.startswith("tuples[") for r in tuple_level if r.field)
    assert (len(records), len(tuple_level), len(rejections) - len(tuple_level)) == (3, 7, 5)
    stats = ConversionStats()
    for item in [*records, *rejections]:
        stats.add(item)
    assert sum(n for reason, n in stats.rejections.items() if reason in {r.value for r in TUPLE_REASONS}) == 7
    assert "7 of 9 tuples rejected (tuple-level), 5 sentence-level rejections (8 sentences read)" in (
        caplog.text)

    obama, spaced, empty = records
    assert obama.id == "spanoie-structured-en-00001" and obama.lang == "en"
    assert obama.provenance == Provenance(source=Source.gold, dataset="spanoie-structured")
    assert obama.sentence.tokens == ["Obama", "was", "born", "in", "Hawaii", "."]
    (extraction,) = obama.extractions  # context dropped, score kept
    assert extraction == Extraction(
        predicate=Element(text="was born in", span=(1, 4)),
        arguments=[Argument(text="Obama", span=(0, 1), role="arg0"), Argument(text="Hawaii", span=(4, 5),
                                                                              role="arg1")],
        confidence=0.9,
    )
    assert spaced.sentence.tokens == ["A", "B", "C", "."]  # the empty word is no token
    (extraction,) = spaced.extractions
    assert extraction.arguments[0].text == "A\xa0B" and extraction.arguments[0].span == (0, 2)
    assert (extraction.predicate.text, extraction.predicate.span) == ("C", (2, 3))  # [2, 3] = "" + "C"
    assert empty.extractions == [] and empty.id == "spanoie-structured-en-00008"


def test_list_is_streamed_in_tiny_chunks(tmp_path: Path) -> None:
    path = tmp_path / "structured_data.json"
    _write_list(path, LIST_ELEMENTS)
    whole = [i.model_dump() for i in read_spanoie(path)]
    for chunk_size in (1, 2, 7, 64):
        assert [i.model_dump() for i in read_spanoie(path, chunk_size=chunk_size)] == whole

    # only a window is read ahead; pretty-printed elements keep their start lines
    elements = [{"sentence": f"sentence number {i}", "tuples": [], "n": i * 1000} for i in range(300)]
    text = json.dumps(elements, indent=1)
    handle = io.StringIO(text)
    stream = iter_json_array(handle, chunk_size=16)
    assert next(stream) == (2, elements[0]) and handle.tell() < 200 < len(text)
    starts = [n for n, line in enumerate(text.split("\n"), 1) if line == " {"]
    assert list(stream) == list(zip(starts[1:], elements[1:], strict=True))
    assert list(iter_json_array(io.StringIO("[12345, 678, -1e5, true]"), chunk_size=1)) == [
        (1, 12345), (1, 678), (1, -1e5), (1, True)]  # numbers cut by a chunk end are read whole


def test_truncated_and_malformed_lists(tmp_path: Path) -> None:
    good = json.dumps({"sentence": "a b", "tuples": [_tuple("a", [0, 0], "b", [1, 1])]})
    text = f"[\n{good},\n{good},\n{good}\n]\n"
    cases = {
        "torn.json": (text[: text.rindex('"tuples"') + 4], 2, 4, "the file ends inside this element"),
        "unclosed.json": (text.rstrip()[:-1], 3, 5, "no ']'"),
        # reading resumes after the broken element: only it is lost
        "broken.json": (f'[\n{good},\n{{"sentence": oops}},\n{good}\n]\n', 2, 3,
                        "malformed JSON: Expecting value (line 3, character "),
    }
    for name, (content, n_records, line, detail) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        for chunk_size in (3, 1 << 20):
            records, rejections = _split(list(read_spanoie(tmp_path / name, chunk_size=chunk_size)))
            assert len(records) == n_records, name
            (rejection,) = rejections
            assert (rejection.reason.value, rejection.line) == ("malformed_json", line), name
            assert detail in rejection.detail and rejection.file == str(tmp_path / name)
    assert "; 18 characters skipped up to the next element" in rejection.detail  # {"sentence": oops}
    (tmp_path / "bad.json").write_bytes(b'[{"sentence": "caf\xe9", "tuples": []}]')
    (rejection,) = list(read_spanoie(tmp_path / "bad.json"))
    assert isinstance(rejection, Rejection) and rejection.reason.value == "malformed_text"


def _sentences(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"sentence": f"a{i} b", "tuples": [_tuple(f"a{i}", [0, 0], "b", [1, 1]),
                                                         _tuple(f"a{i}", [0, 0], "b", [1, 1], score=0.5)]})
            for i in range(start, start + n)]


def test_a_bad_byte_rejects_only_its_sentence(tmp_path: Path) -> None:
    good = [e.encode() for e in _sentences(200)]
    bad = b'{"sentence": "caf\xe9 au lait", "tuples": []}'
    path = tmp_path / "structured_data.json"
    path.write_bytes(b"[\n" + b",\n".join([*good[:100], bad, *good[100:]]) + b"\n]\n")
    for chunk_size in (5, 1 << 20):
        records, rejections = _split(list(read_spanoie(path, chunk_size=chunk_size)))
        assert len(records) == 200 and records[100].sentence.text == "a100 b"
        (rejection,) = rejections
        assert (rejection.reason.value, rejection.line, rejection.sentence_id) == (
            "malformed_text", 102, "spanoie-structured-en-00101")
        assert "caf\ufffd au lait" in rejection.input and "not valid UTF-8" in rejection.detail
    # a lone surrogate escape is no text either, in the sentence or in a phrase, in both layouts
    escaped = [{"sentence": "caf\udce9 b", "tuples": []},
               {"sentence": "a b", "tuples": [_tuple("a\ud800", [0, 0], "b", [1, 1])]},
               {"sentence": "a b", "tuples": []}]
    path.write_text("[\n" + ",\n".join(json.dumps(e) for e in escaped) + "\n]\n", encoding="utf-8")
    _write_lines(tmp_path / "OpenIE4_train_de.json", [json.dumps(e) for e in escaped])
    for name in ("structured_data.json", "OpenIE4_train_de.json"):
        records, rejections = _split(list(read_spanoie(tmp_path / name)))
        assert len(records) == 1 and _summary(rejections) == [
            ("malformed_text", 1 + (name[0] == "s"), None), ("malformed_text", 2 + (name[0] == "s"), None)]


def test_a_syntax_error_loses_only_the_broken_span(tmp_path: Path) -> None:
    elements = _sentences(100)
    elements[40] = elements[40].replace('"a40 b"', "a40 b", 1)  # before its tuple objects (no restarts)
    elements[70] = elements[70][:-30]  # torn inside its last tuple
    elements[80], elements[81] = "{oops", elements[81].replace(",", ";", 1)  # two in a row: one span
    elements[90] += " x"  # junk after a good element
    text = "[\n" + ",\n".join(elements) + "\n]\n"
    path = tmp_path / "structured_data.json"
    path.write_text(text, encoding="utf-8")
    for chunk_size in (1, 7, 64, 1 << 20):
        records, rejections = _split(list(read_spanoie(path, chunk_size=chunk_size)))
        assert [r.sentence.text for r in records] == [f"a{i} b" for i in range(100)
                                                      if i not in (40, 70, 80, 81)]
        assert _summary(rejections) == [("malformed_json", n, None) for n in (42, 72, 82, 92)]
        skipped = [len(elements[40]), len(elements[70]), len(elements[80]) + 2 + len(elements[81]), 1]
        assert [f"; {n} characters skipped up to the next element" in r.detail
                for r, n in zip(rejections, skipped, strict=True)] == [True] * 4
        assert "found 'x'" in rejections[3].detail
    # the last element broken, the list closed too early: the rest is still read or one rejection
    for content, n_records, detail in (
            ("[\n" + ",\n".join([*elements[:3], "{oops}"]) + "\n]\n", 3,
             "9 characters skipped to the end"),  # {oops} and the closing "\n]\n"
            ("[\n" + ",\n".join(elements[:2]) + "],\n" + ",\n".join(elements[2:4]) + "\n]\n", 4,
             "unexpected content after the list's ']' (line 3, character "),
            ("[\n" + ",\n".join(elements[:2]) + "\n]\nnot JSON\n", 2, "to the end of the file")):
        path.write_text(content, encoding="utf-8")
        records, (rejection,) = _split(list(read_spanoie(path, chunk_size=5)))
        assert len(records) == n_records and detail in rejection.detail, content


def test_skipping_a_broken_span_holds_only_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    windows: list[int] = []
    real_fill = jsonstream._Scanner.fill

    def fill(self: Any, want: int = 0) -> None:
        real_fill(self, want)
        windows.append(len(self.buf))

    monkeypatch.setattr(jsonstream._Scanner, "fill", fill)
    broken = '{"sentence": oops, "tuples": [' + ", ".join(['{"arg0": "x"}'] * 5000) + "]}"
    text = f'[{{"sentence": "a"}},\n{broken},\n{{"sentence": "b"}}]'
    items = list(iter_json_array(io.StringIO(text), chunk_size=64,
                                 restart=lambda v: isinstance(v, dict) and "sentence" in v))
    assert [v for _, v in items if isinstance(v, dict)] == [{"sentence": "a"}, {"sentence": "b"}]
    (error,) = [v for _, v in items if isinstance(v, JsonStreamError)]
    assert (error.line, f"{len(broken)} characters skipped" in error.detail) == (2, True)
    assert len(text) > 70000 and max(windows) < 300


def test_iter_json_array_with_every_chunk_size() -> None:
    texts = {
        "[1.5, 2]": None, "[12345, 678, -1e5, true]": None,
        "[0, -0.25e-3, 1E+10, 3.0, null, false, -12, 7e-2, 12.5E2]": None,
        '[{"a": [1, {"b": [2.5, -3e2]}], "c": {}}, [], [[]], {"d": "e", "f": [true, null]}]': None,
        r'["tab\t quote\" back\\ slash\/ \b\f\n\r", "\u00e9\u4e2d\ud83d\ude00 \u0041", "\\u", "", "\u20ac,"]':
            None,
        '["plain é 中 😀", "[not, a, list]", "{\\"x\\": 1}"]': None,
        '[\r\n  {"x": 1},\r\n  2.5\r\n,\r\n  "y"\r\n]\r\n': [2, 3, 5],
        '\ufeff[1, {"bom": true}]': None, "[]": None, " [ ] \n": None, "[\n]\n": None, "[-0]": None,
    }
    for text, lines in texts.items():
        expected = json.loads(text.removeprefix("\ufeff"))
        for chunk_size in range(1, 13):
            got = list(iter_json_array(io.StringIO(text), chunk_size=chunk_size))
            assert [v for _, v in got] == expected, (text, chunk_size)
            assert lines is None or [n for n, _ in got] == lines


def _write_lines(path: Path, lines: list[Any], tail: str = "") -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n"
                   for line in lines)
    path.write_text(text + tail, encoding="utf-8")


def test_lines_format_basic_tokenizer_positions(tmp_path: Path) -> None:
    merkel = "Angela Merkel, die Kanzlerin, besuchte Paris."
    tokenized = "Angela Merkel , die Kanzlerin , besuchte Paris ."
    path = tmp_path / "OpenIE4_train_de.json"
    _write_lines(path, [
        {"sentence": merkel, "sentence_tokenized": tokenized, "tuples": [
            _tuple("Angela Merkel", [0, 1], "besuchte", [6, 6], ("Paris", [7, 7]), score=0.6),
            _tuple("Angela Merkel", [0, 1], "besuchte", [6, 6], ("Berlin", [7, 7])),
            _tuple("Angela Merkel", [0, 1], "besuchte", [6, 6], ("Paris", [7, -1])),
        ]},
        {"sentence": merkel, "sentence_tokenized": merkel, "tuples": []},  # not BasicTokenizer's
        "{oops",
        {"sentence": "Ein Satz.", "tuples": "nope"},
    ], tail='{"sentence": "Der letzte')  # torn: no newline
    records, rejections = _split(list(convert("spanoie", path)))
    assert _summary(rejections) == [
        ("span_text_mismatch", 1, "tuples[1].args[0]"),
        ("span_out_of_range", 1, "tuples[2].args_pos[0]"),
        ("schema_invalid", 2, "sentence_tokenized"),
        ("malformed_json", 3, None),
        ("schema_invalid", 4, "tuples"),
        ("malformed_json", 5, None),
    ]
    assert "torn last line" in rejections[-1].detail and "torn" not in rejections[-3].detail
    (record,) = records
    assert record.sentence.tokens == tokenized.split()
    assert record.provenance == Provenance(source=Source.llm, dataset="crossoie-openie4pp", mode="project",
                                           source_lang="en")
    assert (record.lang, record.id) == ("de", "crossoie-openie4pp-de-00001")
    (extraction,) = record.extractions
    assert [(e.text, e.span) for e in (extraction.predicate, *extraction.arguments)] == [
        ("besuchte", (6, 7)), ("Angela Merkel", (0, 2)), ("Paris", (7, 8))]
    assert extraction.confidence == 0.6

    (record,) = [i for i in convert("spanoie", path, lang="pt") if isinstance(i, Record)]
    assert record.lang == "pt"  # --lang wins over the file name
    unnamed = tmp_path / "translated.json"
    unnamed.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (rejection,) = list(convert("spanoie", unnamed))
    assert isinstance(rejection, Rejection) and rejection.reason.value == "unknown_language"


def test_language_only_from_release_file_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sentence = {"sentence": "a b", "tuples": []}
    for name in ("structured_data_new.json", "structured_data_all.json", "train_set.json",
                 "OpenIE4_train_de.json"):  # the list layout is English whatever its name
        _write_list(tmp_path / name, [sentence])
        assert [r.lang for r in convert("spanoie", tmp_path / name)] == ["en"]
    assert [r.lang for r in convert("spanoie", tmp_path / "train_set.json", lang="fr")] == ["fr"]
    lines = tmp_path / "lines"
    lines.mkdir()
    for name, lang in (("OpenIE4_train_de.json", "de"), ("openie4_TRAIN_ZH.JSON", "zh"),
                       ("OpenIE4_train_pt-BR.json", "pt-BR"), ("structured_data_new.json", None),
                       ("train_set.json", None), ("OpenIE4_train_de_new.json", None), ("set.json", None)):
        _write_lines(lines / name, [sentence])
        (item,) = list(convert("spanoie", lines / name))
        if lang:
            assert isinstance(item, Record) and item.lang == lang
        else:
            assert isinstance(item, Rejection) and item.reason.value == "unknown_language", name
            assert "pass --lang" in item.detail and item.field == "lang"
            assert [r.lang for r in convert("spanoie", lines / name, lang="de")] == ["de"]
    argv = ["convert", "--from", "spanoie", str(lines / "train_set.json"), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    assert "unknown_language=1" in capsys.readouterr().out


def test_chinese_line_one_token_per_character(tmp_path: Path) -> None:
    path = tmp_path / "OpenIE4_train_zh.json"
    _write_lines(path, [
        {"sentence": "李白出生于碎叶城，是唐朝诗人。",
         "sentence_tokenized": "李 白 出 生 于 碎 叶 城 ， 是 唐 朝 诗 人 。",
         "tuples": [_tuple("李白", [0, 1], "出生于", [2, 4], ("碎叶城", [5, 7]), score=0.7)]},
        {"sentence": "iPhone在2007年发布。",
         "tuples": [_tuple("iPhone", [0, 0], "发布", [4, 5], ("2007年", [2, 3]))]},
    ])
    records, rejections = _split(list(convert("spanoie", path)))
    assert rejections == []
    poet, phone = records
    assert poet.lang == "zh" and len(poet.sentence.tokens) == 15
    assert [(a.text, a.span) for a in poet.extractions[0].arguments] == [("李白", (0, 2)), ("碎叶城", (5, 8))]
    assert phone.sentence.tokens == ["iPhone", "在", "2007", "年", "发", "布", "。"]
    assert phone.extractions[0].arguments[1].text == "2007年"


def test_basic_tokenize_agrees_with_transformers() -> None:
    transformers = pytest.importorskip("transformers")
    reference = transformers.BasicTokenizer(do_lower_case=False)
    samples = ["Hello, world!", "北京是中国的首都。", "Die U.S.-Armee (1990) kaufte 3,5 Mio. €.",
               "co\u00adop a\u200bb", "x\x00y \ufffdz", "e\u0301t\u00e9 \u2126", "¿Qué? ¡Sí!",
               "tab\tnew\nline\u2028sep\u3000ideo", "مرحبا، بالعالم.", "タワーは高い。", "emoji 😀 ok",
               "a\x0bb\x0cc\x85d", "a\u1fefb", "a=\u0338b x<\u200b\u0338y 1>\u0301\u0338 2",
               "a=\u20d2\u0338b", "a= \u0338b =a\u0338 <\u0338> \u1fef\u0338", "a=\x00\u0338 b"]
    rng = random.Random(4)
    alphabet = "ab ,.\xa0\u200b\u0301中文\t\n'\"-()\x00\ufffd\u2028Å\u2126!?é=<\u0338\u1fef\u20d2"
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24))) for _ in range(400)]
    for sample in samples:
        assert basic_tokens(sample) == reference.tokenize(sample), repr(sample)


def test_basic_tokens_where_nfc_changes_a_class() -> None:
    assert basic_tokens("a\u1fefb") == ["a", "`", "b"]  # GREEK VARIA: "`" after NFC, punctuation
    assert basic_tokens("a=\u0338b x<\u200b\u0338y") == ["a\u2260b", "x\u226ey"]  # ≠ ≮: parts of a word
    assert basic_tokens("1>\u0301\u0338 2") == ["1\u226f\u0301", "2"]  # the overlay is reordered first
    assert basic_tokens("a=\u20d2\u0338b") == ["a", "=", "\u20d2\u0338b"]  # another overlay blocks it
    assert basic_tokens("a= \u0338b") == ["a", "=", "\u0338b"]


def test_cli_convert_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "structured_data.json"
    _write_list(path, LIST_ELEMENTS)
    out = tmp_path / "shards"
    assert main(["convert", "--from", "spanoie", str(path), "--out", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("3 records written (1 without extractions), 2 extractions, 6 grounded / 0 "
                             "ungrounded elements, rejections: empty_sentence=1, no_extractions=1, "
                             "schema_invalid=3, span_out_of_range=3, span_text_mismatch=1, ungrounded=3")
    assert json.loads(lines[1])["records"] == 3
    assert len((out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()) == 12
    assert len(list(iter_records(out))) == 3

    clean = tmp_path / "clean.json"
    _write_list(clean, [{"sentence": "a b", "tuples": [_tuple("a", [0, 0], "b", [1, 1])]}])
    assert main(["convert", "--from", "spanoie", str(clean), "--out", str(tmp_path / "clean")]) == 0
    capsys.readouterr()
    assert main(["convert", "--from", "spanoie", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openie4pp convert: error: ") and "no such file" in err
    assert len(err.splitlines()) == 1


def _span(sentence: Sentence, phrase: str) -> tuple[int, int]:
    n = len(sentence.tokens)
    return next((i, j) for i in range(n) for j in range(i + 1, n + 1) if sentence.span_text(i, j) == phrase)


def _record(text: str, lang: str, triples: list[tuple[str, list[str]]], *, pretokenized: bool = False,
            confidence: float = 1.0, roles: list[str] | None = None) -> Record:
    sentence = Sentence.from_text(text, lang, pretokenized=pretokenized)
    extractions = [Extraction(
        predicate=Element(text=relation, span=_span(sentence, relation)),
        arguments=[Argument(text=a, span=_span(sentence, a), role=(roles or [])[k] if roles else f"arg{k}")
                   for k, a in enumerate(arguments)],
        confidence=confidence) for relation, arguments in triples]
    return Record(sentence=sentence, extractions=extractions, provenance=Provenance(source=Source.llm))


def _key(record: Record) -> tuple[Any, ...]:
    """What an export keeps: text, language, phrases with character extents, roles, confidence."""
    offsets = record.sentence.offsets

    def element(e: Element) -> tuple[str, int, int]:
        assert e.span is not None
        return e.text, offsets[e.span[0]][0], offsets[e.span[1] - 1][1]

    return (record.sentence.text, record.lang, [
        (element(x.predicate), [(a.role, *element(a)) for a in x.arguments], x.confidence)
        for x in record.extractions])


def test_export_then_convert_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fits = {
        "en": [
            _record("Obama was born in Hawaii .", "en", [("was born in", ["Obama", "Hawaii"])],
                    pretokenized=True, confidence=0.75),
            _record("The\xa0cat  sat on the mat", "en", [("sat", ["The\xa0cat", "on", "the mat"])],
                    pretokenized=True),
            _record("Tom sells old books.", "en", [("sells", ["Tom", "old books."])]),  # own tokens split "."
            _record("Nothing happened here .", "en", [], pretokenized=True),
        ],
        "de": [_record("Berlin, die Hauptstadt, wächst schnell.", "de", [("wächst", ["Berlin", "schnell"])],
                       confidence=0.5)],
        "zh": [_record("北京是中国的首都。", "zh", [("是", ["北京", "中国的首都"])])],
    }
    nary_de = _record("Anna gab Tom ein Buch.", "de", [("gab", ["Anna", "Tom", "ein Buch"])])
    skipped = [
        _record("Obama visited Paris.", "en", [("visited", ["Obama", "Paris"])]),  # "Paris" is not "Paris."
        _record("Tom slept in Rome .", "en", [("slept", ["Tom", "in Rome"])], pretokenized=True,
                roles=["arg0", "loc"]),
        _record("Ich schlafe jetzt.", "de", [("schlafe", ["Ich"])]),  # no object
        _record("東京タワーは高い。", "ja", [("は", ["東京タワー", "高い"])]),  # BasicTokenizer: "タワーは"
        Record(sentence=Sentence.from_text("Ann sings .", "en", pretokenized=True), provenance=Provenance(
            source=Source.gold), extractions=[Extraction(predicate=Element(text="sings", span=(1, 2)),
                                                         arguments=[Argument(text="she", role="arg0")])]),
    ]
    shards = tmp_path / "shards"
    with ShardWriter(shards) as writer:
        for record in [*fits["en"], *fits["de"], nary_de, *fits["zh"], *skipped]:
            assert writer.write(record)
    out = tmp_path / "export"
    assert main(["export", "--to", "spanoie", str(shards), str(out)]) == 1
    assert capsys.readouterr().out == (
        f"{shards} -> {out}: 7 records written (OpenIE4_train_de.json 2, OpenIE4_train_zh.json 1, "
        "structured_data.json 4), 5 skipped (no_object=1, off_token_boundaries=1, off_word_boundaries=1, "
        "roles=1, ungrounded=1), 1 n-ary triples cut to their first object; note: provenance is not part of "
        "the SpanOIE formats, reading these files back gives source gold (en) / llm (others)\n")
    assert sorted(p.name for p in out.iterdir()) == ["OpenIE4_train_de.json", "OpenIE4_train_zh.json",
                                                     "structured_data.json"]
    structured = json.loads((out / "structured_data.json").read_text(encoding="utf-8"))
    assert structured[1]["tuples"][0]["rel_pos"] == [3, 3]  # "The", "cat", "", "sat": the empty word counts
    release = [json.loads(line) for line in (out / "OpenIE4_train_de.json").read_text("utf-8").splitlines()]
    assert release[0]["sentence_tokenized"] == "Berlin , die Hauptstadt , wächst schnell ."
    assert release[1]["tuples"][0]["args"] == ["Tom"]  # cut to the first object

    for lang, name in (("en", "structured_data.json"), ("de", "OpenIE4_train_de.json"),
                       ("zh", "OpenIE4_train_zh.json")):
        back, rejections = _split(list(convert("spanoie", out / name)))
        assert rejections == []
        expected = fits[lang] + ([nary_de] if lang == "de" else [])
        assert [_key(r) for r in back[: len(fits[lang])]] == [_key(r) for r in fits[lang]]
        for original, again in zip(fits[lang], back, strict=False):  # tokenised alike: identical spans
            if original.sentence.tokens == again.sentence.tokens:
                assert again.extractions == original.extractions
        assert len(back) == len(expected)
        # provenance is no part of the format: the English silver (llm) records read back as gold
        assert {r.provenance.source for r in back} == {Source.gold if lang == "en" else Source.llm}
        if lang == "en":  # "Tom sells old books.": other tokens ("books." is one word), the same extents
            assert back[2].sentence.tokens == ["Tom", "sells", "old", "books."]
            assert fits["en"][2].sentence.tokens == ["Tom", "sells", "old", "books", "."]

    assert main(["export", "--to", "spanoie", str(shards), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("openie4pp export: error: ") and "--overwrite" in err and len(err.splitlines()) == 1
    (out / "OpenIE4_train_xx.json").write_text("stale\n", encoding="utf-8")
    assert main(["export", "--to", "spanoie", str(shards), str(out), "--overwrite"]) == 1
    assert not (out / "OpenIE4_train_xx.json").exists()  # an earlier export's file this one does not write
    a_file = out / "OpenIE4_train_de.json"
    for argv in (["export", "--to", "spanoie", str(tmp_path / "none"), str(out)],  # no such DIR; OUT a file
                 ["export", "--to", "spanoie", str(shards), str(a_file), "--overwrite"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("openie4pp export: error: ") and len(err.splitlines()) == 1


def test_export_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shards = tmp_path / "shards"
    with ShardWriter(shards) as writer:
        for text in ("A b c .", "D e f ."):
            writer.write(_record(text, "en", [("b" if text[0] == "A" else "e", [text[0], text[4]])],
                                 pretokenized=True))
    real, calls = spanoie_export.entry, []

    def failing(record: Record) -> Any:
        calls.append(record)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(record)

    monkeypatch.setattr(spanoie_export, "entry", failing)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        export_spanoie(shards, out)
    assert list(out.iterdir()) == []  # neither a half-written file nor a temporary one is left
    monkeypatch.setattr(spanoie_export, "entry", real)
    assert export_spanoie(shards, out).written == Counter({"structured_data.json": 2})
