"""Which language is a text in? Used to check that a translation is really in the target language.

MT4CrossOIE re-asked when gpt-3.5's "translation" was still English; we do the same check
offline with ``py3langid`` (a maintained, dependency-light fork of langid.py, 97+ languages).

Three choices make the check safe to use as a gate:

* **Varieties fold into their macrolanguage.** py3langid 0.4 separates Wu and Cantonese from
  Chinese and Egyptian/Moroccan from Arabic, so a plain Chinese sentence may come out as 60 %
  ``zh`` and 30 % ``wuu``; the probabilities of a macrolanguage's members are summed.
* **Undetermined is not wrong.** Short or digit-only text ("Obama", "1998") carries no
  evidence, so it is ``und`` and :func:`is_language` lets it pass; grounding and verification
  judge it instead.
* **Close relatives are not rejected.** A Portuguese sentence can score as Galician; when asked
  "is this Portuguese?", a Galician top score is not a reason to re-ask.

:func:`is_language` therefore answers False only when the text is long enough and clearly in
some *other* language: exactly the "translator left it in English" failure.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from openie4pp.text import CJK_CHARACTERS, HANGUL_SYLLABLES, primary_subtag

__all__ = ["UNDETERMINED", "detect_language", "is_language"]

UNDETERMINED = "und"
"""The BCP-47 code for an undetermined language."""

MACROLANGUAGE = {"wuu": "zh", "yue": "zh", "arz": "ar", "ary": "ar", "nn": "no", "uzs": "uz"}
"""Varieties py3langid reports separately -> the language we mean."""

RELATIVES: dict[str, frozenset[str]] = {
    "pt": frozenset({"gl"}),
    "es": frozenset({"gl", "an", "ext", "ca"}),
    "de": frozenset({"lb"}),
    "zh": frozenset(),
    "ar": frozenset(),
    "en": frozenset({"pcm"}),
}
"""Languages easily mistaken for the key on short sentences; not grounds for rejecting it."""

MIN_LETTERS = 12
"""Fewer letters than this (in spaced scripts) is too little evidence."""
MIN_IDEOGRAPHS = 4
"""CJK text carries more per character: four characters suffice."""
_CJK = re.compile(rf"[{CJK_CHARACTERS}{HANGUL_SYLLABLES}]")


def _base(lang: str) -> str:
    """``zh-Hans`` -> ``zh``, ``pt_BR`` -> ``pt``; then varieties -> macrolanguage."""
    code = primary_subtag(lang)
    return MACROLANGUAGE.get(code, code)


@lru_cache(maxsize=1)
def _identifier() -> Any:
    """A py3langid identifier with normalised probabilities (its own module-level one has raw
    scores). Loaded once: it takes about half a second."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    load = getattr(LanguageIdentifier, "from_model_file", None)  # 0.4
    if load is None:
        load = LanguageIdentifier.from_pickled_model  # 0.3
    return load(MODEL_FILE, norm_probs=True)


def _enough_evidence(text: str) -> bool:
    letters = sum(1 for ch in text if unicodedata.category(ch).startswith("L"))
    ideographs = len(_CJK.findall(text))
    return ideographs >= MIN_IDEOGRAPHS or letters >= MIN_LETTERS


def _scores(text: str) -> dict[str, float]:
    """Probabilities per language, varieties summed into their macrolanguage."""
    folded: dict[str, float] = {}
    for code, probability in _identifier().rank(text):
        key = _base(str(code))
        folded[key] = folded.get(key, 0.0) + float(probability)
    return folded


def detect_language(text: str) -> tuple[str, float]:
    """``(code, probability)`` of the most likely language, or ``("und", 0.0)`` for text too
    short or without letters to tell."""
    if not _enough_evidence(text):
        return UNDETERMINED, 0.0
    scores = _scores(text)
    code = max(scores, key=lambda k: scores[k])
    return code, scores[code]


def is_language(text: str, lang: str, threshold: float = 0.8, floor: float = 0.005) -> bool:
    """Whether ``text`` may be in ``lang``: False only if it is determined, its most likely
    language is neither ``lang`` nor a close relative, and either that language is confident
    (probability >= ``threshold``) or ``lang`` is all but excluded (probability < ``floor``).

    The floor catches an English sentence left untranslated whose English score is modest
    (tokenised text, many names) while German scores 0.0004; the threshold catches everything
    else that is clearly foreign. Undetermined and unsure text passes.
    """
    want = _base(lang)
    if not _enough_evidence(text):
        return True
    scores = _scores(text)
    found = max(scores, key=lambda k: scores[k])
    if found == want or found in RELATIVES.get(want, frozenset()):
        return True
    return scores[found] < threshold and scores.get(want, 0.0) >= floor
