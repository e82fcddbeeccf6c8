"""Versioned prompt templates: loading, rendering, hashing.

Prompts live as YAML files in the ``openie4pp.prompts`` package (``prompts/`` in the checkout),
one per prompt id, with per-language notes in ``prompts/languages/<lang>.yaml``. Keeping them
out of the code lets a prompt change be reviewed as text, and the **hash** of the canonical
template (texts, few-shot examples, every language note and the answer schema) goes into each
request and each record's provenance, so data made with different prompts never mixes
unnoticed, even when someone forgot to bump ``version``.

Rendering uses :class:`string.Template` (``$name``), never Jinja: no new dependency, no logic
in templates, and substituted values are never re-interpreted, so ``$`` or ``{}`` in a
sentence is inert. Untrusted text only ever goes into the *user* message, between tags
(``<sentence>...</sentence>``); any closing tag of ours inside the data is neutralised
(``</sentence>`` -> ``<\\/sentence>``, which inside JSON strings still decodes to the original),
so data cannot end its own section and pose as instructions. The system prompt only receives
trusted values: the language's name, code and notes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Mapping
from functools import cached_property, lru_cache
from importlib import resources
from string import Template
from typing import Any

from openie4pp.text import primary_subtag

from .contract import AnswerModel
from .llm import ChatRequest, Message, schema_digest
from .prompt_files import (
    BUILTINS,
    LanguageFile,
    PromptError,
    PromptFile,
    Root,
    VariableKind,
    parse_file,
    read_yaml,
)
from .prompt_values import format_variable, jsonable, neutralise_tags

__all__ = [
    "LanguageNotes",
    "PromptError",
    "PromptTemplate",
    "base_lang",
    "load_prompt",
    "neutralise_tags",
]

PACKAGE = "openie4pp.prompts"


base_lang = primary_subtag
"""The primary language subtag (:func:`openie4pp.text.primary_subtag`), kept under the name callers import."""


@dataclasses.dataclass(frozen=True)
class LanguageNotes:
    """The notes of one language: general ones, plus ones that apply to a single prompt id."""

    lang: str
    name: str
    notes: tuple[str, ...]
    prompt_notes: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def for_prompt(self, prompt_id: str) -> tuple[str, ...]:
        return self.notes + tuple(self.prompt_notes.get(prompt_id, ()))

    def canonical(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "name": self.name,
            "notes": list(self.notes),
            "prompt_notes": {k: list(v) for k, v in sorted(self.prompt_notes.items())},
        }


@dataclasses.dataclass(frozen=True)
class FewShot:
    """One worked example: the variables of a user message in ``lang`` and the model's answer."""

    lang: str
    variables: Mapping[str, Any]
    answer: str
    """The answer exactly as the response model serialises it (``model_dump_json()``)."""


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    """A loaded prompt. ``languages`` holds the notes of every language file (and ``default``),
    so that :attr:`hash` changes when any of them does."""

    id: str
    version: str
    response_model: type[AnswerModel]
    system: str
    user: str
    variables: Mapping[str, VariableKind]
    few_shot: tuple[FewShot, ...]
    languages: Mapping[str, LanguageNotes]
    max_tokens: int = 512

    @cached_property
    def hash(self) -> str:
        """First 16 hex digits of the sha256 of the canonical content (see the module docstring)."""
        canonical = {
            "id": self.id,
            "version": self.version,
            "response": self.response_model.__name__,
            "schema": self.response_model.model_json_schema(),
            "system": self.system,
            "user": self.user,
            "variables": dict(sorted(self.variables.items())),
            "max_tokens": self.max_tokens,
            "few_shot": [[s.lang, jsonable(s.variables), s.answer] for s in self.few_shot],
            "languages": {k: v.canonical() for k, v in sorted(self.languages.items())},
        }
        text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def schema_name(self) -> str:
        return self.response_model.schema_name

    @cached_property
    def _tags(self) -> tuple[str, ...]:
        return tuple(sorted(set(re.findall(r"</([A-Za-z_][\w-]*)>", self.user))))

    def notes_for(self, lang: str) -> LanguageNotes:
        """The notes of ``lang``'s primary subtag, or the ``default`` notes named by the code."""
        code = base_lang(lang)
        notes = self.languages.get(code)
        if notes is not None:
            return notes
        default = self.languages.get("default", LanguageNotes("default", "", ()))
        return dataclasses.replace(default, lang=code, name=code)

    def render(self, lang: str, **variables: Any) -> tuple[Message, ...]:
        """System prompt with ``lang``'s notes, the few-shot pairs, then the user message.

        Raises :class:`PromptError` for a missing, unknown or reserved variable, and for a value
        that does not fit its declared kind.
        """
        notes = self.notes_for(lang)
        system = self._systems.get(notes.lang)
        if system is None:  # the same for every sentence of a language: rendered once per language
            system = Message("system", self._substitute(self.system, self._builtins(notes), "system"))
            self._systems[notes.lang] = system
        user = Message("user", self._render_user(notes, variables))
        return (system, *self._shot_messages, user)

    @cached_property
    def _systems(self) -> dict[str, Message]:
        return {}

    @cached_property
    def _shot_messages(self) -> tuple[Message, ...]:
        """The few-shot pairs: the same for every language, so rendered once."""
        messages: list[Message] = []
        for shot in self.few_shot:
            messages.append(Message("user", self._render_user(self.notes_for(shot.lang), shot.variables)))
            messages.append(Message("assistant", shot.answer))
        return tuple(messages)

    @cached_property
    def _schema(self) -> dict[str, Any]:
        return self.response_model.model_json_schema()

    @cached_property
    def _schema_digest(self) -> str:
        return schema_digest(self._schema)

    def request(
        self,
        lang: str,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        seed: int | None = 0,
        purpose: str | None = None,
        **variables: Any,
    ) -> ChatRequest:
        """A :class:`ChatRequest` for this prompt; ``max_tokens`` defaults to the prompt's own and
        ``purpose`` to the prompt id."""
        return ChatRequest(
            messages=self.render(lang, **variables),
            schema_name=self.schema_name,
            schema=self._schema,  # shared, read-only (see ChatRequest.schema)
            schema_digest=self._schema_digest,
            prompt_id=self.id,
            prompt_hash=self.hash,
            temperature=temperature,
            max_tokens=self.max_tokens if max_tokens is None else max_tokens,
            seed=seed,
            purpose=self.id if purpose is None else purpose,
        )

    def _builtins(self, notes: LanguageNotes) -> dict[str, str]:
        lines = notes.for_prompt(self.id)
        return {
            "lang": notes.lang,
            "language": notes.name or notes.lang,
            "language_notes": "\n".join(f"- {line}" for line in lines) if lines else "- (none)",
        }

    @cached_property
    def _declared(self) -> frozenset[str]:
        """The declared variable names, when none is a builtin's (a file cannot declare one; a
        template built in code might): the set a well-formed call passes exactly."""
        names = frozenset(self.variables)
        return frozenset() if names & set(BUILTINS) else names

    @cached_property
    def _builtins_by_notes(self) -> dict[tuple[Any, ...], dict[str, str]]:
        return {}

    def _render_user(self, notes: LanguageNotes, variables: Mapping[str, Any]) -> str:
        if not self._declared or variables.keys() != self._declared:  # else nothing to complain about
            self._check_variables(variables)
        # the same for every sentence of a language: keyed by all that _builtins reads
        key = (notes.lang, notes.name, notes.notes, notes.prompt_notes.get(self.id))
        builtins = self._builtins_by_notes.get(key)
        if builtins is None:
            builtins = self._builtins_by_notes[key] = self._builtins(notes)
        values = dict(builtins)
        for name, kind in self.variables.items():
            values[name] = neutralise_tags(format_variable(name, kind, variables[name]), self._tags)
        return self._substitute(self.user, values, "user")

    def _check_variables(self, variables: Mapping[str, Any]) -> None:
        reserved = sorted(set(variables) & set(BUILTINS))
        if reserved:
            raise PromptError(
                f"prompt {self.id!r}: {', '.join(reserved)} come from the lang argument "
                "(render translate and project with lang=<the target language>)"
            )
        missing = sorted(set(self.variables) - set(variables))
        unknown = sorted(set(variables) - set(self.variables))
        if missing or unknown:
            parts = [f"missing {', '.join(missing)}"] if missing else []
            parts += [f"unknown {', '.join(unknown)}"] if unknown else []
            raise PromptError(
                f"prompt {self.id!r} v{self.version}: {'; '.join(parts)} "
                f"(expects {', '.join(sorted(self.variables))})"
            )

    def _substitute(self, template: str, values: Mapping[str, str], part: str) -> str:
        try:
            pieces = _pieces(template)
            if pieces is None:  # an invalid placeholder: string.Template raises the error
                return _template(template).substitute(values)
            out = []
            for literal, name in pieces:
                out.append(literal)
                if name is not None:
                    value = values[name]
                    out.append(value if type(value) is str else str(value))
            return "".join(out)
        except KeyError as exc:  # a $name in the template that is neither declared nor built in
            raise PromptError(
                f"prompt {self.id!r}: the {part} template uses undeclared ${exc.args[0]}"
            ) from None
        except ValueError as exc:  # a lone $ in the template: write $$
            raise PromptError(f"prompt {self.id!r}: bad placeholder in the {part} template: {exc}") from None


