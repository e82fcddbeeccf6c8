"""Language tags: which BCP-47 tags are accepted, and the one spelling each is stored under."""

from __future__ import annotations

from functools import lru_cache

from openie4pp.text import primary_subtag


@lru_cache(maxsize=4096)
def _lang_is_valid(code: str) -> bool:
    import langcodes

    return bool(code) and langcodes.tag_is_valid(code)


def check_lang(code: str) -> str:
    """Return ``code`` if it is a valid, registered BCP-47 tag (``en``, ``zh-Hans``, ``pt-BR``)."""
    if not isinstance(code, str) or not _lang_is_valid(code):
        raise ValueError(f"unknown language code {code!r} (expected a BCP-47 tag such as 'en' or 'zh-Hans')")
    return code


_NO_LANGUAGE = frozenset({"und", "mul", "zxx", "mis"})
"""Codes that name no language (undetermined, multiple, no linguistic content, uncoded): a
language-specific prompt, tokeniser or expert cannot be chosen for them."""


@lru_cache(maxsize=4096)
def canonical_lang(code: str) -> str:
    """The one spelling of a language tag used everywhere (shard folders, splits, experts, prompts).

    Called once, where a tag enters (an input line, ``--lang``, a config): ``EN`` and ``en`` must not
    become two shard folders. Case is normalised and deprecated tags are replaced by their preferred
    value (``iw`` -> ``he``, ``i-klingon`` -> ``tlh``) with :func:`langcodes.standardize_tag`; tags that
    name no language (``und``, ``mul``, ``zxx``, ``mis``) and private-use ones (``qaa``-``qtz``,
    ``x-...``) are refused, since nothing language-specific can be done with them.
    """
    import langcodes

    if not isinstance(code, str) or not code.strip() or not _lang_is_valid(code.strip()):
        raise ValueError(f"unknown language code {code!r} (expected a BCP-47 tag such as 'en' or 'zh-Hans')")
    try:
        tag = langcodes.standardize_tag(code.strip())
    except (ValueError, LookupError) as exc:
        raise ValueError(f"unknown language code {code!r}: {exc}") from None
    primary = primary_subtag(tag)
    if primary in _NO_LANGUAGE or primary == "x" or ("qaa" <= primary <= "qtz" and len(primary) == 3):
        raise ValueError(f"language code {code!r} names no particular language (a BCP-47 tag such as 'en')")
    return check_lang(tag)
