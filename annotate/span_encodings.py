"""The three encodings of a span constraint: a GBNF grammar, a regex and an enum JSON schema.

An extraction or projection answer is ``{"triples": [{"subject": s, "relation": s, "object": s,
"extra": [s, ...]}]}`` (:class:`~openie4pp.annotate.contract.ExtractionAnswer`,
:class:`~openie4pp.annotate.contract.ProjectionAnswer`). Under a constraint every ``s`` the model
can write is a contiguous token span ``[i, j)`` of the sentence, spelled as the sentence's own text
for it (:meth:`Sentence.span_text`, original spacing, JSON-escaped); ``object`` may also be ``""``
(the contract's "no object"). One encoding per kind of server:

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

They are pure functions of the sentence and the answer model; :mod:`.constraints` bundles them
for a request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from openie4pp.schema import Sentence

from .contract import AnswerModel, ExtractionAnswer, ProjectionAnswer, VerificationAnswer

__all__ = [
    "MAX_ENUM_CHARS",
    "MAX_ENUM_VALUES",
    "MAX_EXTRAS",
    "MAX_REASON_CHARS",
    "MAX_SPAN_TOKENS",
    "MAX_TRIPLES",
    "MAX_VERDICTS",
    "answer_bound",
    "check_constrainable",
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


def check_constrainable(answer_model: type[AnswerModel]) -> None:
    """Span constraints exist for the answers made of sentence spans; anything else is a caller's bug."""
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
    check_constrainable(answer_model)
    tokens, gaps = _pieces(sentence)
    n = len(tokens)
    lines = [
        *_gbnf_root(answer_model, answer_bound(answer_model, items)),
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


def answer_bound(answer_model: type[AnswerModel], items: int | None) -> int:
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
    check_constrainable(answer_model)
    most = answer_bound(answer_model, items)
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
    check_constrainable(answer_model)
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
    most = answer_bound(answer_model, items)
    return {
        "type": "object",
        "properties": {outer: {"type": "array", "items": {"$ref": item}, "maxItems": most}},
        "required": [outer],
        "additionalProperties": False,
        "$defs": defs,
    }


