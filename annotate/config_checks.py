"""The checks the annotation config's settings share, and how their failures read.

Every message names the command-line option (``--concurrency 0: must be at least 1``) since most
configs come from the command line; :func:`describe` adds the setting's dotted path
(``pipeline.concurrency``) for configs written by hand or by a script.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from openie4pp.schema import canonical_lang


class StrictSettings(BaseModel):
    """A part of the config: unknown keys are mistakes, and so is any invalid value."""

    model_config = ConfigDict(extra="forbid")


class SettingProblem(ValueError):
    """A check's message, optionally for a setting below the one validated (``path``): cross-setting
    checks run on the part that holds both settings, and must still name the one at fault."""

    def __init__(self, message: str, path: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message, self.path = message, path


def describe(error: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """``error`` as one line: every problem with the dotted path of its setting."""
    return "; ".join(_describe_one(detail, prefix) for detail in error.errors())


def _describe_one(detail: ErrorDetails, prefix: tuple[str, ...]) -> str:
    cause = (detail.get("ctx") or {}).get("error")
    path = (*prefix, *(str(part) for part in detail["loc"]))
    if isinstance(cause, SettingProblem):
        return f"{cause.message} ({'.'.join((*path, *cause.path)) or 'config'})"
    dotted = ".".join(path) or "config"
    if detail["type"] == "extra_forbidden":
        return f"{dotted}: unknown setting"
    if isinstance(cause, ValueError):
        return f"{cause} ({dotted})"
    return f"{dotted}: {detail['msg']}"


def at_least_one(option: str, value: int) -> int:
    if value < 1:
        raise SettingProblem(f"{option} {value}: must be at least 1")
    return value


def finite(option: str, value: float | None, *, zero_ok: bool) -> float | None:
    if value is not None and (not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok)):
        raise SettingProblem(f"{option} {value}: must be a finite number {'>= 0' if zero_ok else '> 0'}")
    return value


def language(option: str, code: str) -> str:
    try:
        return canonical_lang(code)
    except ValueError as error:
        raise SettingProblem(f"{option} {code!r}: {error}") from None


def comma_list(value: Any) -> Any:
    """The command line's ``a,b,c`` as a list; a list is left as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value
