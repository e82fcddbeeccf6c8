"""What a prompt file and a language-notes file may contain, as pydantic models.

A prompt is reviewed as a YAML file (``prompts/<id>.yaml``, ``prompts/languages/<lang>.yaml``), so
a typo there (``variabels:``, an unknown variable kind, a misspelt answer model) must fail at load
time with the file and the field named, not as a ``KeyError`` at the first request or, worse, as a
key silently ignored. Unknown keys are refused (``extra="forbid"``) for the same reason.

These models describe the files only; :mod:`.prompts` turns them into a
:class:`~openie4pp.annotate.prompts.PromptTemplate` (checking what needs more than one file: the
id against the file name, the few-shot answers against the answer model, the placeholders against
the declared variables).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from openie4pp.errors import UsageError

from .contract import RESPONSE_MODELS, AnswerModel

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

__all__ = [
    "BUILTINS",
    "LanguageFile",
    "PromptError",
    "PromptFile",
    "Root",
    "VariableKind",
    "parse_file",
    "read_yaml",
]

Root = Traversable | Path
"""A folder of prompt files: the installed package's (a :class:`Traversable`) or a path."""

VariableKind = Literal["text", "json", "triples", "indexed_triples"]
"""How a variable's value is written into the prompt (:func:`~.prompt_values.format_variable`)."""

BUILTINS = ("lang", "language", "language_notes", "target_lang")
"""Filled from the ``lang`` argument; callers may not pass them. For ``translate`` and ``project``
``lang`` *is* the target language (its notes are the ones that matter), so a separate
``target_lang`` would only be a chance to disagree."""


class PromptError(UsageError):
    """A prompt file that cannot be used, or a render call with missing or unknown variables."""


class _FileModel(BaseModel):
    """Strict about keys (a misspelt one is an error), lenient about scalars (``version: 1.1``
    written without quotes is the string ``"1.1"``)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def _empty_as_default(value: Any, default: Any) -> Any:
    """YAML writes an empty section as ``null`` (``notes:`` with nothing under it): the default."""
    return default if value is None else value


class FewShotFile(_FileModel):
    """One worked example: the user message's variables (in ``lang``) and the model's answer."""

    lang: str
    variables: dict[str, Any]
    assistant: dict[str, Any]
    """The answer, checked against the prompt's answer model by the loader."""


class PromptFile(_FileModel):
    """``prompts/<id>.yaml``."""

    id: str
    version: str
    response: str
    """The answer model, by its schema's name (:data:`~.contract.RESPONSE_MODELS`)."""
    system: str
    user: str
    variables: dict[str, VariableKind]
    few_shot: list[FewShotFile] = Field(default_factory=list)
    max_tokens: int = 512

    @field_validator("response")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in RESPONSE_MODELS:
            raise ValueError(f"unknown response model {value!r} ({', '.join(RESPONSE_MODELS)})")
        return value

    @field_validator("variables")
    @classmethod
    def _not_builtin(cls, value: dict[str, VariableKind]) -> dict[str, VariableKind]:
        reserved = sorted(set(value) & set(BUILTINS))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} are filled from the language and cannot be declared")
        return value

    @field_validator("few_shot", mode="before")
    @classmethod
    def _no_examples(cls, value: Any) -> Any:
        return _empty_as_default(value, [])

    @property
    def response_model(self) -> type[AnswerModel]:
        return RESPONSE_MODELS[self.response]


class LanguageFile(_FileModel):
    """``prompts/languages/<lang>.yaml``: notes for every prompt, and per prompt id."""

    lang: str | None = None
    """Defaults to the file name, and must equal it when given."""
    name: str = ""
    notes: list[str] = Field(default_factory=list)
    prompt_notes: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("name", mode="before")
    @classmethod
    def _no_name(cls, value: Any) -> Any:
        return _empty_as_default(value, "")

    @field_validator("notes", mode="before")
    @classmethod
    def _no_notes(cls, value: Any) -> Any:
        return _empty_as_default(value, [])

    @field_validator("prompt_notes", mode="before")
    @classmethod
    def _no_prompt_notes(cls, value: Any) -> Any:
        return _empty_as_default(value, {})

    @field_validator("notes")
    @classmethod
    def _strip_notes(cls, value: list[str]) -> list[str]:
        """Folded YAML (``>-``) may leave edge whitespace; the hash should not depend on it."""
        return [note.strip() for note in value]

    @field_validator("prompt_notes")
    @classmethod
    def _strip_prompt_notes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return {prompt_id: [note.strip() for note in notes] for prompt_id, notes in value.items()}


def read_yaml(path: Root) -> dict[str, Any]:
    """The top-level mapping of a YAML file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping at the top level")
    return data


FileModel = TypeVar("FileModel", bound=_FileModel)


def parse_file(model: type[FileModel], data: dict[str, Any], where: str) -> FileModel:
    """``data`` as ``model``, or a :class:`PromptError` naming the file and each bad field by its
    dotted path (``few_shot.0.lang: Field required``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            field = ".".join(str(part) for part in error["loc"]) or "(top level)"
            problems.append(f"{field}: {error['msg'].removeprefix('Value error, ')}")
        raise PromptError(f"{where}: {'; '.join(problems)}") from None
