"""The data contract: round trips, grounding consistency, versions, languages, secrets."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from openie4pp.schema import (
    SCHEMA_VERSION,
    Argument,
    Element,
    Extraction,
    Provenance,
    Record,
    Rejection,
    RejectionReason,
    SchemaVersionError,
    Sentence,
    Source,
    check_schema_version,
    sentence_id_for,
)


def make_record(source: str = "llm") -> Record:
    sentence = Sentence.from_text("Marie Curie discovered polonium in 1898 .", "en", pretokenized=True)
    extraction = Extraction(
        predicate=Element(text="discovered", span=(2, 3)),
        arguments=[
            Argument(role="arg0", text="Marie Curie", span=(0, 2)),
            Argument(role="arg1", text="polonium", span=(3, 4)),
            Argument(role="temp", text="in 1898", span=(4, 6)),
        ],
        confidence=0.9,
    )
    provenance = Provenance(source=source, model="gemma3", prompt_id="extract", prompt_hash="abc")  # type: ignore[arg-type]
    return Record(sentence=sentence, extractions=[extraction], provenance=provenance)


def test_record_round_trips_through_json() -> None:
    record = make_record()
    again = Record.model_validate_json(record.model_dump_json())
    assert again == record
    assert json.loads(record.model_dump_json())["schema_version"] == SCHEMA_VERSION
    assert again.extractions[0].binary() == ("Marie Curie", "discovered", "polonium")
    assert again.extractions[0].nary() == ("discovered", ["Marie Curie", "polonium", "in 1898"])


def test_sentence_offsets_must_reproduce_tokens() -> None:
    with pytest.raises(ValidationError, match="differs from text"):
        Sentence(id="s", lang="en", text="a b", tokens=["a", "c"], offsets=[(0, 1), (2, 3)])
    with pytest.raises(ValidationError, match="out of order"):
        Sentence(id="s", lang="en", text="a b", tokens=["b", "a"], offsets=[(2, 3), (0, 1)])
    with pytest.raises(ValidationError, match="2 tokens but 1 offsets"):
        Sentence(id="s", lang="en", text="a b", tokens=["a", "b"], offsets=[(0, 1)])


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_sentence_is_rejected(text: str) -> None:
    with pytest.raises(ValidationError):
        Sentence.from_text(text, "en")


@pytest.mark.parametrize("code", ["xx", "english", "en_US!", ""])
def test_unknown_language_code_is_rejected(code: str) -> None:
    with pytest.raises(ValidationError, match="language code"):
        Sentence(id="s", lang=code, text="a", tokens=["a"], offsets=[(0, 1)])


@pytest.mark.parametrize("code", ["en", "zh-Hans", "pt-BR", "ar", "de"])
def test_bcp47_codes_are_accepted(code: str) -> None:
    assert Sentence(id="s", lang=code, text="a", tokens=["a"], offsets=[(0, 1)]).lang == code


def test_span_text_must_match_the_sentence() -> None:
    data = json.loads(make_record().model_dump_json())
    data["extractions"][0]["arguments"][1]["text"] = "radium"
    with pytest.raises(ValidationError, match=r"arguments\[1\]\.text: 'radium' differs"):
        Record.model_validate(data)


def test_span_out_of_range_is_rejected() -> None:
    data = json.loads(make_record().model_dump_json())
    data["extractions"][0]["arguments"][1]["span"] = [3, 40]
    with pytest.raises(ValidationError, match="out of range"):
        Record.model_validate(data)
    data["extractions"][0]["arguments"][1]["span"] = [4, 3]
    with pytest.raises(ValidationError, match="non-empty"):
        Record.model_validate(data)


def test_llm_records_must_be_grounded_but_gold_may_not() -> None:
    data = json.loads(make_record().model_dump_json())
    data["extractions"][0]["arguments"][0]["span"] = None
    with pytest.raises(ValidationError, match="must be grounded"):
        Record.model_validate(data)
    data["provenance"]["source"] = "gold"
    assert Record.model_validate(data).extractions[0].grounded is False


def test_schema_versions() -> None:
    assert check_schema_version("1.7") == "1.7"  # a newer minor version reads fine
    data = json.loads(make_record().model_dump_json())
    for version, word in (("2.0", "newer"), ("0.9", "older")):
        data["schema_version"] = version
        with pytest.raises(ValidationError, match=word):
            Record.model_validate(data)
    with pytest.raises(SchemaVersionError, match=r"MAJOR\.MINOR"):
        check_schema_version("latest")


def test_confidence_bounds_and_nan() -> None:
    data = json.loads(make_record().model_dump_json())
    for bad in (1.5, -0.1, float("nan")):
        data["extractions"][0]["confidence"] = bad
        with pytest.raises(ValidationError):
            Record.model_validate(data)


def test_roles_and_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="unknown argument role"):
        Argument(role="subject", text="x")
    assert Argument(role="arg7", text="x").role == "arg7"
    data = json.loads(make_record().model_dump_json())
    data["sentence"]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        Record.model_validate(data)


def test_provenance_refuses_credentials() -> None:
    with pytest.raises(ValidationError, match="credential"):
        Provenance(source="llm", endpoint="https://user:hunter2@api.example.com/v1")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="credential"):
        Provenance(source="llm", endpoint="http://x/v1?api_key=sk-abcdefghijkl")  # type: ignore[arg-type]


def test_stable_sentence_ids() -> None:
    assert sentence_id_for("en", "A b .") == sentence_id_for("en", "A b .")
    assert sentence_id_for("en", "A b .") != sentence_id_for("de", "A b .")
    assert Sentence.from_text("A b .", "en").id == sentence_id_for("en", "A b .")


def test_rejection_location() -> None:
    rejection = Rejection(
        stage="validate",
        reason=RejectionReason.span_text_mismatch,
        detail="d",
        input="{}",
        file="x.jsonl",
        line=3,
        field="extractions[0].predicate.text",
    )
    assert rejection.location() == "x.jsonl:3:extractions[0].predicate.text"
    assert Rejection.model_validate_json(rejection.model_dump_json()) == rejection


def test_no_nulls_on_disk_and_absent_values_read_back_as_none() -> None:
    data = json.loads(make_record().model_dump_json())
    data["extractions"][0]["arguments"][0]["span"] = None
    data["provenance"]["source"] = "gold"
    record = Record.model_validate(data)
    line = record.model_dump_json()
    assert "null" not in line
    on_disk = json.loads(line)
    assert on_disk["extractions"][0]["arguments"][0]["span"] == [-1, -1]
    assert on_disk["provenance"]["endpoint"] == ""
    again = Record.model_validate_json(line)
    assert again == record
    assert again.extractions[0].arguments[0].span is None and again.provenance.endpoint is None
    assert Element.model_validate({"text": "x", "span": []}).span is None


def test_a_newer_minor_version_is_read_without_its_new_fields() -> None:
    """Schema 1.1 added ``provenance.constraint``; from now on a reader skips what a newer minor
    version added (here a made-up 1.9 with new keys at every level), and refuses unknown keys of
    its own version (a typo is still an error)."""
    sentence = Sentence.from_text("Marie Curie discovered polonium .", "en", pretokenized=True)
    record = Record(sentence=sentence, provenance=Provenance(source=Source.llm, model="m"), extractions=[
        Extraction(predicate=Element(text="discovered", span=(2, 3)),
                   arguments=[Argument(role="arg0", text="Marie Curie", span=(0, 2))])])
    plain = json.loads(record.model_dump_json())
    assert SCHEMA_VERSION == "1.2" and "constraint" not in plain["provenance"]  # written only when set
    provenance = Provenance(source=Source.llm, constraint="grammar")
    constrained = record.model_copy(update={"provenance": provenance})
    data = json.loads(constrained.model_dump_json())
    assert data["provenance"]["constraint"] == "grammar"
    assert Record.model_validate(data).provenance.constraint == "grammar"
    data.update(schema_version="1.9", added_later=1)
    data["provenance"]["added_later"] = "x"
    data["sentence"]["added_later"] = 2
    data["extractions"][0]["arguments"][0]["added_later"] = 3
    future = Record.model_validate(data)
    assert future.provenance.constraint == "grammar"
    assert future.extractions[0].arguments[0].text == "Marie Curie"
    data["schema_version"] = SCHEMA_VERSION
    with pytest.raises(ValueError, match="added_later"):
        Record.model_validate(data)
