"""Per-language phrase normalisation before grounding, and the translation language check."""

from __future__ import annotations

import pytest

from openie4pp.annotate.langid import UNDETERMINED, detect_language, is_language
from openie4pp.annotate.normalize import normalize_phrase
from openie4pp.grounding import Grounded, ground
from openie4pp.schema import Sentence

CASES = [
    # (lang, sentence, phrase as proposed, expected)
    ("en", "Marie Curie won the Nobel Prize in 1903.", '"the Nobel Prize."', "the Nobel Prize"),
    ("en", "Marie Curie won the Nobel Prize in 1903.", "  the   Nobel\tPrize ", "the Nobel Prize"),
    ("en", "He moved to the U.S.", "the U.S.", "the U.S."),
    ("en", "Shakespeare wrote Hamlet.", "Hamlet (play)", "Hamlet"),
    ("en", "Shakespeare wrote Hamlet.", "Hamlet [note: a tragedy]", "Hamlet"),
    ("en", "Paris (France) is large.", "Paris (France)", "Paris (France)"),
    ("en", "It was founded in 1990.", "(1990)", "1990"),
    ("en", "He wrote Hamlet.", "Hamlet”", "Hamlet"),
    (
        "en",
        "A Democrat , he became mayor in Pittsburgh 's history .",
        "Pittsburgh 's history .",
        "Pittsburgh 's history",
    ),
    ("de", "Goethe schrieb den Faust.", "„den Faust“.", "den Faust"),
    ("de", "Goethe schrieb „Faust“.", "„Faust“", "„Faust“"),
    ("de", "Das Modell wurde 2010 vorgestellt.", "»vorgestellt«", "vorgestellt"),
    ("de", "Er wohnt in Berlin.", "Berlin (Hauptstadt)", "Berlin"),
    ("zh", "鲁迅于1881年出生在浙江绍兴。", "浙江 绍兴。", "浙江绍兴"),
    ("zh-Hans", "鲁迅于1881年出生在浙江绍兴。", "「浙江绍兴」", "浙江绍兴"),
    ("zh", "鲁迅于1881年出生在浙江绍兴。", "于１８８１年", "于1881年"),
    ("zh", "鲁迅于1881年出生在浙江绍兴。", "浙江绍兴（Zhejiang Shaoxing）", "浙江绍兴"),
    ("zh", "他 曾 担 任 澳 大 利 亚 第 一 任 总 理 。", "澳 大 利 亚", "澳 大 利 亚"),
    ("zh", "他读了《红楼梦》，很喜欢。", "《红楼梦》，", "《红楼梦》"),
    ("zh", "他说：“好”，然后走了。", "“好”，", "“好”"),
    ("es", "¿Dónde nació García Márquez?", "¿Dónde nació", "Dónde nació"),
    ("es", "Gabriel García Márquez nació en Aracataca.", "«Aracataca».", "Aracataca"),
    ("es", "Nació en Aracataca.", "nació en (was born in)", "nació en"),
    ("pt", "Ele mudou-se para São Paulo.", "“São Paulo”.", "São Paulo"),
    ("pt", "Ele mudou-se para São Paulo.", "«mudou-se»", "mudou-se"),
    ("ar", "ولد نجيب محفوظ في القاهرة، مصر.", "القاهرة،", "القاهرة"),
    ("ar", "ولد نجيب محفوظ في القاهرة.", "\u200fالقاهرة.\u200f", "القاهرة"),
    ("ar", "هل ولد في القاهرة؟", "«في القاهرة؟»", "في القاهرة"),
    ("en", "x", '"', ""),
]


@pytest.mark.parametrize(("lang", "sentence", "phrase", "expected"), CASES)
def test_normalize_phrase(lang: str, sentence: str, phrase: str, expected: str) -> None:
    assert normalize_phrase(phrase, lang, sentence) == expected


@pytest.mark.parametrize(("lang", "sentence", "phrase", "expected"), [c for c in CASES if c[3]])
def test_normalised_phrases_ground(lang: str, sentence: str, phrase: str, expected: str) -> None:
    pretokenized = " ," in sentence or " 。" in sentence
    parsed = Sentence.from_text(sentence, lang.split("-")[0], pretokenized=pretokenized)
    assert isinstance(ground(parsed, normalize_phrase(phrase, lang, sentence)), Grounded)


CLEAR = {
    "en": "The company was founded in 1998 by two students at Stanford University.",
    "de": "Das Unternehmen wurde 1998 von zwei Studenten der Stanford University gegründet.",
    "es": "La empresa fue fundada en 1998 por dos estudiantes de la Universidad de Stanford.",
    "pt": "A empresa foi fundada em 1998 por dois estudantes da Universidade de Stanford.",
    "zh": "该公司由斯坦福大学的两名学生于1998年创立。",
    "ar": "تأسست الشركة عام 1998 على يد طالبين في جامعة ستانفورد.",
}


@pytest.mark.parametrize("lang", sorted(CLEAR))
def test_detect_clear_sentences(lang: str) -> None:
    code, probability = detect_language(CLEAR[lang])
    assert code == lang and probability > 0.5
    assert is_language(CLEAR[lang], lang)
    assert is_language(CLEAR[lang], {"zh": "zh-Hans", "pt": "pt-BR"}.get(lang, lang))
    for other in CLEAR:
        if other != lang:
            assert not is_language(CLEAR[lang], other), (lang, other)


@pytest.mark.parametrize("text", ["Obama", "1998", "12,000 (2001)", "2020年", "OK.", "", "   "])
def test_short_text_is_undetermined_and_passes(text: str) -> None:
    assert detect_language(text) == (UNDETERMINED, 0.0)
    assert is_language(text, "de") and is_language(text, "zh")


def test_untranslated_english_is_caught() -> None:
    tokenised = "A Democrat , he became the youngest mayor in Pittsburgh 's history in September 2006 ."
    assert is_language(tokenised, "en")
    assert not any(is_language(tokenised, lang) for lang in ("de", "es", "pt", "zh", "ar"))


def test_names_and_relatives_do_not_cause_rejections() -> None:
    assert is_language("Google wurde von Larry Page und Sergey Brin gegründet.", "de")
    assert is_language("Gabriel García Márquez nació en Aracataca en 1927.", "es")
    assert is_language("他 曾 担 任 澳 大 利 亚 第 一 任 总 理 。", "zh")
    assert not is_language("L'entreprise a été fondée en 1998 par deux étudiants.", "es")
    assert not is_language("公司は1998年に二人の学生によって設立された。", "zh")
