"""The answer contract shared by the prompts, the backends and the pipeline.

Every prompt names one of these models as its ``response``; its JSON schema goes into the
:class:`~openie4pp.annotate.llm.ChatRequest` (for constrained decoding where a server offers it)
and :func:`parse_answer` turns whatever text came back into an instance of it.

The models are deliberately small and flat: a 270M-parameter model has to fill them, so
there are few fields, short names, descriptions that say what goes where, and defaults for
everything that may be left out. Validation is lenient about form (numbers where strings were
meant, a lone string where a list was meant, unknown extra keys) and strict about structure,
because form slips are cheap to repair while a wrong structure means the model misunderstood.

Servers without structured output answer in free text, so :func:`parse_answer` is tolerant:
it strips code fences and chatter, takes the first JSON value that parses, repairs trailing
commas and Python-style quoting, and wraps a bare list (or a lone item) for the models whose
only field is a list. What it cannot repair raises :class:`AnswerInvalid` with a short detail
that :func:`reask_message` sends back to the model.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import GenerateJsonSchema

from .llm import Message

__all__ = [
    "RESPONSE_MODELS",
    "AnswerInvalid",
    "AnswerModel",
    "AnswerTriple",
    "ExtractionAnswer",
    "ProjectionAnswer",
    "TranslationAnswer",
    "Verdict",
    "VerificationAnswer",
    "parse_answer",
    "reask_message",
]


class AnswerModel(BaseModel):
    """Base of every answer: unknown keys are ignored (small models add ``"confidence"``, notes...)
    and numbers are accepted where text was asked for (``"object": 1998``)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    schema_name: ClassVar[str] = "answer"
    """The name sent with the schema (OpenAI ``response_format.json_schema.name``)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The schema as the model sees it: definitions under their wire names (:data:`WIRE_NAMES`)."""
        kwargs.setdefault("schema_generator", _WireNamedSchema)
        return super().model_json_schema(*args, **kwargs)


WIRE_NAMES = {"AnswerTriple": "Triple"}
"""Python class name -> the name the JSON schema gives it. The schema is sent to the model and
hashed into every prompt's version and cache key, so renaming a class in the code must not
change it: the model's answer has a triple; "answer triple" is only the code's way to tell it
from the dataset's extractions (:mod:`openie4pp.schema`)."""


class _WireNamedSchema(GenerateJsonSchema):
    def normalize_name(self, name: str) -> str:
        return super().normalize_name(WIRE_NAMES.get(name, name))


# One triple of an LLM answer: not yet a dataset Extraction (openie4pp.schema), which is what
# grounding makes of it. The docstring below is the schema's "description", sent to the model and
# hashed into every prompt version: it stays word for word.
class AnswerTriple(AnswerModel):
    """One extraction. Every element is meant to be copied from the sentence; grounding checks it."""

    model_config = ConfigDict(title=WIRE_NAMES["AnswerTriple"])

    subject: str = Field(description="who or what the fact is about, copied from the sentence")
    relation: str = Field(
        description="the relation phrase (verb with its auxiliaries), copied from the sentence"
    )
    object: str = Field(description='the first argument after the relation; "" if there is none')
    extra: list[str] = Field(
        default_factory=list,
        description="further arguments in sentence order (time, place, second object...); often empty",
    )

    @field_validator("extra", mode="before")
    @classmethod
    def _extra_as_list(cls, value: Any) -> Any:
        """``null`` means no extra arguments and a lone string means one; both are common slips."""
        if value is None:
            return []
        if isinstance(value, (str, int, float)):
            return [str(value)] if str(value).strip() else []
        return value

    @field_validator("object", mode="before")
    @classmethod
    def _null_object(cls, value: Any) -> Any:
        return "" if value is None else value


class ExtractionAnswer(AnswerModel):
    """Stage 1, ``extract`` mode: the triples of one sentence."""

    schema_name: ClassVar[str] = "extraction"
    triples: list[AnswerTriple] = Field(description="every fact stated in the sentence; [] if there is none")


class TranslationAnswer(AnswerModel):
    """Stage 1, ``project`` mode, step (a): the translated sentence."""

    schema_name: ClassVar[str] = "translation"
    translation: str = Field(description="the whole sentence translated into the target language")


