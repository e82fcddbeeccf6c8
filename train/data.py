"""Records -> sub-word aligned training tensors for the Multi2OIE tagger, and back.

Pipeline (each step a plain function, so tests and the recipe can call any of them):

1. :func:`load_records` (:mod:`.sources`) reads *sources*: OpenIE4++ shard folders, JSONL record
   files, or gold benchmark files converted on the fly (``carb-dev``, ``oie2016-dev``,
   ``re-oie2016-es`` ... or ``{path, format, lang}``); bad lines and converter rejections are
   counted per source with reasons and locations, and skipped (:class:`LoadStats`).
2. :func:`records_to_examples` labels each record with :func:`openie4pp.labels.record_to_examples`
   and emits **one example per (sentence, predicate)**: the words, the language, the
   *all-predicate* tags (the predicate head's target), the predicate span and that predicate's
   argument tags (the argument head's target).
3. :func:`encode_examples` tokenises the words with a *fast* tokenizer (:func:`encode_words`:
   see :mod:`.word_encoding` for SentencePiece) and moves labels to sub-words: the **first**
   sub-word of a word carries the word's label and the others ``-100`` (ignored by the loss),
   as in BERT token classification; ``pred_mask`` marks *all* sub-words of the predicate, since the
   argument head averages the encoder states over the whole predicate. Truncation at
   ``max_length`` drops the labels of cut words with them; an example whose predicate is cut away
   entirely is dropped (the argument head would have nothing to condition on).
4. :func:`build_dataset` runs 2-3 through ``datasets.Dataset.map`` and saves the result under
   ``cache_dir/<fingerprint>``; the fingerprint covers the sources (path, size, mtime), the
   tokenizer's full definition, ``max_length`` and :data:`DATA_VERSION`, so a second run with the
   same inputs memory-maps the cached Arrow files instead of re-tokenising.
5. :mod:`.batching` samples length-bucketed batches and pads them.

The inverse for extraction is :func:`word_starts` + :func:`.batching.subword_to_word`: per-word
values are read from each word's first sub-word, the same position that carried the label.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openie4pp.errors import RunProblems
from openie4pp.labels import record_to_examples
from openie4pp.schema import Record

from .sources import BENCHMARK_SOURCES, LoadStats, Source, SourceSpec, check_source_spec, load_records
from .word_encoding import WordEncoding, encode_words, label_positions, word_starts

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

DATA_VERSION = 3
"""Bump when the example or tensor layout changes: it is part of the cache fingerprint."""
STATS_FILE = "load_stats.json"
"""Beside a cached dataset: the :class:`LoadStats` of the run that built it."""
IGNORE_INDEX = -100
"""Label of sub-words that are not the first of their word, of special tokens and of padding."""

def records_to_examples(records: Iterable[Record], stats: LoadStats | None = None) -> list[dict[str, Any]]:
    """One word-level example per (sentence, predicate) that fits the tagging scheme.

    Extra roles (``loc``/``temp``/``context``/``arg4+``) are dropped from an extraction rather than
    dropping the extraction (``extra_roles="drop"``): the predicate and its core arguments are still
    good supervision, and the argument head has no label for those roles anyway.
    """
    stats = stats if stats is not None else LoadStats()
    examples: list[dict[str, Any]] = []
    for record in records:
        result = record_to_examples(record, extra_roles="drop")
        for misfit in result.misfits:
            stats.misfits[misfit.reason.value] += 1
        if not result.extractions:
            stats.no_examples += 1
        for tagged in result.extractions:
            examples.append(
                {
                    "id": record.sentence.id,
                    "lang": record.lang,
                    "words": result.tokens,
                    "pred_tags": result.pred_tags,
                    "pred_span": list(tagged.pred_span),
                    "arg_tags": tagged.arg_tags,
                }
            )
            stats.langs[record.lang] += 1
    stats.examples += len(examples)
    return examples


def encode_examples(batch: Mapping[str, list[Any]], tokenizer: Any, max_length: int) -> dict[str, list[Any]]:
    """``datasets.map`` function (batched): word-level examples -> sub-word ids, labels and masks."""
    out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "pred_labels": [],
                                 "arg_labels": [], "pred_mask": [], "length": []}
    encodings = encode_words(tokenizer, batch["words"], max_length)
    for encoding, pred_tags, span, arg_tags in zip(
        encodings, batch["pred_tags"], batch["pred_span"], batch["arg_tags"], strict=True
    ):
        word_ids = encoding.word_ids
        n = len(word_ids)
        pred_labels, arg_labels, mask = [IGNORE_INDEX] * n, [IGNORE_INDEX] * n, [0] * n
        for position, start in enumerate(label_positions(encoding.starts)):
            if start >= 0:
                pred_labels[start] = pred_tags[position]
                arg_labels[start] = arg_tags[position]
        for position, word in enumerate(word_ids):
            if word is not None and span[0] <= word < span[1]:
                mask[position] = 1
        out["input_ids"].append(encoding.input_ids)
        out["attention_mask"].append([1] * n)
        out["pred_labels"].append(pred_labels)
        out["arg_labels"].append(arg_labels)
        out["pred_mask"].append(mask)
        out["length"].append(n)
    return out


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the tokenizer's complete definition (vocabulary, normaliser, pre-tokeniser...)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a fast tokenizer is required (word_ids() alignment)")
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    # calling the tokenizer with truncation/padding arguments changes these; they are not the vocabulary
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def build_dataset(
    sources: Iterable[str | Path | Mapping[str, Any] | Source],
    tokenizer: Any,
    *,
    max_length: int = 100,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
    stats: LoadStats | None = None,
    max_rejected_fraction: float | None = None,
) -> datasets.Dataset:
    """The encoded training set (columns: ``input_ids``, ``attention_mask``,
    ``pred_labels``, ``arg_labels``, ``pred_mask``, ``length``, ``lang``, ``id``), cached under
    ``cache_dir`` when given (see the module docstring). With ``max_rejected_fraction`` a source with
    more rejected lines than that share fails (:meth:`LoadStats.check_rejections`) before tokenising."""
    import datasets

    stats = stats if stats is not None else LoadStats()
    parsed = [Source.parse(s) for s in sources]
    key_material = json.dumps(
        [DATA_VERSION, max_length, tokenizer_fingerprint(tokenizer), [s.stamp() for s in parsed]]
    )
    key = hashlib.sha256(key_material.encode()).hexdigest()[:20]
    target = Path(cache_dir) / f"examples-{key}" if cache_dir is not None else None
    if target is not None and (target / "dataset_info.json").is_file():
        log.info("using cached examples %s", target)
        saved = target / STATS_FILE
        if saved.is_file():
            stats.restore(saved.read_text(encoding="utf-8"))
        if max_rejected_fraction is not None:
            stats.check_rejections(max_rejected_fraction)
        return datasets.load_from_disk(str(target))

    examples = records_to_examples(load_records(parsed, stats), stats)
    if max_rejected_fraction is not None:
        stats.check_rejections(max_rejected_fraction)
    if not examples:
        names = ", ".join(s.label for s in parsed)
        raise RunProblems(
            f"the data sources ({names}) gave no training examples: {stats.records} records, "
            f"{stats.rejected} rejected lines, {stats.no_examples} records without a usable extraction"
        )
    raw = datasets.Dataset.from_list(examples)
    encoded = raw.map(
        encode_examples,
        batched=True,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
        remove_columns=["words", "pred_tags", "pred_span", "arg_tags"],
        num_proc=num_proc,
        new_fingerprint=f"encode-{key}",
        desc="tokenising",
    )
    before = len(encoded)
    encoded = encoded.filter(any, input_columns="pred_mask", new_fingerprint=f"filter-{key}")
    if len(encoded) < before:
        log.info("dropped %d examples whose predicate was truncated away", before - len(encoded))
    if target is None:
        return encoded
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    encoded.save_to_disk(str(partial))
    (partial / STATS_FILE).write_text(stats.to_json(), encoding="utf-8")
    if target.exists():  # another process finished first: theirs is identical
        shutil.rmtree(partial, ignore_errors=True)
    else:
        os.replace(partial, target)
    return datasets.load_from_disk(str(target))


__all__ = [
    "BENCHMARK_SOURCES",
    "DATA_VERSION",
    "IGNORE_INDEX",
    "LoadStats",
    "Source",
    "SourceSpec",
    "WordEncoding",
    "build_dataset",
    "check_source_spec",
    "encode_examples",
    "encode_words",
    "load_records",
    "records_to_examples",
    "tokenizer_fingerprint",
    "word_starts",
]
