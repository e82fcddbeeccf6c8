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
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from openie4pp.errors import UsageError

try:
    from importlib.resources.abc import Traversable
except ImportError:  # Python 3.10
    from importlib.abc import Traversable

from openie4pp.annotate.contract import RESPONSE_MODELS, AnswerModel, Triple
from openie4pp.annotate.llm import ChatRequest, Message, schema_digest

__all__ = [
    "LanguageNotes",
    "PromptError",
    "PromptTemplate",
    "base_lang",
    "load_prompt",
    "neutralise_tags",
]

PACKAGE = "openie4pp.prompts"
VariableKind = Literal["text", "json", "triples", "indexed_triples"]
_KINDS: tuple[str, ...] = ("text", "json", "triples", "indexed_triples")
BUILTINS = ("lang", "language", "language_notes", "target_lang")
"""Filled from the ``lang`` argument; callers may not pass them. For ``translate`` and ``project``
``lang`` *is* the target language (its notes are the ones that matter), so a separate
``target_lang`` would only be a chance to disagree."""


class PromptError(UsageError):
    """A prompt file that cannot be used, or a render call with missing or unknown variables."""


def base_lang(lang: str) -> str:
    """The primary language subtag of a BCP-47 tag: ``zh-Hans`` -> ``zh``, ``pt_BR`` -> ``pt``."""
    return re.split(r"[-_]", lang.strip(), maxsplit=1)[0].lower()


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
            "few_shot": [[s.lang, _jsonable(s.variables), s.answer] for s in self.few_shot],
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

    def _render_user(self, notes: LanguageNotes, variables: Mapping[str, Any]) -> str:
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
        values = self._builtins(notes)
        for name, kind in self.variables.items():
            values[name] = neutralise_tags(_format(name, kind, variables[name]), self._tags)
        return self._substitute(self.user, values, "user")

    def _substitute(self, template: str, values: Mapping[str, str], part: str) -> str:
        try:
            return _template(template).substitute(values)
        except KeyError as exc:  # a $name in the template that is neither declared nor built in
            raise PromptError(
                f"prompt {self.id!r}: the {part} template uses undeclared ${exc.args[0]}"
            ) from None
        except ValueError as exc:  # a lone $ in the template: write $$
            raise PromptError(f"prompt {self.id!r}: bad placeholder in the {part} template: {exc}") from None


def neutralise_tags(value: str, tags: Iterable[str]) -> str:
    """Make every closing tag of ours inside ``value`` inert: ``</sentence>`` -> ``<\\/sentence>``.

    Case and spaces are ignored (``< / Sentence >`` is caught too): a model would read them as
    the same tag. In JSON strings ``\\/`` is an escaped ``/``, so JSON data keeps its meaning.
    """
    pattern = _closing_tags(tuple(tags))
    return value if pattern is None else pattern.sub(r"<\\/\1", value)


@functools.lru_cache(maxsize=64)
def _closing_tags(tags: tuple[str, ...]) -> re.Pattern[str] | None:
    names = "|".join(re.escape(t) for t in tags)
    return re.compile(rf"<\s*/\s*({names})(?=[\s>/]|$)", re.IGNORECASE) if names else None


@functools.lru_cache(maxsize=256)
def _template(text: str) -> Template:
    return Template(text)


def _format(name: str, kind: VariableKind, value: Any) -> str:
    """A variable's value as prompt text: plain text, or compact JSON (``ensure_ascii=False``,
    so Chinese or Arabic stay readable and copyable)."""
    if kind == "text":
        if not isinstance(value, str):
            raise PromptError(f"variable {name!r} must be a string, not {type(value).__name__}")
        return value
    if kind == "json":
        return _dumps(_jsonable(value))
    if isinstance(value, str):  # already JSON: read it so that it is checked and re-indexed alike
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PromptError(
                f"variable {name!r}: a string value must be a JSON list of triples: {exc}"
            ) from None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise PromptError(f"variable {name!r} must be a list of triples, not {type(value).__name__}")
    triples = [_triple(name, item).model_dump() for item in value]
    if kind == "indexed_triples":  # an index given by the caller is kept: verdicts refer to it
        pairs = enumerate(zip(value, triples, strict=True))
        triples = [{"index": _index(name, item, i), **t} for i, (item, t) in pairs]
    return _dumps(triples)