class ProjectionAnswer(AnswerModel):
    """Stage 1, ``project`` mode, step (b): the English triples carried over to the translation."""

    schema_name: ClassVar[str] = "projection"
    triples: list[AnswerTriple] = Field(
        description="for each English triple, in order, the corresponding triple copied from the translation"
    )


class Verdict(AnswerModel):
    """Stage 2: the judgement of one candidate triple."""

    index: int = Field(description="the candidate's index, as given")
    verdict: Literal["accept", "fix", "reject"] = Field(
        description="accept: correct as is; fix: nearly right, corrected in 'fixed'; reject: wrong"
    )
    reason: str = Field(default="", description="a few words on why, for fix and reject")
    fixed: AnswerTriple | None = Field(default=None, description="the corrected triple, only for 'fix'")

    @field_validator("verdict", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        """``"Accept"``/``"REJECT "`` are the same verdict; only the spelling slipped."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("reason", mode="before")
    @classmethod
    def _null_reason(cls, value: Any) -> Any:
        return "" if value is None else value

    @model_validator(mode="after")
    def _fix_has_fixed(self) -> Verdict:
        """A ``fix`` without the corrected triple cannot be applied; saying so in the re-ask is
        better than silently turning it into an accept or a reject."""
        if self.verdict == "fix" and self.fixed is None:
            raise ValueError("a 'fix' verdict needs the corrected triple in 'fixed'")
        return self


class VerificationAnswer(AnswerModel):
    """Stage 2: one verdict per candidate."""

    schema_name: ClassVar[str] = "verification"
    verdicts: list[Verdict] = Field(description="one verdict for every candidate, by index")


RESPONSE_MODELS: dict[str, type[AnswerModel]] = {
    WIRE_NAMES.get(model.__name__, model.__name__): model
    for model in (ExtractionAnswer, TranslationAnswer, ProjectionAnswer, VerificationAnswer, AnswerTriple)
}
"""Answer models by their schema's name: what a prompt file's ``response`` refers to."""


class AnswerInvalid(ValueError):
    """An answer that could not be read as its model. ``detail`` is short and meant for the model."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def reask_message(error: AnswerInvalid | str) -> Message:
    """The user message that asks again after an invalid answer (append it after the bad answer)."""
    detail = error.detail if isinstance(error, AnswerInvalid) else str(error)
    return Message(
        "user",
        f"Your answer was not valid: {detail.rstrip('.')}. Answer again with only JSON matching the schema.",
    )


T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)
_MAX_DETAIL = 240


def parse_answer(text: str, model: type[T]) -> T:
    """Read ``text`` as an instance of ``model``, repairing what a small model commonly gets wrong.

    Raises :class:`AnswerInvalid` when no JSON value can be found, when the JSON is cut off, or
    when it does not validate; the detail names the first problems by field path.
    """
    if not text or not text.strip():
        raise AnswerInvalid("the answer was empty")
    try:
        value = _whole_json(text)
        if value is _NOTHING:
            body = _unfence(text)
            value, problem = _first_json_value(body)
            if value is _NOTHING:
                raise AnswerInvalid(problem or "no JSON object found")
        value = _wrap_for(value, model)
        return model.model_validate(value)
    except ValidationError as exc:
        raise AnswerInvalid(_summarise(exc)) from None
    except RecursionError:  # a hostile or broken answer nested thousands deep: invalid, not a crash
        raise AnswerInvalid("the JSON is nested too deeply") from None


def _whole_json(text: str) -> Any:
    """What the search below finds when the whole answer is one JSON object or array without a code
    fence (structured output): it starts at the first bracket, ends at the matching one (skipping
    strings alike) and parses that. At once, without its Python scan (~20 µs); else ``_NOTHING``."""
    if "```" in text:
        return _NOTHING
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return _NOTHING
    return value if isinstance(value, (dict, list)) else _NOTHING


def _unfence(text: str) -> str:
    """The content of the first code fence if there is one (an unclosed fence runs to the end)."""
    match = _FENCE.search(text)
    return match.group(1) if match and match.group(1).strip() else text


_NOTHING: Any = object()


