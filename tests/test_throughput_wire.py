"""The throughput work's fast paths give exactly what the plain code gives (issue "Scale and cost", 4).

:func:`~openie4pp.annotate.backends.wire.encode_body` serialises shared parts of a body once; its
bytes must be those of ``json.dumps(build_body(...))`` for every structured mode, span-constraint
kind, seed and message list, including after a schema dict is replaced (its cache is by identity).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import pytest

from openie4pp.annotate.backends.negotiation import EndpointFormat
from openie4pp.annotate.backends.wire import build_body, encode_body
from openie4pp.annotate.llm import ChatRequest, Message
from openie4pp.annotate.prompts import load_prompt


@dataclass(frozen=True)
class _Span:
    digest: str = "d"
    gbnf: str = 'root ::= "{\\"triples\\": []}" # „quoted“'
    enum_schema: dict[str, Any] | None = None

    def violations(self, content: str) -> list[str] | None:
        return []


def _plain(model: str, fmt: EndpointFormat, request: ChatRequest, mode: Any, constraint: Any) -> bytes:
    return json.dumps(build_body(model, fmt, request, mode, constraint), ensure_ascii=False,
                      separators=(",", ":"), allow_nan=False).encode()


def _requests() -> list[ChatRequest]:
    extract = load_prompt("extract").request("en", sentence="Zoë repairs „old“ bicycles — in town 3.")
    verify = load_prompt("verify").request("de", sentence="Anna trinkt Kaffee.", candidates="[]")
    enum = {"type": "object", "properties": {"triples": {"type": "array", "items": {"enum": ["Anna"]}}}}
    return [
        extract,
        verify,
        extract.with_messages(Message("assistant", "{oops"), Message("user", "again, ünd JSON")),
        ChatRequest(messages=(Message("user", "only one"),), schema_name="x y!", schema={"type": "object"}),
        ChatRequest(messages=(), schema_name="empty"),
        ChatRequest(messages=(Message("system", "s"), Message("user", "u")), schema_name="free", seed=None,
                    temperature=0.7, max_tokens=7),
        ChatRequest(messages=extract.messages, schema_name="extraction", schema=extract.schema,
                    constraint=_Span()),
        ChatRequest(messages=extract.messages, schema_name="extraction", schema=extract.schema,
                    constraint=_Span(enum_schema=enum)),
    ]


@pytest.mark.parametrize("mode,constraint,field", list(itertools.product(
    ["json_schema", "json_object", "none"],
    ["none", "grammar", "structured_outputs", "guided_grammar", "json_schema_enum"],
    ["max_tokens", "max_completion_tokens"])))
def test_encode_body_is_json_dumps_of_build_body(mode: Any, constraint: Any, field: str) -> None:
    fmt = EndpointFormat(name="e", mode=mode, constraint=constraint, max_tokens_field=field)
    for request in _requests():
        for _ in range(2):  # the second time from the caches
            assert encode_body("m-ö", fmt, request, mode, constraint) == _plain("m-ö", fmt, request, mode,
                                                                                 constraint)


def test_a_new_schema_dict_is_serialised_anew() -> None:
    """The response_format cache is by identity: an equal-looking new dict (even at a reused id)
    and a different schema under the same name both give their own JSON."""
    fmt = EndpointFormat(name="e", mode="json_schema")
    messages = (Message("user", "u"),)
    for i in range(300):  # past the cache's bound, with ids of freed dicts reused
        request = ChatRequest(messages=messages, schema_name="s", schema={"type": "object", "n": i})
        body = json.loads(encode_body("m", fmt, request, "json_schema"))
        assert body["response_format"]["json_schema"]["schema"] == {"type": "object", "n": i}


def test_nan_temperature_is_refused_as_before() -> None:
    fmt = EndpointFormat(name="e", mode="json_schema")
    request = ChatRequest(messages=(Message("user", "u"),), schema_name="s", temperature=float("nan"))
    with pytest.raises(ValueError, match="Out of range float"):
        _plain("m", fmt, request, "none", "none")
    with pytest.raises(ValueError, match="Out of range float"):
        encode_body("m", fmt, request, "none")


# -- the answer contract: a whole-JSON answer is read at once ------------------------------------

_ANSWERS = [
    '{"triples": [{"subject": "Anna", "relation": "drinks", "object": "coffee"}]}',
    '  [{"subject": "Anna", "relation": "drinks", "object": "it\'s {hot}", "extra": null}]\n',
    '{"subject": "Anna", "relation": "drinks", "object": 1998}',
    '{"triples": [{"subject": "```", "relation": "r", "object": "o"}]}',  # a fence inside: the search
    '{"triples": []} and more {"triples": [{"subject": "a", "relation": "b", "object": "c"}]}',
    '{"triples": [{"subject": "a", "relation": "b", "object": "c",}]}',  # repaired, not whole JSON
    '"just a string"',
    '[1, 2]',
    '{"verdicts": [{"index": 0, "verdict": "Accept ", "reason": null}]}',
    '{"verdicts": [{"index": 0, "verdict": "fix"}]}',
]


@pytest.mark.parametrize("text", _ANSWERS)
def test_parse_answer_is_the_search_whatever_the_path(text: str) -> None:
    """With the whole-JSON shortcut switched off, every answer gives the same value or error."""
    from openie4pp.annotate import contract
    from openie4pp.annotate.contract import AnswerInvalid, ExtractionAnswer, VerificationAnswer

    model = VerificationAnswer if "verdict" in text else ExtractionAnswer

    def outcome() -> object:
        try:
            return contract.parse_answer(text, model).model_dump()
        except AnswerInvalid as error:
            return ("invalid", error.detail)

    fast = outcome()
    original = contract._whole_json
    contract._whole_json = lambda _text: contract._NOTHING  # type: ignore[assignment]
    try:
        assert outcome() == fast
    finally:
        contract._whole_json = original  # type: ignore[assignment]


# -- prompts: placeholders read once, plain triples without pydantic ----------------------------

@pytest.mark.parametrize("template", [
    "plain", "$a and ${b}$$c $$ $a", "$$", "end $a", "${a}${b}", "$a$b x$", "$ 1", "${a", "$missing",
])
def test_pieces_substitute_like_string_template(template: str) -> None:
    from string import Template

    from openie4pp.annotate.prompts import _pieces

    values = {"a": "A$b", "b": "${a}"}
    try:
        expected: object = Template(template).substitute(values)
    except (KeyError, ValueError) as error:
        expected = type(error)
    pieces = _pieces(template)
    if pieces is None:
        assert expected is ValueError
        return
    try:
        got: object = "".join(lit + (values[name] if name else "") for lit, name in pieces)
    except KeyError as error:
        got = type(error)
    assert got == expected


@pytest.mark.parametrize("item", [
    {"index": 3, "subject": "s", "relation": "r", "object": "o", "extra": ["x"], "confidence": 1},
    {"subject": "s", "relation": "r", "object": "o"},
    {"subject": "s", "relation": "r", "object": None},
    {"subject": "s", "relation": "r", "object": 1998, "extra": "lone"},
    {"subject": "s", "relation": "r", "object": "o", "extra": [1]},
])
def test_plain_triples_are_formatted_as_the_model_would(item: dict[str, Any]) -> None:
    from openie4pp.annotate.contract import AnswerTriple
    from openie4pp.annotate.prompt_values import _plain_triple

    expected = AnswerTriple.model_validate({k: v for k, v in item.items() if k != "index"}).model_dump()
    plain = _plain_triple(item)
    assert plain is None or plain == expected
    assert (plain is not None) == (item.get("object") not in (None, 1998) and item.get("extra") != [1])


def _reference_cache_key(request: Any, model: str) -> str:
    """The cache key as it was defined before its shared prefix was hashed once per prompt: the
    shortcut must give these exact keys (else every existing cache would be missed)."""
    import hashlib

    from openie4pp.annotate.llm import _KEY_VERSION

    digest = hashlib.sha256(_KEY_VERSION)
    fields = [model, request.schema_name, request.schema_digest, request.prompt_id, request.prompt_hash,
              repr(float(request.temperature)), str(request.max_tokens), repr(request.seed)]
    for message in request.messages:
        fields += (message.role, message.content)
    if request.constraint is not None:
        fields.append("span-constraint:" + request.constraint.digest)
    for text in fields:
        raw = text.encode("utf-8")
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def test_cache_keys_are_those_of_the_unshortened_hash() -> None:
    from dataclasses import replace

    from openie4pp.annotate.constraints import build_constraint
    from openie4pp.annotate.contract import ExtractionAnswer
    from openie4pp.annotate.llm import ChatRequest, Message
    from openie4pp.annotate.prompts import load_prompt
    from openie4pp.schema import Sentence

    requests = []
    for text in ("Tom sells old books.", "Anna paints red chairs.", "Tom sells old books."):
        request = load_prompt("extract").request("en", purpose="stage1", max_tokens=256, sentence=text)
        requests += [request, request.with_messages(Message("assistant", "{"), Message("user", "again")),
                     replace(request, constraint=build_constraint(Sentence.from_text(text, "en"),
                                                                  ExtractionAnswer)),
                     replace(request, temperature=0.7, seed=None)]
    requests += [ChatRequest(messages=(), schema_name="x"),
                 ChatRequest(messages=(Message("user", "only"),), schema_name="x")]
    keys = [r.cache_key("m") for r in requests]
    assert keys == [_reference_cache_key(r, "m") for r in requests]
    assert [r.cache_key("other") for r in requests[:2]] == [_reference_cache_key(r, "other")
                                                             for r in requests[:2]]
    assert len(set(keys)) == len(keys) - 4  # the repeated sentence's four requests, and only they