@functools.lru_cache(maxsize=256)
def _template(text: str) -> Template:
    return Template(text)


@functools.lru_cache(maxsize=256)
def _pieces(text: str) -> tuple[tuple[str, str | None], ...] | None:
    """``text`` as :class:`string.Template` reads it, once: (literal, placeholder name or None)
    pairs, ``$$`` already turned into ``$``; None when it has an invalid placeholder. Substituting
    from these gives what ``Template(text).substitute`` gives, without its regex and callback per
    placeholder on every request."""
    pieces: list[tuple[str, str | None]] = []
    literal: list[str] = []
    last = 0
    for match in Template.pattern.finditer(text):
        literal.append(text[last:match.start()])
        last = match.end()
        if match.group("escaped") is not None:
            literal.append(Template.delimiter)
            continue
        name = match.group("named") or match.group("braced")
        if name is None:
            return None
        pieces.append(("".join(literal), name))
        literal = []
    literal.append(text[last:])
    pieces.append(("".join(literal), None))
    return tuple(pieces)


# ---------------------------------------------------------------------------------------------
# Loading



def load_prompt(prompt_id: str, version: str | None = None, *, root: Root | None = None) -> PromptTemplate:
    """Load ``<root>/<prompt_id>.yaml`` (``root`` defaults to the installed ``openie4pp.prompts``).

    With ``version``, the current file must have it, or an archived copy
    ``archive/<prompt_id>-<version>.yaml`` must exist; anything else is an error rather than a
    silent use of another version.
    """
    if root is None:
        return _load_packaged(prompt_id, version)
    return _load(prompt_id, version, root)


