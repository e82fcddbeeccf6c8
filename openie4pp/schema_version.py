"""What every on-disk model of the OpenIE4++ contract shares: its version rule and its strictness.

Records and rejections carry ``schema_version``; reading any other *major* version is an error with
a clear message rather than a silent mis-read, while a newer *minor* version of our major one is
read without the fields it added (:func:`known_fields_only`), as the versioning rule promises.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict

from openie4pp.errors import InputFileError

SCHEMA_VERSION = "1.2"
"""``MAJOR.MINOR``. A reader accepts any minor version of its own major version."""


class SchemaVersionError(InputFileError):
    """A record was written by an incompatible version of the schema."""


def minor_is_newer(version: object) -> bool:
    major, _, minor = str(version).partition(".")
    ours_major, _, ours_minor = SCHEMA_VERSION.partition(".")
    return major == ours_major and minor.isdigit() and int(minor) > int(ours_minor)


def known_fields_only(model: type[BaseModel], data: Any) -> Any:
    """``data`` without the keys ``model`` (and the models nested in it) does not know: what a
    newer minor version added, which an older reader of the same major version must be able to skip."""
    if not isinstance(data, dict):
        return data
    out = {}
    for name, value in data.items():
        info = model.model_fields.get(name)
        if info is None:
            continue
        nested = [a for a in typing.get_args(info.annotation) or (info.annotation,)
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        inner = [a for arg in typing.get_args(info.annotation) for a in typing.get_args(arg) or (arg,)
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested and isinstance(value, dict):
            value = known_fields_only(nested[0], value)
        elif inner and isinstance(value, list):
            value = [known_fields_only(inner[0], v) for v in value]
        out[name] = value
    return out


def check_schema_version(version: str) -> str:
    """Accept ``version`` if its major number equals ours; raise a clear error otherwise."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError as exc:
        raise SchemaVersionError(f"schema_version {version!r} is not of the form MAJOR.MINOR") from exc
    ours = int(SCHEMA_VERSION.split(".")[0])
    if major != ours:
        newer = "newer" if major > ours else "older"
        raise SchemaVersionError(
            f"schema_version {version} is {newer} than this openie4pp's {SCHEMA_VERSION}; "
            f"{'upgrade openie4pp' if major > ours else 'convert the data with the openie4pp that wrote it'}"
        )
    return version


class StrictModel(BaseModel):
    """Unknown fields are errors: a typo in a hand-written record must not be silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=False, str_strip_whitespace=False)
