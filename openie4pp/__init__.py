"""openie4pp: cross-lingual Open Information Extraction (MT4CrossOIE) — data contract, scorers,
LLM annotation and multi-stage tuning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openie4pp.schema import (
    SCHEMA_VERSION,
    Argument,
    Element,
    Extraction,
    Provenance,
    Record,
    Rejection,
    RejectionReason,
    Sentence,
)

if TYPE_CHECKING:
    from datasets import DatasetDict

__version__ = "0.1.0"
__all__ = [
    "SCHEMA_VERSION",
    "Argument",
    "Element",
    "Extraction",
    "Provenance",
    "Record",
    "Rejection",
    "RejectionReason",
    "Sentence",
    "load",
]


def load(path: Any) -> DatasetDict:
    """Load OpenIE4++ shards as a ``datasets.DatasetDict`` (see :func:`openie4pp.hf.load`).

    Imported lazily: ``datasets`` (and pyarrow) cost a second to import.
    """
    from openie4pp.hf import load as _load

    return _load(path)