@lru_cache(maxsize=64)
def _load_packaged(prompt_id: str, version: str | None) -> PromptTemplate:
    return _load(prompt_id, version, resources.files(PACKAGE))


def _load(prompt_id: str, version: str | None, root: Root) -> PromptTemplate:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", prompt_id):
        raise PromptError(f"bad prompt id {prompt_id!r}")
    path = root / f"{prompt_id}.yaml"
    if not path.is_file():
        available = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
        raise PromptError(f"no prompt {prompt_id!r} (available: {', '.join(available) or 'none'})")
    data = read_yaml(path)
    if version is not None and str(data.get("version")) != version:
        archived = root / "archive" / f"{prompt_id}-{version}.yaml"
        if not archived.is_file():
            raise PromptError(
                f"prompt {prompt_id!r} is at version {data.get('version')}, and no archived "
                f"version {version} exists (archive/{prompt_id}-{version}.yaml)"
            )
        path, data = archived, read_yaml(archived)
    where = str(path)
    return _build(prompt_id, parse_file(PromptFile, data, where), _load_languages(root / "languages"), where)


def _load_languages(folder: Root) -> dict[str, LanguageNotes]:
    languages: dict[str, LanguageNotes] = {}
    if not folder.is_dir():
        return languages
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".yaml"):
            continue
        code = path.name[:-5]
        notes = parse_file(LanguageFile, read_yaml(path), str(path))
        if notes.lang is not None and notes.lang != code:
            raise PromptError(f"{path}: lang {notes.lang!r} differs from the file name")
        languages[code] = LanguageNotes(
            lang=code,
            name=notes.name,
            notes=tuple(notes.notes),
            prompt_notes={k: tuple(v) for k, v in notes.prompt_notes.items()},
        )
    return languages


def _build(prompt_id: str, file: PromptFile, languages: dict[str, LanguageNotes],
           where: str) -> PromptTemplate:
    """The template of a parsed file, checked as a whole: every example answer validates and every
    placeholder is declared (at load time, not at the first request)."""
    if file.id != prompt_id:
        raise PromptError(f"{where}: id {file.id!r} differs from the file name")
    model = file.response_model
    shots = []
    for i, shot in enumerate(file.few_shot):
        try:
            answer = model.model_validate(shot.assistant).model_dump_json()
        except ValueError as exc:
            raise PromptError(f"{where}: few_shot[{i}] is not usable: {exc}") from None
        shots.append(FewShot(shot.lang, shot.variables, answer))
    template = PromptTemplate(
        id=prompt_id,
        version=file.version,
        response_model=model,
        system=file.system,
        user=file.user,
        variables=file.variables,
        few_shot=tuple(shots),
        languages=languages,
        max_tokens=file.max_tokens,
    )
    try:
        template._shot_messages  # noqa: B018  fail at load time, not at the first request
    except PromptError as exc:
        raise PromptError(f"{where}: few_shot: {exc}") from None
    template._substitute(template.system, template._builtins(template.notes_for("en")), "system")
    return template
