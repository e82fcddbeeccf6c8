"""The bundled sample corpus (openie4pp/data/sample): shape, languages and gold-triple grounding."""

from __future__ import annotations

import json
import re
from collections import Counter
from functools import cache
from importlib.resources import files
from typing import Any

import pytest

from openie4pp.grounding import Grounded, ground
from openie4pp.schema import Sentence, check_lang

LANGS = ("en", "de", "es", "pt", "zh", "ar")
PER_LANG = 50
PROJECTION_SENTENCES = 60
LANGID_MIN_SHARE = 0.9


@cache
def _load(name: str) -> tuple[dict[str, Any], ...]:
    resource = files("openie4pp") / "data/sample" / name
    lines = resource.read_text(encoding="utf-8").splitlines()
    assert all(line.strip() for line in lines), f"{name} has blank lines"
    return tuple(json.loads(line) for line in lines)


def extract_rows() -> tuple[dict[str, Any], ...]:
    return _load("extract.jsonl")


def projection_rows() -> tuple[dict[str, Any], ...]:
    return _load("project_en.jsonl")


def test_readme_ships_with_the_data() -> None:
    readme = (files("openie4pp") / "data/sample/README.md").read_text(encoding="utf-8")
    assert "Apache-2.0" in readme


def test_extract_counts_per_language() -> None:
    rows = extract_rows()
    assert all(set(row) == {"id", "lang", "text"} for row in rows)
    assert Counter(row["lang"] for row in rows) == dict.fromkeys(LANGS, PER_LANG)


def test_projection_count_and_fields() -> None:
    rows = projection_rows()
    assert len(rows) == PROJECTION_SENTENCES
    assert all(set(row) == {"id", "lang", "text", "triples"} for row in rows)
    assert all(row["lang"] == "en" for row in rows)


def test_ids_are_unique_and_well_formed() -> None:
    ids = [row["id"] for row in extract_rows()] + [row["id"] for row in projection_rows()]
    assert len(ids) == len(set(ids))
    for row in extract_rows():
        assert re.fullmatch(rf"sample-{re.escape(row['lang'])}-\d{{3}}", row["id"]), row["id"]
    for row in projection_rows():
        assert re.fullmatch(r"sample-proj-\d{3}", row["id"]), row["id"]


def test_texts_are_unique_and_tidy() -> None:
    extract_texts = [row["text"] for row in extract_rows()]
    projection_texts = [row["text"] for row in projection_rows()]
    assert len(extract_texts) == len(set(extract_texts))
    assert len(projection_texts) == len(set(projection_texts))
    assert not set(extract_texts) & set(projection_texts), "projection sentences repeat extract ones"
    for text in extract_texts + projection_texts:
        assert text == text.strip() and "  " not in text and "\n" not in text, repr(text)


def test_sentence_lengths() -> None:
    for row in (*extract_rows(), *projection_rows()):
        if row["lang"] == "zh":
            assert 6 <= len(row["text"]) <= 30, row["text"]
        else:
            assert 6 <= len(row["text"].split()) <= 14, row["text"]


@pytest.mark.parametrize("row", [*extract_rows(), *projection_rows()], ids=lambda row: row["id"])
def test_lang_is_valid_and_text_tokenises(row: dict[str, Any]) -> None:
    assert check_lang(row["lang"]) == row["lang"]
    sentence = Sentence.from_text(row["text"], row["lang"])
    assert sentence.tokens


def test_chinese_has_no_ascii_spaces() -> None:
    chinese = [row["text"] for row in extract_rows() if row["lang"] == "zh"]
    assert chinese
    assert not [text for text in chinese if " " in text]


@pytest.mark.parametrize("lang", LANGS)
def test_language_identification_agrees(lang: str) -> None:
    pytest.importorskip("py3langid", reason="py3langid not installed: pip install 'openie4pp[annotate]'")
    from openie4pp.annotate.langid import detect_language

    texts = [row["text"] for row in extract_rows() if row["lang"] == lang]
    if lang == "en":
        texts += [row["text"] for row in projection_rows()]
    misses = [(text, detect_language(text)) for text in texts]
    misses = [(text, found) for text, found in misses if found[0] != lang]
    hits = len(texts) - len(misses)
    assert hits >= LANGID_MIN_SHARE * len(texts), f"{lang}: {hits}/{len(texts)} identified; misses {misses}"


@pytest.mark.parametrize("row", projection_rows(), ids=lambda row: row["id"])
def test_projection_triples_ground(row: dict[str, Any]) -> None:
    text = row["text"]
    triples = row["triples"]
    assert 1 <= len(triples) <= 2
    sentence = Sentence.from_text(text, "en")
    for triple in triples:
        assert len(triple) == 3, triple
        for element in triple:
            assert isinstance(element, str) and element == element.strip() and element, triple
            assert element in text, f"{element!r} is not a substring of {text!r}"
            assert not element.endswith("."), f"{element!r} keeps the full stop"
            grounded = ground(sentence, element)
            assert isinstance(grounded, Grounded), f"{element!r} in {text!r}: {grounded}"
            assert grounded.text == element