def _first_json_value(text: str) -> tuple[Any, str]:
    """The first ``{...}`` or ``[...]`` in ``text`` that parses, after repairs; or a reason why none did.

    Prose may contain stray brackets (``"the {subject}"``), so each opening bracket is tried in
    turn; the reason reported is that of the first candidate, which is usually the real answer.
    """
    first_problem = ""
    start = _next_bracket(text, 0)
    while start is not None:
        end = _balanced_end(text, start)
        if end is None:  # everything after lies inside it: a piece of a cut-off answer is no answer
            return _NOTHING, first_problem or "the JSON is incomplete (cut off before its closing bracket)"
        value = _loads(text[start:end])
        if value is not _NOTHING:
            return value, ""
        first_problem = first_problem or "the JSON could not be parsed"
        start = _next_bracket(text, end)  # not inside it, for the same reason
    return _NOTHING, first_problem


_OPENING = re.compile(r"[{\[]")


def _next_bracket(text: str, begin: int) -> int | None:
    match = _OPENING.search(text, begin)
    return match.start() if match else None


def _balanced_end(text: str, start: int) -> int | None:
    """Index one past the bracket closing the one at ``start``, skipping strings; None if unclosed."""
    depth = 0
    quote = ""
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'" and (ch == '"' or _opens_single_quote(text, i)):
            quote = ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _opens_single_quote(text: str, i: int) -> bool:
    """A ``'`` starts a Python-style string only right after a structural character, so that
    apostrophes inside prose or double-quoted strings (``Pittsburgh's``) are not mistaken for one."""
    j = i - 1
    while j >= 0 and text[j] in " \t\r\n":
        j -= 1
    return j >= 0 and text[j] in "{[,:"


_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


def _loads(candidate: str) -> Any:
    """JSON, then JSON without trailing commas, then a Python literal (single quotes, True/None)."""
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    repaired = _strip_trailing_commas(candidate)
    try:
        return json.loads(repaired)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(repaired)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return _NOTHING
    return value if isinstance(value, (dict, list)) else _NOTHING


def _strip_trailing_commas(candidate: str) -> str:
    """Remove commas before ``}``/``]`` outside strings (the regex alone would also edit strings)."""
    out: list[str] = []
    last = 0
    for start, end in _string_spans(candidate):
        out.append(_TRAILING_COMMA.sub(r"\1", candidate[last:start]))
        out.append(candidate[start:end])
        last = end
    out.append(_TRAILING_COMMA.sub(r"\1", candidate[last:]))
    return "".join(out)


def _string_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(text):
        if text[i] == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            spans.append((i, min(j + 1, len(text))))
            i = j + 1
        else:
            i += 1
    return spans


@functools.lru_cache(maxsize=64)
def _list_field(model: type[BaseModel]) -> str | None:
    """The field name of a model whose only required field is a list (``triples``, ``verdicts``);
    once per model (a class: its fields are fixed)."""
    required = [name for name, info in model.model_fields.items() if info.is_required()]
    if len(required) != 1:
        return None
    annotation = model.model_fields[required[0]].annotation
    return required[0] if getattr(annotation, "__origin__", None) is list else None


def _wrap_for(value: Any, model: type[BaseModel]) -> Any:
    """Wrap ``[...]`` as ``{"triples": [...]}`` and a lone triple as a one-item list, for list-only models."""
    field = _list_field(model)
    if field is None:
        return value
    if isinstance(value, list):
        return {field: value}
    if isinstance(value, dict) and field not in value:
        item_model = _item_model(model, field)
        if item_model is not None and all(k in value for k in _required(item_model)):
            return {field: [value]}
    return value


def _item_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    args = getattr(model.model_fields[field].annotation, "__args__", ())
    item = args[0] if args else None
    return item if isinstance(item, type) and issubclass(item, BaseModel) else None


def _required(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if info.is_required()]


def _summarise(exc: ValidationError) -> str:
    """``triples.0.relation: Field required; ...`` for the first three errors, kept short."""
    parts = []
    errors = exc.errors(include_url=False, include_input=False)
    for error in errors[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "answer"
        parts.append(f"{where}: {error['msg']}")
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    detail = "; ".join(parts)
    return detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 3] + "..."
