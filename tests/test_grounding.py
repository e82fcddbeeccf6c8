"""Span grounding in en/de/es/pt/zh/ar, its match kinds, failures and tie rule."""

from __future__ import annotations

import pytest

from openie4pp.grounding import Grounded, GroundingFailure, NotGrounded, SentenceIndex, ground
from openie4pp.schema import Sentence
from openie4pp.text import normalize, tokenize


def grounded(sentence: Sentence, phrase: str, **kw: int) -> Grounded:
    result = ground(sentence, phrase, **kw)
    assert isinstance(result, Grounded), result
    assert result.text == sentence.span_text(result.start, result.end)
    return result


EN = Sentence.from_text(
    "A Democrat , he became the youngest mayor in Pittsburgh 's history in September 2006 .",
    "en",
    pretokenized=True,
)


def test_exact_match_in_pretokenised_english() -> None:
    result = grounded(EN, "the youngest mayor")
    assert (result.span, result.match, result.candidates) == ((5, 8), "exact", 1)
    assert (result.char_start, result.char_end) == (23, 41)


def test_spacing_and_case_insensitive_match() -> None:
    result = grounded(EN, "pittsburgh's history")
    assert (result.span, result.match, result.text) == ((9, 12), "spacing", "Pittsburgh 's history")
    assert grounded(EN, "THE  Youngest\tmayor").match == "normalized"


def test_repeats_resolve_leftmost_or_nearest() -> None:
    assert grounded(EN, "in").span == (8, 9)
    assert grounded(EN, "in").candidates == 2
    assert grounded(EN, "in", near=13).span == (12, 13)
    assert grounded(EN, "in", near=10).span == (8, 9)  # tie at distance 2 goes left


@pytest.mark.parametrize(
    ("phrase", "reason"),
    [
        ("", GroundingFailure.empty_phrase),
        ("  ", GroundingFailure.empty_phrase),
        ("mayor of Boston", GroundingFailure.not_found),
        ("Pitts", GroundingFailure.partial_token),
        ("emocrat", GroundingFailure.partial_token),
    ],
)
def test_failures_are_typed(phrase: str, reason: GroundingFailure) -> None:
    result = ground(EN, phrase)
    assert isinstance(result, NotGrounded) and not result
    assert result.reason is reason


def test_german_raw_text_with_quotes_and_punctuation() -> None:
    de = Sentence.from_text("Er wurde „Gründungsrichter“ des obersten Gerichts von Australien.", "de")
    assert de.tokens[-2:] == ["Australien", "."]
    assert grounded(de, '"Gründungsrichter"').text == "„Gründungsrichter“"
    assert grounded(de, "obersten gerichts").match == "normalized"
    assert grounded(de, "von Australien.").text == "von Australien."


def test_spanish_and_portuguese_accents_are_significant() -> None:
    es = Sentence.from_text("El Sr. Stoll sospecha que el intruso era uno de esos estudiantes.", "es")
    assert grounded(es, "el intruso").span == (6, 8)  # "Sr." is two tokens
    assert isinstance(ground(es, "el intrusó"), NotGrounded)
    pt = Sentence.from_text("Poucas pessoas no negócio de publicidade têm levantado tantas dúvidas.", "pt")
    assert grounded(pt, "NEGÓCIO de publicidade").text == "negócio de publicidade"


def test_chinese_is_grounded_by_character_with_or_without_spaces() -> None:
    zh = Sentence.from_text("他曾担任澳大利亚第一任总理，并成为澳大利亚高等法院的创始法官。", "zh")
    assert zh.tokens[:4] == ["他", "曾", "担", "任"]
    first = grounded(zh, "澳大利亚")
    assert (first.span, first.match, first.candidates) == ((4, 8), "exact", 2)
    assert grounded(zh, "澳 大 利 亚", near=18).span == (17, 21)
    assert grounded(zh, "第一任总理，").text == "第一任总理，"
    assert grounded(zh, "第一任总理,").match in ("normalized", "spacing")  # full-width comma folded
    spaced = Sentence.from_text("他 曾 担 任 澳 大 利 亚 第 一 任 总 理 。", "zh", pretokenized=True)
    assert grounded(spaced, "澳大利亚").text == "澳 大 利 亚"
    assert isinstance(ground(zh, "新西兰"), NotGrounded)


def test_arabic_words_and_diacritics() -> None:
    ar = Sentence.from_text("ولد محمد في القاهرة عام 1990.", "ar")
    assert ar.tokens == ["ولد", "محمد", "في", "القاهرة", "عام", "1990", "."]
    assert grounded(ar, "في القاهرة").span == (2, 4)
    assert grounded(ar, "مُحَمَّد").text == "محمد"  # harakat ignored
    assert isinstance(ground(ar, "في الإسكندرية"), NotGrounded)


def test_full_width_forms_fold_to_ascii() -> None:
    ja = Sentence.from_text("ＡＢＣ社は２０２０年に設立された。", "ja")
    assert grounded(ja, "ABC社").text == "ＡＢＣ社"
    assert normalize("Ｈｅｌｌｏ，　“World”") == 'hello, "world"'


def tokenize_words(text: str) -> list[str]:
    return [text[start:end] for start, end in tokenize(text)]


def test_tokeniser_keeps_numbers_and_hyphenated_words() -> None:
    assert tokenize_words("It cost $4.25 (about 1,000 yen) in mid-March, didn't it?") == [
        "It",
        "cost",
        "$",
        "4.25",
        "(",
        "about",
        "1,000",
        "yen",
        ")",
        "in",
        "mid-March",
        ",",
        "didn't",
        "it",
        "?",
    ]
    assert tokenize_words("用Python写的3个程序") == ["用", "Python", "写", "的", "3", "个", "程", "序"]


def test_index_is_reusable_and_consistent_with_ground() -> None:
    index = SentenceIndex(EN)
    for phrase in ("he", "became", "September 2006", "history in"):
        assert index.ground(phrase) == ground(EN, phrase)
