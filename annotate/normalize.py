"""Clean an LLM-proposed phrase before grounding, per language.

Models decorate what they copy: they wrap it in quotes (of their own language's style), carry
the sentence's final full stop along, append notes such as ``(translation)``, put spaces
between Chinese characters, or switch to full-width digits. MT4CrossOIE post-processed its
answers the same way before its substring check. Each rule here only *removes decoration*; it
never invents text, and rules that could remove real content (quotes, brackets, spaces) only
apply when the decorated form is absent from the sentence. Whatever is left is matched by
:mod:`openie4pp.grounding`, which also tolerates case, quote-style and spacing differences, so
these rules can stay simple.
"""

from __future__ import annotations

import functools
import re

from openie4pp.text import CJK_CHARACTERS, CJK_PUNCTUATION_MARKS, is_no_space_script, primary_subtag

__all__ = ["normalize_phrase"]

# Opening quote -> the closing quotes that may end it (models mix styles: „...“, „...”, «...»).
_QUOTE_PAIRS: dict[str, str] = {
    '"': '"“”',
    "'": "'’",
    "“": '”“"',
    "”": "”",
    "„": '“”"',
    "‚": "‘’'",
    "‘": "’'",
    "«": "»",
    "»": "«",
    "‹": "›",
    "›": "‹",
    "「": "」",
    "『": "』",
    "《": "》",
    "〈": "〉",
    "〝": "〞〟",
    "`": "`'",
}
# Final punctuation a model carries along from the end of the sentence or a clause.
_TRAILING = ".。!！?？,，;；:：、…،؛؟"
_LEADING = ",，;；:：、،؛¿¡"
_ABBREVIATION = re.compile(r"(?:\b\w\.){2,}$")  # U.S. / e.g. keep their final full stop
_BRACKETED = re.compile(r"\s*[\(\[（【][^\(\)\[\]（）【】]*[\)\]）】]")
_CJK = CJK_CHARACTERS + CJK_PUNCTUATION_MARKS
_SPACE_IN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_BIDI_CONTROLS = "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_NO_SPACE_LANGS = {"zh", "ja", "th", "lo", "km", "my", "yue", "wuu"}


def normalize_phrase(phrase: str, lang: str, sentence_text: str) -> str:
    """``phrase`` without the decoration a model added, for grounding in ``sentence_text``.

    ``lang`` is a BCP-47 tag (``zh-Hans`` counts as ``zh``); it decides whether spaces between
    CJK characters are decoration. The result may be empty (a phrase that was only a quote or
    a note); the caller rejects it as an empty phrase.
    """
    text = _strip_bidi(phrase, sentence_text)
    text = " ".join(text.split())
    previous = None
    while text != previous:  # "„Berlin“." needs the full stop stripped before the quotes
        previous = text
        text = _strip_notes(text, sentence_text)
        text = _strip_quotes(text, sentence_text)
        text = _strip_punctuation(text)
    if _no_space_lang(lang) or is_no_space_script(sentence_text):
        text = _join_cjk(text, sentence_text)
    return _half_width_like(text, sentence_text)


@functools.lru_cache(maxsize=1024)
def _no_space_lang(lang: str) -> bool:
    """Whether the language of ``lang`` (any BCP-47 spelling) is written without spaces; per tag,
    once (a run has a handful), not three times per triple."""
    return primary_subtag(lang) in _NO_SPACE_LANGS


_ANY_BIDI = re.compile(f"[{_BIDI_CONTROLS}]")


def _strip_bidi(text: str, sentence: str) -> str:
    """Directional marks are invisible; a model may add them around Arabic text."""
    if _ANY_BIDI.search(text) is None:  # the usual case: nothing to look at character by character
        return text
    return "".join(ch for ch in text if ch not in _BIDI_CONTROLS or ch in sentence)


def _strip_notes(text: str, sentence: str) -> str:
    """Drop ``(translation)``, ``[note]``, ``（注）`` groups that the sentence does not contain."""

    def drop(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0).strip() in sentence else ""

    stripped = _BRACKETED.sub(drop, text).strip()
    return stripped if stripped else text.strip()


def _strip_quotes(text: str, sentence: str) -> str:
    """Remove a wrapping quote (or bracket) pair unless the wrapped form is itself in the
    sentence; else a lone quote at either end unless the phrase with it is in the sentence."""
    if len(text) >= 2 and text not in sentence:
        closers = _QUOTE_PAIRS.get(text[0], "") or _BRACKET_PAIRS.get(text[0], "")
        if closers and text[-1] in closers:
            return text[1:-1].strip()
    if text and text[0] in _QUOTE_PAIRS and text not in sentence and _unpaired(text, text[0]):
        return text[1:].strip()
    if text and text[-1] in _CLOSERS and text not in sentence and _unpaired(text, text[-1]):
        return text[:-1].strip()
    return text


_CLOSERS = set("".join(_QUOTE_PAIRS.values()))
_BRACKET_PAIRS = {"(": ")", "[": "]", "（": "）", "【": "】"}


def _unpaired(text: str, quote: str) -> bool:
    """True if ``quote`` occurs once in ``text`` (a quote in the middle pairs with it: keep it)."""
    if quote in "\"'`":
        return text.count(quote) == 1
    partners = {quote, *_QUOTE_PAIRS.get(quote, "")}
    partners |= {opener for opener, closers in _QUOTE_PAIRS.items() if quote in closers}
    return sum(text.count(ch) for ch in partners) == 1


def _strip_punctuation(text: str) -> str:
    """Trailing and leading clause punctuation, except the full stop of an abbreviation (U.S.)."""
    while text and text[-1] in _TRAILING:
        if text[-1] == "." and _ABBREVIATION.search(text):
            break
        text = text[:-1].rstrip()
    while text and text[0] in _LEADING:
        text = text[1:].lstrip()
    return text


def _join_cjk(text: str, sentence: str) -> str:
    """Remove spaces between CJK characters, unless the sentence itself spaces them (BenchIE's
    Chinese sentences have a space between every character)."""
    if _SPACE_IN_CJK.search(sentence):
        return text
    return _SPACE_IN_CJK.sub("", text)


_WIDE = re.compile("[\uff01-\uff5e\u3000]")
"""The characters :func:`_half_width_like` may replace."""


def _half_width_like(text: str, sentence: str) -> str:
    """Full-width ASCII forms (``２０２０``, ``ＡＢＣ``) become half-width where the sentence has the
    half-width character and not the full-width one; full-width punctuation in a Chinese sentence
    (``，``) therefore stays as it is."""
    if _WIDE.search(text) is None:  # the usual case: no such character, nothing to look at
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            half = chr(code - 0xFEE0)
            if ch not in sentence and half in sentence:
                ch = half
        elif ch == "\u3000" and "\u3000" not in sentence:
            ch = " "
        out.append(ch)
    return "".join(out)
