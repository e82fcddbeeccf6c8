"""openie4pp.hf: explicit features, the dataset card, and loading shards with ``datasets``."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow as pa
import pytest
import yaml

# one record factory for the shard and load tests (tests/ is on sys.path under pytest)
from helpers import make_record

from openie4pp.dataset_card import dataset_card
from openie4pp.hf import features, load, split_name
from openie4pp.schema import (
    Provenance,
    Record,
    Source,
    TokenUsage,
)
from openie4pp.shards import ShardWriter, shard_files


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """en: 7 ungrounded gold records over 3 shards; zh-Hans: 4 grounded ones over 2 shards."""
    out = tmp_path_factory.mktemp("shards")
    with ShardWriter(out, max_records=3) as writer:
        for i in range(7):
            writer.write(make_record(i, "en", grounded=False))
        for i in range(4):
            writer.write(make_record(i, "zh-Hans"))
    return out


def test_split_name() -> None:
    assert [split_name(x) for x in ("en", "zh-Hans", "pt-BR")] == ["en", "zh_Hans", "pt_BR"]


def test_features_cover_every_field_of_a_full_record(tmp_path: Path) -> None:
    record = make_record(3, "zh-Hans").model_copy(deep=True)
    record.provenance = Provenance(source=Source.llm, dataset="d", model="m", endpoint="http://e",
                                   prompt_id="p", prompt_hash="h", verdict="fix",
                                   usage=TokenUsage(prompt_tokens=5, completion_tokens=7),
                                   mode="project", source_lang="en")
    record.extractions[0].confidence = 0.25
    row = record.model_dump(mode="json")
    ds = datasets.Dataset.from_list([row], features=features())
    assert ds.features == features()
    assert Record.model_validate(ds[0]) == record
    extraction = features().arrow_schema.field("extractions").type.value_type
    assert extraction.field("predicate").type.field("span").type == pa.list_(pa.int64())
    assert extraction.field("arguments").type.value_type.field("span").type == pa.list_(pa.int64())


def test_load_one_split_per_language(mixed_dir: Path, tmp_path: Path) -> None:
    loaded = load(mixed_dir, cache_dir=str(tmp_path))
    assert {name: len(split) for name, split in loaded.items()} == {"en": 7, "zh_Hans": 4}
    expected = [make_record(i, "zh-Hans") for i in range(4)]
    assert [Record.model_validate(r) for r in loaded["zh_Hans"]] == expected
    # ungrounded: [-1, -1] on disk, None in Python
    assert loaded["en"][0]["extractions"][0]["predicate"]["span"] == [-1, -1]
    assert loaded["zh_Hans"][0]["extractions"][0]["predicate"]["span"] == [4, 6]


def test_load_single_file(mixed_dir: Path, tmp_path: Path) -> None:
    both = tmp_path / "both.jsonl"
    both.write_bytes(b"".join(f.read_bytes() for files in shard_files(mixed_dir).values() for f in files))
    loaded = load(both, cache_dir=str(tmp_path / "cache"))
    assert {name: len(split) for name, split in loaded.items()} == {"en": 7, "zh_Hans": 4}


def test_dataset_card_configs_and_plain_load_dataset_of_the_folder(mixed_dir: Path, tmp_path: Path) -> None:
    text = (mixed_dir / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["configs"] == [{"config_name": "default", "data_files": [
        {"split": "en", "path": "en/shard-*.jsonl"}, {"split": "zh_Hans", "path": "zh-Hans/shard-*.jsonl"}]}]
    assert header["language"] == ["en", "zh"] and header["license"] == "unknown"
    assert "features" in header["dataset_info"]
    assert "| zh-Hans | zh_Hans | 4 | 4 |" in text and "## Fields" in text
    # The first split (en) has only null spans: it loads because the card declares the features.
    loaded = datasets.load_dataset(str(mixed_dir), cache_dir=str(tmp_path))
    assert isinstance(loaded, datasets.DatasetDict)
    assert {name: len(split) for name, split in loaded.items()} == {"en": 7, "zh_Hans": 4}
    assert loaded["zh_Hans"].features == features()


def test_plain_json_loader_with_features(mixed_dir: Path, tmp_path: Path) -> None:
    data_files = {split_name(lang): [str(f) for f in files] for lang, files in shard_files(mixed_dir).items()}
    loaded = datasets.load_dataset("json", data_files=data_files, features=features(),
                                   cache_dir=str(tmp_path))
    assert isinstance(loaded, datasets.DatasetDict)
    assert {name: len(split) for name, split in loaded.items()} == {"en": 7, "zh_Hans": 4}


def test_plain_json_loader_without_features(mixed_dir: Path, tmp_path: Path) -> None:
    data_files = {split_name(lang): [str(f) for f in files] for lang, files in shard_files(mixed_dir).items()}
    loaded = datasets.load_dataset("json", data_files=data_files, cache_dir=str(tmp_path))
    assert {name: len(split) for name, split in loaded.items()} == {"en": 7, "zh_Hans": 4}


def test_card_for_an_empty_directory() -> None:
    manifest = {"languages": {}, "records": 0, "schema_version": "1.0", "rejected": {"records": 2}}
    text = dataset_card(manifest)
    assert "configs" not in text and "Rejected inputs and candidates: 2" in text
