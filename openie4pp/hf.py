"""Hugging Face ``datasets`` view of OpenIE4++ shards: explicit features, a dataset card, ``load``.

Why explicit features: Arrow infers a column's type from the values it sees. The writer never
emits ``null`` (ungrounded spans are ``[-1, -1]``, absent provenance values ``""``) so plain
``load_dataset("json", ...)`` infers consistent types, but explicit features also pin integer
widths and keep loading cheap and predictable. :func:`features` is derived
from the pydantic models in :mod:`openie4pp.schema`, so it cannot drift from the JSON the
writer emits. The dataset card written next to the shards declares the same features, so a
plain ``load_dataset(out_dir)`` gets consistent types too.
"""

from __future__ import annotations

import types
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import datasets
import langcodes
from datasets.info import DatasetInfosDict
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


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return label
    return "100M<n<1B"


_BODY = """\
# OpenIE4++ dataset

Open Information Extraction tuples, one JSON object (an OpenIE4++ *record*, schema version
{schema_version}) per line, with one split per language. Written by `openie4pp`; `manifest.json`
beside this card lists every shard with its record count and sha256.

| language | split | records | extractions |
|---|---|---:|---:|
{table}

Rejected inputs and candidates: {rejected} (in `rejected.jsonl`, not part of any split).
{quality}
## License

**TODO:** the license above is a placeholder (`unknown`). Set it from the licenses of the source
sentences and the terms of the model(s) named in `provenance`.

## Fields

* `schema_version`: `MAJOR.MINOR` of the OpenIE4++ schema; readers refuse other major versions.
* `sentence`: `id` (stable, derived from language and text), `lang` (BCP-47 tag), `text`,
  `tokens` and `offsets` (each token's `[start, end)` character offsets into `text`).
* `extractions`: n-ary tuples, each with a `predicate` and `arguments` (in order; `role` is
  `arg0` for the subject, `arg1`... for objects, or `loc`/`temp`/`context`) and a `confidence`
  in [0, 1]. Every element has a `text` and a `span`: its token span `[start, end)` into
  `sentence.tokens`, or `[-1, -1]` when the element is not grounded in the sentence (only allowed
  for gold benchmark data, whose annotators wrote free-text phrases).
* `provenance`: where the record came from. `source` is `gold`, `llm` or `model`; `dataset`,
  `model` and `endpoint` name the origin (never credentials; `""` when not applicable);
  `prompt_id`/`prompt_hash` identify the prompt; `verdict` is the LLM judge's
  (`accept`/`fix`/`reject`); `usage` the token counts; `mode` is `extract` (annotated in the
  sentence's language) or `project` (projected from `source_lang`); `constraint` how stage 1's
  answer was span-constrained (`grammar`, `json_schema_enum`..., `none`; absent if not asked for).

## Loading

```python
from datasets import load_dataset
ds = load_dataset("path/to/this/folder")     # features come from this card
# or: import openie4pp.hf; ds = openie4pp.hf.load("path/to/this/folder")
```
"""


def dataset_card(manifest: dict[str, Any]) -> str:
    """A ``README.md`` for a shard directory, from its manifest (see ``ShardWriter.manifest``).

    The YAML header's ``configs`` maps each language folder to a split and its
    ``dataset_info`` declares :func:`features`, which is what ``load_dataset(dir)`` reads.
    """
    from huggingface_hub import DatasetCardData

    languages: dict[str, dict[str, int]] = manifest["languages"]
    data_files = [{"split": split_name(lang), "path": f"{lang}/shard-*.jsonl"} for lang in sorted(languages)]
    card = DatasetCardData(
        language=sorted({langcodes.Language.get(lang).language or lang for lang in languages}) or None,
        license="unknown",
        pretty_name="OpenIE4++",
        tags=["open-information-extraction", "openie4pp"],
        size_categories=[_size_category(int(manifest["records"]))],
        configs=[{"config_name": "default", "data_files": data_files}] if data_files else None,
    )
    if data_files:
        info = datasets.DatasetInfo(features=features())
        DatasetInfosDict({"default": info}).to_dataset_card_data(card)
    table = "\n".join(f"| {lang} | {split_name(lang)} | {t['records']} | {t['extractions']} |"
                      for lang, t in sorted(languages.items()))
    body = _BODY.format(schema_version=manifest["schema_version"], table=table,
                        rejected=manifest["rejected"]["records"], quality=_quality(manifest))
    return f"---\n{card.to_yaml()}\n---\n\n{body}"


def _quality(manifest: dict[str, Any]) -> str:
    """The card's section on measured quality: the gold canaries' scores, when the run had them."""
    canaries: dict[str, dict[str, Any]] = (manifest.get("quality") or {}).get("canaries") or {}
    if not canaries:
        return ""

    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.3f}"

    rows = "\n".join(
        f"| {lang} | {s['benchmark']} | {s['sentences']} | {s['accepted']} | {cell(s['precision'])} | "
        f"{cell(s['recall'])} | {cell(s['f1'])} |" for lang, s in sorted(canaries.items()))
    return ("\n## Quality: gold canaries\n\nGold benchmark sentences annotated with the same prompts, "
            "model and checks as the data, then scored with the benchmark's own scorer (they are not "
            "part of any split):\n\n| language | benchmark | sentences | accepted | precision | recall "
            "| F1 |\n|---|---|---:|---:|---:|---:|---:|\n" + rows + "\n")


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

