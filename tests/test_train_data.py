"""Training data: records -> examples -> sub-word tensors (alignment, truncation, caching, batching).

The tiny encoder the training and extraction tests share is :func:`helpers.tiny_encoder`: a
WordPiece tokenizer trained with ``tokenizers`` on the test sentences, wrapped as a transformers
fast tokenizer, plus a randomly initialised 2-layer BERT of width 32.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from helpers import TRAIN_SOURCES, tiny_tokenizer

from openie4pp.labels import ARG_O, PRED_B, PRED_I, PRED_O
from openie4pp.train.batching import BucketBatchSampler, Collator, bridge_gaps, subword_to_word
from openie4pp.train.data import (
    IGNORE_INDEX,
    DataSource,
    LoadStats,
    build_dataset,
    encode_examples,
    load_records,
    records_to_examples,
    word_starts,
)


def test_examples_one_per_predicate_with_language() -> None:
    stats = LoadStats()
    examples = list(records_to_examples(load_records(TRAIN_SOURCES, stats), stats))
    assert stats.records == 64 and stats.examples == len(examples) > 64
    assert set(stats.langs) == {"en", "es", "pt"}
    first = examples[0]
    assert first["lang"] == "en" and len(first["words"]) == len(first["pred_tags"]) == len(first["arg_tags"])
    # the example's own predicate is marked in the all-predicate tags
    start, end = first["pred_span"]
    assert first["pred_tags"][start] == PRED_B and all(
        t == PRED_I for t in first["pred_tags"][start + 1 : end]
    )
    by_sentence: dict[str, list[tuple[int, int]]] = {}
    for example in examples:
        by_sentence.setdefault(example["id"], []).append(tuple(example["pred_span"]))
    assert all(len(set(spans)) == len(spans) for spans in by_sentence.values())


def test_first_subword_carries_the_label() -> None:
    tokenizer = tiny_tokenizer()
    words = ["Anticonstitutionnellement", "ran", "quickly", "\u200b", "home"]
    example = {
        "words": [words],
        "pred_tags": [[PRED_O, PRED_B, PRED_O, PRED_O, PRED_O]],
        "pred_span": [[1, 2]],
        "arg_tags": [[0, ARG_O, 2, ARG_O, 3]],
    }
    out = encode_examples(example, tokenizer, max_length=100)
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    assert word_ids.count(0) > 1  # the long word is split: only its first piece is labelled
    starts = word_starts(word_ids, len(words))
    assert starts[3] == -1  # the zero-width space has no sub-word
    labels = out["arg_labels"][0]
    for position, word in enumerate(word_ids):
        expected = (
            example["arg_tags"][0][word] if word is not None and starts[word] == position else IGNORE_INDEX
        )
        assert labels[position] == expected
    assert out["pred_mask"][0] == [int(w == 1) for w in word_ids]
    assert out["length"][0] == len(out["input_ids"][0]) == len(labels)
    # inverse: word tags read at first sub-words, the zero-width gap bridged inside a chunk only
    arg_words = subword_to_word(labels, starts, ARG_O)
    assert arg_words == [0, ARG_O, 2, ARG_O, 3]
    assert bridge_gaps([0, 0, 1, ARG_O], [1, 2, -1, 4], ARG_O) == [0, 0, ARG_O, ARG_O]
    assert bridge_gaps([0, 1, ARG_O, 1], [1, 2, -1, 4], ARG_O) == [0, 1, 1, 1]
    assert bridge_gaps([0, 1, ARG_O, 2], [1, 2, -1, 4], ARG_O) == [0, 1, ARG_O, 2]


def test_truncation_keeps_labels_consistent() -> None:
    tokenizer = tiny_tokenizer()
    words = [f"w{i}" for i in range(30)]
    tags = [PRED_O] * 30
    tags[3], tags[25] = PRED_B, PRED_B
    batch = {
        "words": [words, words],
        "pred_tags": [tags, tags],
        "pred_span": [[3, 4], [25, 26]],
        "arg_tags": [[ARG_O] * 2 + [0] + [ARG_O] * 27, [ARG_O] * 20 + [2] + [ARG_O] * 9],
    }
    out = encode_examples(batch, tokenizer, max_length=12)
    assert all(len(ids) == 12 for ids in out["input_ids"])
    for i in range(2):
        word_ids = tokenizer(words, is_split_into_words=True, truncation=True, max_length=12).word_ids()
        kept = {w for w in word_ids if w is not None}
        labelled = [p for p, label in enumerate(out["pred_labels"][i]) if label != IGNORE_INDEX]
        assert len(labelled) == len(kept)  # one label per kept word, none for the cut ones
        assert max(kept) < 25
    assert any(out["pred_mask"][0]) and not any(out["pred_mask"][1])  # predicate 2 was cut away


def test_dataset_cache_and_filter(tmp_path: Path) -> None:
    tokenizer = tiny_tokenizer()
    stats = LoadStats()
    first = build_dataset(TRAIN_SOURCES, tokenizer, max_length=24, cache_dir=tmp_path, stats=stats)
    assert all(any(mask) for mask in first["pred_mask"])  # truncated-away predicates were dropped
    assert len(first) < stats.examples  # (some CaRB predicates lie beyond 24 sub-words)
    assert max(first["length"]) <= 24
    # datasets' own cache: the examples once (fingerprinted by the sources), encoded once per tokenizer
    assert len(list(tmp_path.rglob("generator-*.arrow"))) == len(list(tmp_path.rglob("cache-encode-*"))) == 1
    second_stats = LoadStats()
    second = build_dataset(TRAIN_SOURCES, tokenizer, max_length=24, cache_dir=tmp_path, stats=second_stats)
    # served from the cache: nothing was read or labelled, the first run's counts come with it
    assert second_stats.cached and not stats.cached
    assert (second_stats.records, second_stats.examples) == (stats.records, stats.examples)
    assert second[:] == first[:]
    build_dataset(TRAIN_SOURCES, tokenizer, max_length=32, cache_dir=tmp_path)
    assert len(list(tmp_path.rglob("cache-encode-*"))) == 2  # another max_length, another encoding
    assert len(list(tmp_path.rglob("generator-*.arrow"))) == 1  # of the same examples
    changed = tmp_path / "train.jsonl"
    changed.write_text(next(load_records(TRAIN_SOURCES)).model_dump_json() + "\n", encoding="utf-8")
    assert len(build_dataset([str(changed)], tokenizer, max_length=24, cache_dir=tmp_path)) >= 1
    changed.write_text(changed.read_text(encoding="utf-8") * 2, encoding="utf-8")  # a source file changed
    again = LoadStats()
    build_dataset([str(changed)], tokenizer, max_length=24, cache_dir=tmp_path, stats=again)
    assert not again.cached and again.records == 2


def test_bucketed_batches_are_deterministic_and_complete() -> None:
    import random

    lengths = [random.Random(i).randint(5, 80) for i in range(1000)]
    sampler = BucketBatchSampler(lengths, 16, seed=3, bucket_size=160)
    epoch0 = sampler.batches(0)
    assert epoch0 == BucketBatchSampler(lengths, 16, seed=3, bucket_size=160).batches(0)
    assert epoch0 != sampler.batches(1)
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))
    assert len(sampler) == len(epoch0)
    # bucketing: far less padding than random batches
    padded = sum(len(b) * max(lengths[i] for i in b) for b in epoch0)
    assert padded < 1.15 * sum(lengths)
    sampler.set_epoch(1)
    assert list(iter(sampler)) == sampler.batches(1)


def test_collator_pads_and_maps_languages() -> None:
    tokenizer = tiny_tokenizer()
    data = build_dataset(TRAIN_SOURCES, tokenizer, max_length=40)
    rows = [data[0], data[len(data) - 1]]
    batch = Collator(tokenizer.pad_token_id, languages=("en", "es"))(rows)
    width = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == batch["arg_labels"].shape == (2, width)
    assert batch["lang_ids"].tolist() == [0, -1]  # pt is not in the language list
    short = min(rows, key=lambda r: len(r["input_ids"]))
    row = batch["pred_labels"][rows.index(short)]
    assert (row[len(short["input_ids"]) :] == IGNORE_INDEX).all()


def test_source_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DataSource.parse("carb-dev").format == "carb"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "carb-dev").mkdir()  # a folder of that name: a path wins, as in extract and annotate
    local = DataSource.parse("carb-dev")
    assert local.path == Path("carb-dev") and local.format is None
    assert DataSource.parse({"path": str(tmp_path), "limit": 3}).limit == 3
    with pytest.raises(ValueError, match="unknown data source keys"):
        DataSource.parse({"path": "x", "colour": 1})
    with pytest.raises(FileNotFoundError):
        list(load_records([tmp_path / "missing.jsonl"]))


def test_short_batch_last_and_resume_skip() -> None:
    lengths = list(range(103))
    sampler = BucketBatchSampler(lengths, 10, seed=1, bucket_size=25)  # rounded up to 30
    assert sampler.bucket_size == 30
    batches = sampler.batches(0)
    assert [len(b) for b in batches] == [10] * 10 + [3]  # only the last batch is short
    sampler.resume_at(0, 4)
    assert list(sampler) == batches[4:] and len(sampler) == 7
    sampler.set_epoch(0)  # same epoch: still skipping
    assert len(sampler) == 7
    sampler.set_epoch(1)
    assert len(sampler) == 11 and list(sampler) == sampler.batches(1)
