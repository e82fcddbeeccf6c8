"""Variables as prompt text: how a value of each declared kind is written into a user message.

Untrusted text only ever goes into the user message, between our tags; :func:`neutralise_tags`
makes any closing tag of ours inside a value inert, so data cannot end its own section and pose as
instructions. Triples are written as compact JSON with ``ensure_ascii=False`` (Chinese or Arabic
stay readable, and copyable by the model).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .contract import AnswerTriple
from .prompt_files import PromptError, VariableKind

__all__ = ["format_variable", "jsonable", "neutralise_tags"]


def neutralise_tags(value: str, tags: Iterable[str]) -> str:
    """Make every closing tag of ours inside ``value`` inert: ``</sentence>`` -> ``<\\/sentence>``.

    Case and spaces are ignored (``< / Sentence >`` is caught too): a model would read them as
    the same tag. In JSON strings ``\\/`` is an escaped ``/``, so JSON data keeps its meaning.
    """
    if "<" not in value:  # every closing tag starts with one: nothing to neutralise
        return value
    pattern = _closing_tags(tuple(tags))
    return value if pattern is None else pattern.sub(r"<\\/\1", value)


@functools.lru_cache(maxsize=64)
def _closing_tags(tags: tuple[str, ...]) -> re.Pattern[str] | None:
    names = "|".join(re.escape(t) for t in tags)
    return re.compile(rf"<\s*/\s*({names})(?=[\s>/]|$)", re.IGNORECASE) if names else None


def format_variable(name: str, kind: VariableKind, value: Any) -> str:
    """A variable's value as prompt text: plain text, or compact JSON (``ensure_ascii=False``,
    so Chinese or Arabic stay readable and copyable)."""
    if kind == "text":
        if not isinstance(value, str):
            raise PromptError(f"variable {name!r} must be a string, not {type(value).__name__}")
        return value
    if kind == "json":
        return _dumps(jsonable(value))
    if isinstance(value, str):  # already JSON: read it so that it is checked and re-indexed alike
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise PromptError(
                f"variable {name!r}: a string value must be a JSON list of triples: {exc}"
            ) from None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise PromptError(f"variable {name!r} must be a list of triples, not {type(value).__name__}")
    triples = [_plain_triple(item) or _triple(name, item).model_dump() for item in value]
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


_TRIPLE_KEYS = ("subject", "relation", "object")


def _plain_triple(item: Any) -> dict[str, Any] | None:
    """``AnswerTriple.model_validate(item).model_dump()`` for the usual item, a dict of strings
    (what the judge's listing is), without pydantic (~8 µs a triple); None for anything else,
    which goes through the model (coercion of numbers and nulls, errors)."""
    if type(item) is not dict:
        return None
    subject, relation, obj = (item.get(k) for k in _TRIPLE_KEYS)
    extra = item.get("extra", [])
    if (type(subject) is not str or type(relation) is not str or type(obj) is not str
            or type(extra) is not list or any(type(e) is not str for e in extra)):
        return None
    return {"subject": subject, "relation": relation, "object": obj, "extra": list(extra)}


def _triple(name: str, item: Any) -> AnswerTriple:
    """An :class:`AnswerTriple` from one, a mapping or a ``(subject, relation, object, *extra)`` tuple."""
    try:
        if isinstance(item, AnswerTriple):
            return item
        if isinstance(item, BaseModel):
            item = item.model_dump()
        if isinstance(item, Mapping):
            return AnswerTriple.model_validate({k: v for k, v in item.items() if k != "index"})
        if isinstance(item, Sequence) and not isinstance(item, str) and len(item) >= 3:
            return AnswerTriple(subject=item[0], relation=item[1], object=item[2], extra=list(item[3:]))
    except ValueError as exc:
        raise PromptError(f"variable {name!r}: not a triple: {exc}") from None
    raise PromptError(f"variable {name!r}: {item!r} is not a triple")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": "))
"""``json.dumps(value, ensure_ascii=False, separators=(", ", ": "))`` without an encoder per call."""


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