def _index(name: str, item: Any, position: int) -> int:
    given = item.get("index") if isinstance(item, Mapping) else None
    if given is None:
        return position
    if isinstance(given, bool) or not isinstance(given, int):
        raise PromptError(f"variable {name!r}: index {given!r} is not an integer")
    return given


def _triple(name: str, item: Any) -> Triple:
    """A :class:`Triple` from a Triple, a mapping or a ``(subject, relation, object, *extra)`` tuple."""
    try:
        if isinstance(item, Triple):
            return item
        if isinstance(item, BaseModel):
            item = item.model_dump()
        if isinstance(item, Mapping):
            return Triple.model_validate({k: v for k, v in item.items() if k != "index"})
        if isinstance(item, Sequence) and not isinstance(item, str) and len(item) >= 3:
            return Triple(subject=item[0], relation=item[1], object=item[2], extra=list(item[3:]))
    except ValueError as exc:
        raise PromptError(f"variable {name!r}: not a triple: {exc}") from None
    raise PromptError(f"variable {name!r}: {item!r} is not a triple")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# Loading


Root = Traversable | Path


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
    current = root / f"{prompt_id}.yaml"
    if not current.is_file():
        available = sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))
        raise PromptError(f"no prompt {prompt_id!r} (available: {', '.join(available) or 'none'})")
    data = _read_yaml(current)
    if version is not None and str(data.get("version")) != version:
        archived = root / "archive" / f"{prompt_id}-{version}.yaml"
        if not archived.is_file():
            raise PromptError(
                f"prompt {prompt_id!r} is at version {data.get('version')}, and no archived "
                f"version {version} exists (archive/{prompt_id}-{version}.yaml)"
            )
        data = _read_yaml(archived)
    return _build(prompt_id, data, _load_languages(root / "languages"), str(current))


def _read_yaml(path: Root) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping at the top level")
    return data


def _load_languages(folder: Root) -> dict[str, LanguageNotes]:
    languages: dict[str, LanguageNotes] = {}
    if not folder.is_dir():
        return languages
    for path in sorted(folder.iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".yaml"):
            continue
        data = _read_yaml(path)
        code = str(data.get("lang", path.name[:-5]))
        if code != path.name[:-5]:
            raise PromptError(f"{path}: lang {code!r} differs from the file name")
        prompt_notes = data.get("prompt_notes") or {}
        languages[code] = LanguageNotes(
            lang=code,
            name=str(data.get("name") or ""),
            notes=tuple(str(n).strip() for n in data.get("notes") or ()),
            prompt_notes={str(k): tuple(str(n).strip() for n in v) for k, v in prompt_notes.items()},
        )
    return languages


def _build(
    prompt_id: str, data: Mapping[str, Any], languages: dict[str, LanguageNotes], where: str
) -> PromptTemplate:
    required = ("id", "version", "response", "system", "user", "variables")
    missing = [key for key in required if key not in data]
    if missing:
        raise PromptError(f"{where}: missing {', '.join(missing)}")
    if data["id"] != prompt_id:
        raise PromptError(f"{where}: id {data['id']!r} differs from the file name")
    model = RESPONSE_MODELS.get(str(data["response"]))
    if model is None:
        raise PromptError(
            f"{where}: unknown response model {data['response']!r} ({', '.join(RESPONSE_MODELS)})"
        )
    variables: dict[str, VariableKind] = {}
    for name, kind in dict(data["variables"]).items():
        if kind not in _KINDS or name in BUILTINS:
            raise PromptError(f"{where}: variable {name!r} of kind {kind!r} (kinds: {', '.join(_KINDS)})")
        variables[str(name)] = kind
    shots = []
    for i, shot in enumerate(data.get("few_shot") or ()):
        try:
            answer = model.model_validate(shot["assistant"]).model_dump_json()
            shots.append(FewShot(str(shot["lang"]), dict(shot["variables"]), answer))
        except (KeyError, TypeError, ValueError) as exc:
            raise PromptError(f"{where}: few_shot[{i}] is not usable: {exc}") from None
    template = PromptTemplate(
        id=prompt_id,
        version=str(data["version"]),
        response_model=model,
        system=str(data["system"]),
        user=str(data["user"]),
        variables=variables,
        few_shot=tuple(shots),
        languages=languages,
        max_tokens=int(data.get("max_tokens", 512)),
    )
    template._shot_messages  # noqa: B018  fail at load time, not at the first request
    template._substitute(template.system, template._builtins(template.notes_for("en")), "system")
    return template
