"""The dataset card's part of the annotation config: the licence and what the card names.

Recorded, never acted on by the pipeline: the manifest's ``build_config`` keeps it, and the shard
writer turns it into the folder's licence entry and command line (:mod:`openie4pp.dataset_card`).
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from .config_checks import SettingProblem
from .config_checks import StrictSettings as _Settings


class CardSettings(_Settings):
    """What the dataset card says about the data beyond the settings (:mod:`openie4pp.dataset_card`).

    Recorded, never acted on: the manifest's ``build_config`` keeps it (the command line moves to the
    manifest's ``commands``, scrubbed) and :class:`~openie4pp.shards.ShardWriter` turns the licence
    into the folder's licence entry."""

    license: str = "unknown"
    """``--license``: a Hugging Face Hub licence id (``cc-by-4.0``; SPDX spellings such as
    ``CC-BY-4.0`` are lowercased), ``other`` with ``license_name``, or ``unknown``."""
    license_name: str | None = None
    """``--license-name``: for ``other``, the licence's short name (lowercase letters, digits, ``-.``)."""
    license_link: str | None = None
    """``--license-link``: for ``other``, where its text is (a URL, or a file pushed with the data)."""
    command: list[str] | None = None
    """The command line that made the run (the CLI sets it; None for a library call)."""
    prompts: dict[str, dict[str, str]] = Field(default_factory=dict)
    """The prompt templates the run uses, ``{id: {"version", "hash"}}``: filled when the config is
    built (records carry only the combined ``prompt_id``/``prompt_hash`` of the ones they went through)."""

    @field_validator("license")
    @classmethod
    def _license(cls, value: str) -> str:
        from openie4pp.dataset_card import hub_license

        try:
            return hub_license(value)
        except ValueError as error:
            raise SettingProblem(f"--license {value!r}: {error}") from None

    @field_validator("license_name")
    @classmethod
    def _license_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", value):
            raise SettingProblem(f"--license-name {value!r}: lowercase letters, digits, '-' and '.' only "
                                 "(the Hub's rule for license_name)")
        return value

    @model_validator(mode="after")
    def _other_needs_a_name(self) -> CardSettings:
        if self.license == "other" and not self.license_name:
            raise SettingProblem("--license other needs --license-name (and --license-link to its text)",
                                 ("license_name",))
        if self.license != "other" and (self.license_name or self.license_link):
            raise SettingProblem("--license-name/--license-link go with --license other", ("license",))
        return self


def prompt_refs(mode: str, verify: bool) -> dict[str, dict[str, str]]:
    """The templates a run in ``mode`` renders (the judge's only with ``verify``), with their version
    and hash: what the dataset card names as the prompts."""
    from .prompts import load_prompt

    ids = ["extract"] if mode == "extract" else ["translate", "project"]
    templates = [load_prompt(prompt_id) for prompt_id in [*ids, *(["verify"] if verify else [])]]
    return {t.id: {"version": t.version, "hash": t.hash} for t in templates}
