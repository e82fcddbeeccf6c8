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
from functools import cached_property
from typing import Any

from openie4pp.schema import Sentence

from .contract import AnswerModel, ExtractionAnswer, ProjectionAnswer, VerificationAnswer
from .llm import ConstraintKind

__all__ = [
    "MAX_ENUM_CHARS",
    "MAX_ENUM_VALUES",
    "MAX_EXTRAS",
    "MAX_SPAN_TOKENS",
    "MAX_TRIPLES",
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

MAX_TRIPLES = 8
"""Most triples a constrained answer may hold. Unbounded, a small model under a grammar keeps
writing triples until ``max_tokens`` cuts the JSON off (measured: 4 of 5 answers of Gemma 3 270M),
and a cut-off answer is lost whole. OIE gold averages 2-4 triples per sentence (CaRB: 3.6)."""

MAX_EXTRAS = 3
"""Most extra arguments per constrained triple (the contract's ``extra`` list), for the same reason."""

MAX_VERDICTS = 16
"""Most verdicts in a constrained judge answer (one per candidate; stage 1 gives at most
:data:`MAX_TRIPLES` under a constraint, more without one)."""

MAX_REASON_CHARS = 120
"""A judge's ``reason`` is free text, bounded so that one runaway reason cannot eat the answer's
``max_tokens`` (the whole answer's length still depends on the number of candidates). Only ``fix``
and ``reject`` have one (as the prompt says); an ``accept``'s is ``""``: free text is where a
grammar costs most per token (almost every token of the vocabulary has to be checked through)."""

_ANSWER_MODELS = (ExtractionAnswer, ProjectionAnswer, VerificationAnswer)


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
        raise ValueError(f"span constraints are for ExtractionAnswer, ProjectionAnswer and "
                         f"VerificationAnswer, not {answer_model.__name__}")


def gbnf_grammar(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer,
                 items: int | None = None) -> str:
    """A GBNF grammar for ``answer_model``'s JSON whose strings are spans of ``sentence``.

    Size is linear in the sentence: ``n + 4`` rules (``n + 7`` for the judge), each span token
    written once (JSON-escaped).
    Keys come in the model's order (``subject``, ``relation``, ``object``, ``extra``), as
    :func:`~openie4pp.annotate.contract.parse_answer` reads them. At most :data:`MAX_TRIPLES`
    triples of at most :data:`MAX_EXTRAS` extras each, so the answer ends within ``max_tokens``
    (``items`` overrides the number of triples, or of verdicts for the judge)."""
    _check_model(answer_model)
    tokens, gaps = _pieces(sentence)
    n = len(tokens)
    lines = [
        *_gbnf_root(answer_model, _items(answer_model, items)),
        'triple ::= "{" ws "\\"subject\\"" ws ":" ws span ws "," ws "\\"relation\\"" ws ":" ws span ws "," '
        'ws "\\"object\\"" ws ":" ws ( span | "\\"\\"" ) ws "," ws "\\"extra\\"" ws ":" ws '
        '"[" ws ( span ( ws "," ws span ){0,' + str(MAX_EXTRAS - 1) + '} )? ws "]" ws "}"',
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


def _items(answer_model: type[AnswerModel], items: int | None) -> int:
    """How many triples (or verdicts) an answer may hold: ``items``, else the model's default."""
    default = MAX_VERDICTS if answer_model is VerificationAnswer else MAX_TRIPLES
    return max(1, default if items is None else items)


def _gbnf_root(answer_model: type[AnswerModel], items: int) -> list[str]:
    """The answer's outer rules: a list of triples, or a judge's verdicts whose ``fixed`` triple
    (required for ``fix``, ``null`` otherwise) is made of spans, as its validation requires."""
    if answer_model is not VerificationAnswer:
        return ['root ::= "{" ws "\\"triples\\"" ws ":" ws "[" ws ( triple ( ws "," ws triple )'
                + f'{{0,{items - 1}}} )? ws "]" ws "}}"']
    return [
        'root ::= "{" ws "\\"verdicts\\"" ws ":" ws "[" ws ( verdict ( ws "," ws verdict )'
        + f'{{0,{items - 1}}} )? ws "]" ws "}}"',
        'verdict ::= "{" ws "\\"index\\"" ws ":" ws ( "0" | [1-9] [0-9]{0,2} ) ws "," ws '
        '"\\"verdict\\"" ws ":" ws ( '
        '"\\"fix\\"" ws "," ws reason ws "," ws "\\"fixed\\"" ws ":" ws triple | '
        '"\\"reject\\"" ws "," ws reason ws "," ws "\\"fixed\\"" ws ":" ws "null" | '
        '"\\"accept\\"" ws "," ws "\\"reason\\"" ws ":" ws "\\"\\"" ws "," ws "\\"fixed\\"" ws ":" ws "null" '
        ') ws "}"',
        f'reason ::= "\\"reason\\"" ws ":" ws "\\"" rchar{{0,{MAX_REASON_CHARS}}} "\\""',
        'rchar ::= [^"\\\\\\x00-\\x1f] | "\\\\" ["\\\\/bfnrt]',
    ]


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
               max_span: int = MAX_SPAN_TOKENS, items: int | None = None) -> str:
    """A regular expression for ``answer_model``'s whole JSON answer, strings being spans of
    ``sentence`` of at most ``max_span`` tokens; size about ``n * max_span`` token texts."""
    _check_model(answer_model)
    most = _items(answer_model, items)
    span = '"' + _span_alternatives(sentence, max_span) + '"'
    w = _RWS

    def key(name: str) -> str:
        return f'"{name}"{w}:{w}'

    triple = (r"\{" + w + key("subject") + span + w + "," + w + key("relation") + span + w + "," + w
              + key("object") + f'(?:{span}|"")' + w + "," + w + key("extra") + r"\[" + w
              + f"(?:{span}(?:{w},{w}{span}){{0,{MAX_EXTRAS - 1}}})?" + w + r"\]" + w + r"\}")
    if answer_model is VerificationAnswer:
        reason = key("reason") + '"' + r'(?:[^"\\\x00-\x1f]|\\["\\/bfnrt])' + f'{{0,{MAX_REASON_CHARS}}}"'
        verdict = (r"\{" + w + key("index") + r"(?:0|[1-9][0-9]{0,2})" + w + "," + w + key("verdict") + "(?:"
                   + '"fix"' + w + "," + w + reason + w + "," + w + key("fixed") + triple + "|"
                   + '"reject"' + w + "," + w + reason + w + "," + w + key("fixed") + "null" + "|"
                   + '"accept"' + w + "," + w + key("reason") + '""' + w + "," + w + key("fixed") + "null"
                   + ")" + w + r"\}")
        verdicts = f"(?:{verdict}(?:{w},{w}{verdict}){{0,{most - 1}}})?"
        return r"\{" + w + key("verdicts") + r"\[" + w + verdicts + w + r"\]" + w + r"\}"
    triples = f"(?:{triple}(?:{w},{w}{triple}){{0,{most - 1}}})?"
    return r"\{" + w + key("triples") + r"\[" + w + triples + w + r"\]" + w + r"\}"


# -- enum schema ------------------------------------------------------------------------------

def enum_schema(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer,
                max_span: int = MAX_SPAN_TOKENS, *, max_values: int = MAX_ENUM_VALUES,
                max_chars: int = MAX_ENUM_CHARS, items: int | None = None) -> dict[str, Any] | None:
    """A strict-mode JSON schema (every key required, no additional properties) for
    ``answer_model`` whose strings are an ``enum`` of the distinct span texts of ``sentence`` (up
    to ``max_span`` tokens) defined once in ``$defs``; ``None`` when the enum would exceed
    ``max_values`` values (the span enum plus the object's ``""``) or ``max_chars`` characters."""
    _check_model(answer_model)
    values: list[str] = []
    seen: set[str] = set()
    chars = 0
    fixed_values = 1 + (3 if answer_model is VerificationAnswer else 0)  # "" and the verdict names
    for start, end in spans(sentence, max_span):
        text = sentence.span_text(start, end)
        if text in seen:
            continue
        seen.add(text)
        values.append(text)
        chars += len(text)
        if len(values) + fixed_values > max_values or chars > max_chars:
            return None
    triple = {
        "type": "object",
        "properties": {
            "subject": {"$ref": "#/$defs/span"},
            "relation": {"$ref": "#/$defs/span"},
            "object": {"anyOf": [{"$ref": "#/$defs/span"}, {"type": "string", "enum": [""]}]},
            "extra": {"type": "array", "items": {"$ref": "#/$defs/span"}, "maxItems": MAX_EXTRAS},
        },
        "required": ["subject", "relation", "object", "extra"],
        "additionalProperties": False,
    }
    defs: dict[str, Any] = {"span": {"type": "string", "enum": values}, "triple": triple}
    if answer_model is VerificationAnswer:
        defs["verdict"] = {
            "type": "object",
            "properties": {
                "index": {"type": "integer"},
                "verdict": {"type": "string", "enum": ["accept", "fix", "reject"]},
                "reason": {"type": "string"},
                "fixed": {"anyOf": [{"$ref": "#/$defs/triple"}, {"type": "null"}]},
            },
            "required": ["index", "verdict", "reason", "fixed"],
            "additionalProperties": False,
        }
        outer, item = "verdicts", "#/$defs/verdict"
    else:
        outer, item = "triples", "#/$defs/triple"
    most = _items(answer_model, items)
    return {
        "type": "object",
        "properties": {outer: {"type": "array", "items": {"$ref": item}, "maxItems": most}},
        "required": [outer],
        "additionalProperties": False,
        "$defs": defs,
    }


# -- the bundle a request carries -------------------------------------------------------------

CONSTRAINT_VERSION = 2
"""Part of every constraint's digest: bump it when an encoding changes (2: bounded answers, the
judge's fixes), so cached answers decoded under the old encodings are not replayed."""


@dataclass(frozen=True)
class SpanConstraint:
    """A sentence's span constraint for one request (:func:`build_constraint`). Each encoding is
    built on first use only (a backend sends one of them; the regex alone takes ~9 ms and 300 kB
    for an 80-token sentence); ``digest``, over what defines them all, is what
    :meth:`ChatRequest.cache_key` hashes."""

    sentence: Sentence = field(compare=False, repr=False)
    answer_model: type[AnswerModel] = ExtractionAnswer
    items: int | None = None
    """Most triples (or verdicts) an answer may hold; None: the model's default bound."""
    max_span: int = MAX_SPAN_TOKENS
    digest: str = ""

    @cached_property
    def gbnf(self) -> str:
        return gbnf_grammar(self.sentence, self.answer_model, self.items)

    @cached_property
    def regex(self) -> str:
        return span_regex(self.sentence, self.answer_model, self.max_span, self.items)

    @cached_property
    def enum_schema(self) -> dict[str, Any] | None:
        return enum_schema(self.sentence, self.answer_model, self.max_span, items=self.items)

    @property
    def text(self) -> str:
        return self.sentence.text

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        return tuple((start, end) for start, end in self.sentence.offsets)

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
        if isinstance(value, dict) and isinstance(value.get("verdicts"), list):  # a judge: its fixes
            triples = [v.get("fixed") for v in value["verdicts"] if isinstance(v, dict) and v.get("fixed")]
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
        _check_model(self.answer_model)
        if not self.digest:
            key = json.dumps([CONSTRAINT_VERSION, self.answer_model.__name__,
                              _items(self.answer_model, self.items), self.max_span, self.sentence.text,
                              self.offsets], ensure_ascii=False)
            object.__setattr__(self, "digest", hashlib.sha256(key.encode("utf-8")).hexdigest())


def build_constraint(sentence: Sentence, answer_model: type[AnswerModel] = ExtractionAnswer,
                     max_span: int = MAX_SPAN_TOKENS, *, items: int | None = None) -> SpanConstraint:
    """The span constraint of ``sentence`` for ``answer_model``; ``items`` bounds the triples (or,
    for the judge, the verdicts) of the answer."""
    return SpanConstraint(sentence, answer_model, items, max_span)
