"""A pydantic validation error as one line that names the dotted key, e.g. ``data.train[0].limit``.

Its own module because the recipe's config (:mod:`.config`) and the data-source specs inside it
(:mod:`.sources`) report their mistakes the same way, and neither should import the other for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


def dotted(location: Sequence[int | str]) -> str:
    """``("data", "train", 0)`` -> ``data.train[0]``."""
    out = ""
    for part in location:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def describe(error: ValidationError, prefix: str = "") -> str:
    """``key.path: what is wrong (got VALUE)`` per problem, ``; ``-joined."""
    parts = []
    for item in error.errors():
        key = dotted([prefix, *item["loc"]] if prefix else item["loc"])
        if item["type"] == "extra_forbidden":
            parts.append(f"unknown config key {key!r}")
            continue
        message = item["msg"].removeprefix("Value error, ")
        if message.startswith(("[", ".")):  # a deeper key from a validator: data.train[0]: ..., model.x: ...
            key, message = key + message.split(":", 1)[0], message.split(":", 1)[1].strip()
        got = "" if item["type"] in ("value_error", "missing") else f" (got {item['input']!r:.80})"
        parts.append(f"{key}: {message}{got}")
    return "; ".join(parts)
