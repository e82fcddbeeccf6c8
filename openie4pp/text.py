"""Tokenisation and normalisation shared by grounding, labels, converters and the annotator.

Two tokenisers, both returning character offsets so that every token is exactly a slice
of the original text:

* ``pretokenized=True`` splits on whitespace only. Benchmarks (CaRB, Re-OIE2016, OIE2016,
  BenchIE) ship space-tokenised sentences whose indices count these tokens.
* otherwise a script-aware word tokeniser: CJK ideographs, kana and other scripts written
  without spaces become one token per character (Multi2OIE for Chinese labels characters);
  Latin, Cyrillic, Greek, Arabic, Hebrew, Hangul... become words, with numbers kept whole
  (``3.5``, ``1,000``) and every other punctuation mark its own token.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

CJK_CHARACTERS = (
    "\u2e80-\u2fdf"  # CJK radicals
    "\u3005-\u3007\u3021-\u3029"  # ideographic iteration marks and numerals
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u312f\u31a0-\u31bf\u31f0-\u31ff"  # bopomofo, katakana extension
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs
    "\U00020000-\U0003134f"  # CJK extensions B-G
)
"""Han, kana and bopomofo, as the body of a regex character class (``rf"[{CJK_CHARACTERS}]"``)."""
CJK_PUNCTUATION = "\u3000-\u303f\uff00-\uffef"
"""CJK symbols and punctuation, half- and full-width forms: written without spaces beside CJK text."""
CJK_PUNCTUATION_MARKS = "\u3000-\u3003\u300c-\u3011\uff01-\uff0f\uff1a-\uff20"
"""The punctuation marks of :data:`CJK_PUNCTUATION` (ideographic space, comma, full stop, quotes,
brackets, full-width ASCII marks), without its full-width digits and letters or 《》〈〉: a space
next to those is a word boundary a sentence may keep, so the annotator's phrase normaliser does not
join across them."""
SOUTHEAST_ASIAN_SCRIPTS = "\u0e00-\u0e7f\u0e80-\u0eff\u1000-\u109f\u1780-\u17ff"
"""Thai, Lao, Myanmar and Khmer: also written without spaces between words."""
HANGUL_SYLLABLES = "\uac00-\ud7af"
"""Korean is spaced, but like Han each syllable carries more than a letter (language identification)."""
NO_SPACE_SCRIPTS = CJK_CHARACTERS + SOUTHEAST_ASIAN_SCRIPTS
"""Scripts written without spaces between words: the tokeniser makes one token per character."""

_LETTERS = rf"(?:(?![{NO_SPACE_SCRIPTS}])[^\W_])+"  # letters/digits of a spaced script
_WORD = re.compile(
    rf"[{NO_SPACE_SCRIPTS}]"  # a character of a no-space script
    r"|\d+(?:[.,]\d+)*"  # a number, with decimal or thousands separators
    rf"|{_LETTERS}(?:['’\-]{_LETTERS})*"  # a word; inner hyphens and apostrophes kept
    r"|[^\w\s]|_",  # any other single symbol
)
_WHITESPACE_TOKEN = re.compile(r"\S+")
_NO_SPACE_CHAR = re.compile(rf"[{NO_SPACE_SCRIPTS}]")


def tokenize(text: str, lang: str | None = None, pretokenized: bool = False) -> list[tuple[int, int]]:
    """Character offsets ``(start, end)`` of the tokens of ``text``.

    ``lang`` is accepted for future language-specific rules; the rules are script based so
    mixed-script text (Chinese with Latin names) is tokenised correctly without it.
    """
    pattern = _WHITESPACE_TOKEN if pretokenized else _WORD
    return [(m.start(), m.end()) for m in pattern.finditer(text)]


def primary_subtag(lang: str) -> str:
    """The primary language subtag of a BCP-47 tag, lower-cased: ``zh-Hans`` -> ``zh``, ``pt_BR`` -> ``pt``.

    Language-specific rules (prompt notes, no-space languages, BenchIE's Chinese scoring) key on the
    language, not on its script or region; ``_`` is accepted because locale names use it.
    """
    return re.split(r"[-_]", lang.strip(), maxsplit=1)[0].lower()


def is_no_space_script(text: str) -> bool:
    """True if ``text`` contains characters of a script written without spaces (CJK, Thai...)."""
    return _NO_SPACE_CHAR.search(text) is not None


# Quote and dash styles that LLMs and translators use interchangeably.
_FOLD = str.maketrans(
    {
        "‘": "'",
        "’": "'",
        "‚": "'",
        "‛": "'",
        "`": "'",
        "´": "'",
        "′": "'",
        "“": '"',
        "”": '"',
        "„": '"',
        "‟": '"',
        "«": '"',
        "»": '"',
        "″": '"',
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "〝": '"',
        "〞": '"',
        "‐": "-",
        "‑": "-",
        "‒": "-",
        "–": "-",
        "—": "-",
        "―": "-",
        "−": "-",
        "、": ",",
        "。": ".",
        "\u00a0": " ",
        "\u200b": "",
        "\u200c": "",
        "\u200d": "",
        "\ufeff": "",
    }
)
# PTB-style tokenised quotes in benchmark files: `` and '' stand for " .
_PTB_QUOTES = re.compile(r"``|''")


@lru_cache(maxsize=65536)
def normalize(text: str) -> str:
    """Fold a phrase to a comparison key: NFKC (full-width forms), case, quote and dash styles,
    PTB quotes and Arabic tatweel/diacritics; whitespace is collapsed to single spaces."""
    folded = unicodedata.normalize("NFKC", text)
    folded = _PTB_QUOTES.sub('"', folded).translate(_FOLD).casefold()
    if any("\u0600" <= ch <= "\u06ff" for ch in folded):
        folded = "".join(ch for ch in folded if not ("\u064b" <= ch <= "\u065f" or ch == "\u0640"))
    return " ".join(folded.split())
