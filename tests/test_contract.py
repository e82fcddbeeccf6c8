"""The answer contract: the models and the tolerant parser that repairs what small models get wrong."""

from __future__ import annotations

import pytest

from openie4pp.annotate.contract import (
    RESPONSE_MODELS,
    AnswerInvalid,
    AnswerTriple,
    ExtractionAnswer,
    ProjectionAnswer,
    TranslationAnswer,
    Verdict,
    VerificationAnswer,
    parse_answer,
    reask_message,
)

CLEAN = (
    '{"triples": [{"subject": "Marie Curie", "relation": "won", "object": "the Nobel Prize", '
    '"extra": ["in 1903"]}]}'
)
EXPECTED = ExtractionAnswer(
    triples=[AnswerTriple(subject="Marie Curie", relation="won", object="the Nobel Prize", extra=["in 1903"])]
)


def invalid(text: str, model: type = ExtractionAnswer) -> str:
    with pytest.raises(AnswerInvalid) as info:
        parse_answer(text, model)
    detail = info.value.detail
    assert detail and len(detail) <= 240 and "\n" not in detail
    return detail


def test_clean_json() -> None:
    assert parse_answer(CLEAN, ExtractionAnswer) == EXPECTED
    assert parse_answer(EXPECTED.model_dump_json(), ExtractionAnswer) == EXPECTED


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{CLEAN}\n```",
        f"```\n{CLEAN}\n```\nLet me know if you need more.",
        f"Here are the triples:\n{CLEAN}\nI hope this helps!",
        f"Sure, the {{answer}} is: {CLEAN}",  # a stray brace pair in the prose
        f"```json\n{CLEAN}",  # an unclosed fence
        CLEAN.replace('"in 1903"]', '"in 1903",],'),  # trailing commas
        CLEAN.replace('"]}]}', '"],}],}'),
        "{'triples': [{'subject': 'Marie Curie', 'relation': 'won', 'object': 'the Nobel Prize', "
        "'extra': ['in 1903']}]}",  # Python-style quotes
        CLEAN[len('{"triples": ') : -1],  # a bare list
        CLEAN[len('{"triples": [') : -2],  # a lone triple
    ],
)
def test_repairs(text: str) -> None:
    assert parse_answer(text, ExtractionAnswer) == EXPECTED


def test_trailing_comma_inside_a_string_is_kept() -> None:
    text = '{"translation": "Er sagte: „ja, ]“, und ging.",}'
    assert parse_answer(text, TranslationAnswer).translation == "Er sagte: „ja, ]“, und ging."


def test_lenient_forms() -> None:
    answer = parse_answer(
        '{"triples": [{"subject": "X", "relation": "founded in", "object": 1998, "extra": null, '
        '"score": 0.9}, {"subject": "X", "relation": "died", "object": null, "extra": "in 2001"}]}',
        ExtractionAnswer,
    )
    assert answer.triples[0] == AnswerTriple(subject="X", relation="founded in", object="1998")
    assert answer.triples[1] == AnswerTriple(subject="X", relation="died", object="", extra=["in 2001"])
    assert (
        parse_answer(
            '{"triples": [{"subject": "Pittsburgh\'s", "relation": "r", "object": ""}]}', ProjectionAnswer
        )
        .triples[0]
        .subject
        == "Pittsburgh's"
    )


def test_verification_answers() -> None:
    answer = parse_answer(
        '[{"index": 0, "verdict": "Accept"}, {"index": "1", "verdict": "fix", "reason": "date in extra",'
        ' "fixed": {"subject": "a", "relation": "b", "object": "c"}}, {"index": 2, "verdict": "REJECT",'
        ' "reason": null}]',
        VerificationAnswer,
    )
    assert [v.verdict for v in answer.verdicts] == ["accept", "fix", "reject"]
    assert answer.verdicts[1] == Verdict(
        index=1, verdict="fix", reason="date in extra",
        fixed=AnswerTriple(subject="a", relation="b", object="c"),
    )
    assert "'fix' verdict needs the corrected triple" in invalid(
        '[{"index": 0, "verdict": "fix"}]', VerificationAnswer
    )
    assert "verdicts.0.verdict" in invalid(
        '{"verdicts": [{"index": 0, "verdict": "maybe"}]}', VerificationAnswer
    )


@pytest.mark.parametrize(
    "text",
    [
        CLEAN[:-5],
        '{"triples": [{"subject": "a", "relation": "b", "object": "c"}, {"subj',
        '```json\n{"triples": [{"subject": "a", "relation": "b", "object": "c"},',
    ],
)
def test_truncated_json_is_invalid(text: str) -> None:
    assert "incomplete" in invalid(text)


def test_wrong_types_name_the_field() -> None:
    assert invalid('{"triples": [{"subject": ["a"], "relation": "b", "object": "c"}]}') == (
        "triples.0.subject: Input should be a valid string"
    )
    assert invalid('{"triples": "none"}') == "triples: Input should be a valid list"
    assert invalid('{"triples": [{"subject": "a", "object": "c"}]}') == "triples.0.relation: Field required"
    assert invalid('{"translation": "x"}') == "triples: Field required"
    many = invalid('{"triples": [{}, {}]}')
    assert many.startswith("triples.0.subject: Field required") and "more" in many


def test_no_json_at_all() -> None:
    assert invalid("") == "the answer was empty"
    assert invalid("I cannot find any facts.") == "no JSON object found"
    assert invalid("Here: {this is not json}") == "the JSON could not be parsed"
    assert invalid('"just a string"', TranslationAnswer) == "no JSON object found"


def test_reask_message() -> None:
    message = reask_message(AnswerInvalid("triples.0.relation: Field required"))
    assert message.role == "user"
    assert message.content == (
        "Your answer was not valid: triples.0.relation: Field required. "
        "Answer again with only JSON matching the schema."
    )
    assert reask_message("no JSON object found.").content.startswith(
        "Your answer was not valid: no JSON object found."
    )


def test_models_are_small_and_described() -> None:
    assert set(RESPONSE_MODELS) >= {
        "ExtractionAnswer",
        "TranslationAnswer",
        "ProjectionAnswer",
        "VerificationAnswer",
    }
    models = (ExtractionAnswer, TranslationAnswer, ProjectionAnswer, VerificationAnswer, AnswerTriple,
              Verdict)
    for model in models:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
    required = [n for n, f in AnswerTriple.model_fields.items() if f.is_required()]
    assert required == ["subject", "relation", "object"]
    schema = VerificationAnswer.model_json_schema()
    # the schema keeps the wire name "Triple" (hashed into every prompt version), whatever the class is called
    assert schema["required"] == ["verdicts"] and "Triple" in schema["$defs"]
    assert {
        m.schema_name for m in (ExtractionAnswer, TranslationAnswer, ProjectionAnswer, VerificationAnswer)
    } == {
        "extraction",
        "translation",
        "projection",
        "verification",
    }
