"""A sentence cut into pieces for highlighting: each extraction's elements marked where they are.

Why character pieces of the original text and not joined tokens: Chinese and Japanese are written
without spaces and Arabic right to left; slicing ``sentence.text`` at the tokens' offsets keeps the
sentence exactly as written (the browser's bidi algorithm lays an Arabic line out), where joining
tokens with spaces would invent a text nobody wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

import langcodes

from openie4pp.schema import Extraction, Sentence

RTL_SCRIPTS = frozenset({"Arab", "Hebr", "Syrc", "Thaa", "Nkoo", "Adlm", "Mand", "Samr"})
"""Scripts written right to left (ISO 15924)."""


def text_direction(lang: str) -> str:
    """``rtl`` for a language whose likely script runs right to left (``ar``, ``he``, ``fa``, ``ur``...)."""
    try:
        script = langcodes.Language.get(lang).maximize().script
    except (ValueError, LookupError):
        return "ltr"
    return "rtl" if script in RTL_SCRIPTS else "ltr"


@dataclass(frozen=True)
class Piece:
    """A run of the sentence's characters; ``role`` is None outside every element."""

    text: str
    role: str | None = None
    start: int = -1
    """The element's token span ``[start, end)``; -1 outside every element."""
    end: int = -1


@dataclass(frozen=True)
class ShownElement:
    role: str
    text: str
    span: tuple[int, int] | None


def elements(extraction: Extraction) -> list[ShownElement]:
    """The elements in reading order of a triple: the subject (``arg0``), the relation, then the
    other arguments in order."""
    arguments = [ShownElement(a.role, a.text, a.span) for a in extraction.arguments]
    first = next((i for i, a in enumerate(arguments) if a.role == "arg0"), None)
    subject = [] if first is None else [arguments.pop(first)]
    return [*subject, ShownElement("rel", extraction.predicate.text, extraction.predicate.span), *arguments]


def pieces(sentence: Sentence, extraction: Extraction) -> list[Piece]:
    """``sentence.text`` cut at the extraction's grounded elements. Elements that overlap an earlier
    one (gold data may) are left unmarked here; their text is still listed beside the sentence."""
    text, offsets = sentence.text, sentence.offsets
    marked: list[tuple[int, int, ShownElement]] = []
    for element in elements(extraction):
        if element.span is None or not 0 <= element.span[0] < element.span[1] <= len(offsets):
            continue
        begin, finish = offsets[element.span[0]][0], offsets[element.span[1] - 1][1]
        if any(begin < b_end and b_start < finish for b_start, b_end, _ in marked):
            continue
        marked.append((begin, finish, element))
    marked.sort(key=lambda m: m[0])
    out: list[Piece] = []
    cursor = 0
    for begin, finish, element in marked:
        if begin > cursor:
            out.append(Piece(text[cursor:begin]))
        assert element.span is not None
        out.append(Piece(text[begin:finish], element.role, element.span[0], element.span[1]))
        cursor = finish
    if cursor < len(text):
        out.append(Piece(text[cursor:]))
    return out
