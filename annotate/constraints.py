"""Span-constrained decoding (issue 11, item 1): answers whose elements are spans of the sentence.

An extraction or projection answer is ``{"triples": [{"subject": s, "relation": s, "object": s,
"extra": [s, ...]}]}`` (:class:`~openie4pp.annotate.contract.ExtractionAnswer`,
:class:`~openie4pp.annotate.contract.ProjectionAnswer`). With a constraint, every ``s`` the model
can write is a contiguous token span ``[i, j)`` of the sentence, spelled as the sentence's own text
for it (:meth:`Sentence.span_text`, original spacing, JSON-escaped); ``object`` may also be ``""``
(the contract's "no object"). Such a string always grounds with an ``exact`` match
(:mod:`openie4pp.grounding`), so grounding, which stays the safety net, never rejects it as
``ungrounded``. Chinese and Japanese are tokenised per character (:mod:`openie4pp.text`), so a
span there is any run of characters between token boundaries.

Three encodings of the same constraint, for the three kinds of servers:

* :func:`gbnf_grammar`: a llama.cpp GBNF grammar (the llama.cpp server's ``grammar`` field, vLLM's
  ``structured_outputs.grammar`` / ``guided_grammar``). Linear in the sentence length and *not*
  capped: one rule per start token, ``s_i ::= t_i (g_i s_{i+1})?`` where ``t_i`` is token ``i``
  and ``g_i`` the sentence's text between tokens ``i`` and ``i+1``, so every span of any length
  is allowed.
* :func:`span_regex`: a regular expression for the whole answer (vLLM ``structured_outputs.regex``
  / ``guided_regex``). A regex has no rule references, so its size is about ``n * max_span``; spans
  are capped at ``max_span`` tokens (:data:`MAX_SPAN_TOKENS`).
* :func:`enum_schema`: a JSON schema with an ``enum`` of all spans (up to ``max_span`` tokens),
  for OpenAI-style ``json_schema`` with ``strict: true``, only where it fits the provider's limits
  (:data:`MAX_ENUM_VALUES`, :data:`MAX_ENUM_CHARS`); else ``None``: no constraint.

:func:`build_constraint` computes all three once per request (the pipeline attaches the result to
its :class:`~openie4pp.annotate.llm.ChatRequest`); the backend picks what its endpoint accepts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from openie4pp.schema import Sentence

from .contract import AnswerModel, ExtractionAnswer, ProjectionAnswer
from .llm import ConstraintKind

__all__ = [
    "MAX_ENUM_CHARS",
    "MAX_ENUM_VALUES",
    "MAX_SPAN_TOKENS",
    "ConstraintKind",
    "SpanConstraint",
    "build_constraint",
    "enum_schema",
    "gbnf_grammar",
    "json_string_body",
    "span_regex",
    "spans",
]

MAX_SPAN_TOKENS = 40
"""Longest span (in tokens) that :func:`span_regex` and :func:`enum_schema` enumerate. The GBNF
grammar is linear without a cap and allows every span."""

MAX_ENUM_VALUES = 500
"""OpenAI structured outputs (``strict: true``): at most 500 enum values in total within one schema
(the 400 error says "Expected at most 500 enum values in total within a single schema"; the current
documentation allows 1,000 across all enum properties; we keep the older, smaller number)."""

MAX_ENUM_CHARS = 15_000
"""OpenAI structured outputs: for an enum property with more than 250 string values, their total
length may not exceed 15,000 characters (the whole schema's names and enum values: 120,000). We
apply the 15,000 to the span enum whatever its size."""

_ANSWER_MODELS = (ExtractionAnswer, ProjectionAnswer)


def json_string_body(text: str) -> str:
    """``text`` as the inside of a JSON string literal (what the model writes between the quotes):
    ``"`` and ``\\`` escaped, control characters as ``\\n``/``\\u001f``, everything else as is."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def spans(sentence: Sentence, max_span: int | None = MAX_SPAN_TOKENS) -> Iterator[tuple[int, int]]:
    """Every token span ``(start, end)`` of ``sentence``, at most ``max_span`` tokens long
    (``None``: any length), by start then end."""
    n = len(sentence.tokens)
    for i in range(n):
        last = n if max_span is None else min(n, i + max_span)
        for j in range(i + 1, last + 1):
            yield (i, j)


def _pieces(sentence: Sentence) -> tuple[list[str], list[str]]:
    """Tokens and the gaps after them (``gaps[i]`` lies between tokens ``i`` and ``i + 1``), as
    the sentence writes them: ``span_text(i, j) == t_i + g_i + t_{i+1} + ... + t_{j-1}``."""
    text, offsets = sentence.text, sentence.offsets
    tokens = [text[s:e] for s, e in offsets]
    gaps = [text[offsets[i][1]:offsets[i + 1][0]] for i in range(len(offsets) - 1)]
    return tokens, gaps


# -- GBNF -------------------------------------------------------------------------------------

def _gbnf_literal(text: str) -> str:
    """A GBNF string literal matching ``text`` exactly (llama.cpp's escapes: ``\\\\``, ``\\"``,
    ``\\n``..., ``\\uXXXX``/``\\UXXXXXXXX`` for anything not printable)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() or ord(ch) < 0x20:
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_WS = 'ws ::= | " " | "\\n" [ \\t]{0,20}'
"""Bounded whitespace between JSON tokens (as llama.cpp's json.gbnf): a small model constrained to
unbounded whitespace can loop on it until max_tokens."""


def _check_model(answer_model: type[AnswerModel]) -> None:
    if answer_model not in _ANSWER_MODELS:
        raise ValueError(f"span constraints are for ExtractionAnswer and ProjectionAnswer, not "
                         f"{answer_model.__name__}")


def gbnf_grammar(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer) -> str:
    """A GBNF grammar for ``answer_model``'s JSON whose strings are spans of ``sentence``.

    Size is linear in the sentence: ``2n + 8`` rules, each span token written once (JSON-escaped).
    Keys come in the model's order (``subject``, ``relation``, ``object``, ``extra``), as
    :func:`~openie4pp.annotate.contract.parse_answer` reads them."""
    _check_model(answer_model)
    tokens, gaps = _pieces(sentence)
    n = len(tokens)
    lines = [
        'root ::= "{" ws "\\"triples\\"" ws ":" ws "[" ws ( triple ( ws "," ws triple )* )? ws "]" ws "}"',
        'triple ::= "{" ws "\\"subject\\"" ws ":" ws span ws "," ws "\\"relation\\"" ws ":" ws span ws "," '
        'ws "\\"object\\"" ws ":" ws ( span | "\\"\\"" ) ws "," ws "\\"extra\\"" ws ":" ws '
        '"[" ws ( span ( ws "," ws span )* )? ws "]" ws "}"',
        'span ::= "\\"" ( ' + " | ".join(f"s{i}" for i in range(n)) + ' ) "\\""',
        _WS,
    ]
    for i in range(n):
        token = _gbnf_literal(json_string_body(tokens[i]))
        if i + 1 < n:
            gap = json_string_body(gaps[i])
            joiner = f"{_gbnf_literal(gap)} " if gap else ""
            lines.append(f"s{i} ::= {token} ( {joiner}s{i + 1} )?")
        else:
            lines.append(f"s{i} ::= {token}")
    return "\n".join(lines) + "\n"


# -- regex ------------------------------------------------------------------------------------

_RWS = r"[ \n\t]{0,4}"


def _span_alternatives(sentence: Sentence, max_span: int) -> str:
    """``(?:t0(?:g0t1(?:...)?)?|t1(...)?|...)``: every span of up to ``max_span`` tokens, escaped
    for JSON, then for the regex."""
    tokens, gaps = _pieces(sentence)
    n = len(tokens)
    alternatives = []
    for i in range(n):
        last = min(n, i + max_span)
        pattern = ""
        for j in range(last - 1, i - 1, -1):  # innermost (longest) first
            piece = re.escape(json_string_body(tokens[j]))
            pattern = piece + (f"(?:{re.escape(json_string_body(gaps[j]))}{pattern})?" if pattern else "")
        alternatives.append(pattern)
    return "(?:" + "|".join(alternatives) + ")"


def span_regex(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer,
               max_span: int = MAX_SPAN_TOKENS) -> str:
    """A regular expression for ``answer_model``'s whole JSON answer, strings being spans of
    ``sentence`` of at most ``max_span`` tokens; size about ``n * max_span`` token texts."""
    _check_model(answer_model)
    span = '"' + _span_alternatives(sentence, max_span) + '"'
    w = _RWS

    def key(name: str) -> str:
        return f'"{name}"{w}:{w}'

    triple = (r"\{" + w + key("subject") + span + w + "," + w + key("relation") + span + w + "," + w
              + key("object") + f'(?:{span}|"")' + w + "," + w + key("extra") + r"\[" + w
              + f"(?:{span}(?:{w},{w}{span})*)?" + w + r"\]" + w + r"\}")
    return (r"\{" + w + key("triples") + r"\[" + w + f"(?:{triple}(?:{w},{w}{triple})*)?" + w + r"\]"
            + w + r"\}")


# -- enum schema ------------------------------------------------------------------------------

def enum_schema(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer,
                max_span: int = MAX_SPAN_TOKENS, *, max_values: int = MAX_ENUM_VALUES,
                max_chars: int = MAX_ENUM_CHARS) -> dict[str, Any] | None:
    """A strict-mode JSON schema (every key required, no additional properties) for
    ``answer_model`` whose strings are an ``enum`` of the distinct span texts of ``sentence`` (up
    to ``max_span`` tokens) defined once in ``$defs``; ``None`` when the enum would exceed
    ``max_values`` values (the span enum plus the object's ``""``) or ``max_chars`` characters."""
    _check_model(answer_model)
    values: list[str] = []
    seen: set[str] = set()
    chars = 0
    for start, end in spans(sentence, max_span):
        text = sentence.span_text(start, end)
        if text in seen:
            continue
        seen.add(text)
        values.append(text)
        chars += len(text)
        if len(values) + 1 > max_values or chars > max_chars:
            return None
    triple = {
        "type": "object",
        "properties": {
            "subject": {"$ref": "#/$defs/span"},
            "relation": {"$ref": "#/$defs/span"},
            "object": {"anyOf": [{"$ref": "#/$defs/span"}, {"type": "string", "enum": [""]}]},
            "extra": {"type": "array", "items": {"$ref": "#/$defs/span"}},
        },
        "required": ["subject", "relation", "object", "extra"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"triples": {"type": "array", "items": {"$ref": "#/$defs/triple"}}},
        "required": ["triples"],
        "additionalProperties": False,
        "$defs": {"span": {"type": "string", "enum": values}, "triple": triple},
    }


# -- the bundle a request carries -------------------------------------------------------------

@dataclass(frozen=True)
class SpanConstraint:
    """A sentence's span constraint in every encoding, built once per request (:func:`build_constraint`).
    ``digest`` (sha256 over all three) is what :meth:`ChatRequest.cache_key` hashes."""

    gbnf: str
    regex: str
    enum_schema: dict[str, Any] | None = field(hash=False, compare=False)
    digest: str = ""
    text: str = field(default="", compare=False, repr=False)
    """The sentence text and token offsets, for :meth:`violations`."""
    offsets: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    def violations(self, content: str) -> list[str] | None:
        """The element strings of a JSON answer that are not token spans of the sentence (``[]``:
        it obeys the constraint); ``None`` when ``content`` is no JSON answer of the expected shape
        (cut off, prose: nothing can be concluded). A backend that sent a grammar and gets
        violations back learns that its endpoint ignored the field (vLLM and llama.cpp ignore
        unknown request fields instead of rejecting them)."""
        try:
            value = json.loads(content)
        except (ValueError, RecursionError):
            return None
        triples = value.get("triples") if isinstance(value, dict) else None
        if not isinstance(triples, list):
            return None
        starts = {start for start, _ in self.offsets}
        ends = {end for _, end in self.offsets}
        bad: list[str] = []
        for triple in triples:
            if not isinstance(triple, dict):
                return None
            extra = triple.get("extra")
            strings = [triple.get("subject"), triple.get("relation"), triple.get("object"),
                       *(extra if isinstance(extra, list) else [])]
            for position, phrase in enumerate(strings):
                if position == 2 and phrase == "":
                    continue
                if not isinstance(phrase, str) or not self._is_span(phrase, starts, ends):
                    bad.append(str(phrase))
        return bad

    def _is_span(self, phrase: str, starts: set[int], ends: set[int]) -> bool:
        if not phrase:
            return False
        at = self.text.find(phrase)
        while at != -1:
            if at in starts and at + len(phrase) in ends:
                return True
            at = self.text.find(phrase, at + 1)
        return False

    def __post_init__(self) -> None:
        if not self.digest:
            digest = hashlib.sha256(b"openie4pp-span-constraint/1\0")
            for part in (self.gbnf, self.regex, json.dumps(self.enum_schema, sort_keys=True,
                                                           ensure_ascii=False)):
                raw = part.encode("utf-8")
                digest.update(len(raw).to_bytes(8, "little"))
                digest.update(raw)
            object.__setattr__(self, "digest", digest.hexdigest())


def build_constraint(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer,
                     max_span: int = MAX_SPAN_TOKENS) -> SpanConstraint:
    """The grammar, regex and enum schema of ``sentence`` for ``answer_model``."""
    return SpanConstraint(gbnf=gbnf_grammar(sentence, answer_model),
                          regex=span_regex(sentence, answer_model, max_span),
                          enum_schema=enum_schema(sentence, answer_model, max_span),
                          text=sentence.text, offsets=tuple((s, e) for s, e in sentence.offsets))
