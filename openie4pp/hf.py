"""Hugging Face ``datasets`` view of OpenIE4++ shards: explicit features, a dataset card, ``load``.

Why explicit features: Arrow infers a column's type from the values it sees. The writer never
emits ``null`` (ungrounded spans are ``[-1, -1]``, absent provenance values ``""``) so plain
``load_dataset("json", ...)`` infers consistent types, but explicit features also pin integer
widths and keep loading cheap and predictable. :func:`features` is derived
from the pydantic models in :mod:`openie4pp.schema`, so it cannot drift from the JSON the
writer emits. The dataset card written next to the shards (:mod:`openie4pp.dataset_card`) declares
the same features, so a plain ``load_dataset(out_dir)`` gets consistent types too.
"""

from __future__ import annotations

import types
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import datasets
from pydantic import BaseModel

from openie4pp.schema import Record
from openie4pp.shard_layout import shard_files


def split_name(lang: str) -> str:
    """The split holding ``lang``: split names must be word characters, so ``zh-Hans`` -> ``zh_Hans``."""
    return lang.replace("-", "_")


def _feature(annotation: Any) -> Any:
    """The ``datasets`` feature of one pydantic field annotation (nullable fields keep their type)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) != 1:
            raise TypeError(f"no datasets feature for the union {annotation!r}")
        return _feature(present[0])
    if origin is Literal:
        if all(isinstance(a, str) for a in args):
            return datasets.Value("string")
        raise TypeError(f"no datasets feature for {annotation!r}")
    if origin is list or (origin is tuple and len(set(args) - {Ellipsis}) == 1):
        return [_feature(args[0])]
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return {name: _feature(info.annotation) for name, info in annotation.model_fields.items()}
        for python_type, dtype in ((bool, "bool"), (Enum, "string"), (str, "string"), (int, "int64"),
                                   (float, "float64")):
            if issubclass(annotation, python_type):
                return datasets.Value(dtype)
    raise TypeError(f"no datasets feature for {annotation!r}")


def features() -> datasets.Features:
    """The ``datasets.Features`` of a Record line: nested structs and lists, spans ``list<int64>``."""
    return datasets.Features(_feature(Record))


def load(path: str | Path, **load_kwargs: Any) -> datasets.DatasetDict:
    """Load a shard directory (or one JSONL file) as a DatasetDict with one split per language.

    Each row is a whole record (``Record.model_validate(row)`` gives it back); splits are named
    by :func:`split_name`. ``load_kwargs`` go to ``datasets.load_dataset`` (``cache_dir``...).
    """
    root = Path(path)
    if root.is_dir():
        by_lang = shard_files(root)
        if not by_lang:
            raise FileNotFoundError(f"no <lang>/shard-*.jsonl files under {root}")
        data_files = {split_name(lang): [str(p) for p in files] for lang, files in by_lang.items()}
        result = datasets.load_dataset("json", data_files=data_files, features=features(), **load_kwargs)
        assert isinstance(result, datasets.DatasetDict)
        return result
    single = datasets.load_dataset("json", data_files=str(root), features=features(), split="train",
                                   **load_kwargs)
    assert isinstance(single, datasets.Dataset)
    langs = sorted(set(single.flatten().unique("sentence.lang")))
    return datasets.DatasetDict({
        split_name(lang): single.filter(lambda s, lang=lang: s["lang"] == lang, input_columns="sentence")
        for lang in langs
    })

