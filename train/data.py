"""Records -> sub-word aligned training tensors for the Multi2OIE tagger, and back.

Pipeline (each step a plain function, so tests and the recipe can call any of them):

1. :func:`load_records` (:mod:`.sources`) reads *sources*: OpenIE4++ shard folders, JSONL record
   files, or gold benchmark files converted on the fly (``carb-dev``, ``oie2016-dev``,
   ``re-oie2016-es`` ... or ``{path, format, lang}``); bad lines and converter rejections are
   counted per source with reasons and locations, and skipped (:class:`LoadStats`).
2. :func:`records_to_examples` labels each record with :func:`openie4pp.labels.record_to_examples`
   and streams **one example per (sentence, predicate)**: the words, the language, the
   *all-predicate* tags (the predicate head's target), the predicate span and that predicate's
   argument tags (the argument head's target).
3. :func:`encode_examples` tokenises the words with a *fast* tokenizer (:func:`encode_words`:
   see :mod:`.word_encoding` for SentencePiece) and moves labels to sub-words: the **first**
   sub-word of a word carries the word's label and the others ``-100`` (ignored by the loss),
   as in BERT token classification; ``pred_mask`` marks *all* sub-words of the predicate, since the
   argument head averages the encoder states over the whole predicate. Truncation at
   ``max_length`` drops the labels of cut words with them; an example whose predicate is cut away
   entirely is dropped (the argument head would have nothing to condition on).
4. :func:`build_dataset` is ``datasets`` all the way: ``Dataset.from_generator`` over 1-2 (Arrow
   files written batch by batch, so memory does not grow with the number of records), then
   ``map(batched=True)`` for 3 and ``filter``, each cached by ``datasets`` under ``cache_dir``. The
   fingerprints are explicit: the examples' covers the sources (each file's size and mtime, see
   :meth:`DataSource.stamp`) and :data:`DATA_VERSION`; the encoding's adds the tokenizer's full
   definition and ``max_length``. A second run with the same inputs memory-maps the cached Arrow
   files instead of reading and tokenising again, and reads the :class:`LoadStats` saved beside them.
5. :mod:`.batching` samples length-bucketed batches and pads them.

The inverse for extraction is :func:`word_starts` + :func:`.batching.subword_to_word`: per-word
values are read from each word's first sub-word, the same position that carried the label.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openie4pp.errors import RunProblems
from openie4pp.labels import record_to_examples
from openie4pp.schema import Record

from .sources import DataSource, LoadStats, load_records
from .word_encoding import WordEncoding, encode_words, label_positions, word_starts

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

DATA_VERSION = 4
"""Bump when the example or tensor layout changes: it is part of the cache fingerprint."""
STATS_FILE = "load_stats.json"
"""Beside a cached dataset: the :class:`LoadStats` of the run that built it."""
IGNORE_INDEX = -100
"""Label of sub-words that are not the first of their word, of special tokens and of padding."""

def records_to_examples(
    records: Iterable[Record], stats: LoadStats | None = None
) -> Iterator[dict[str, Any]]:
    """One word-level example per (sentence, predicate) that fits the tagging scheme, streamed.

    Extra roles (``loc``/``temp``/``context``/``arg4+``) are dropped from an extraction rather than
    dropping the extraction (``extra_roles="drop"``): the predicate and its core arguments are still
    good supervision, and the argument head has no label for those roles anyway.
    """
    stats = stats if stats is not None else LoadStats()
    for record in records:
        result = record_to_examples(record, extra_roles="drop")
        for misfit in result.misfits:
            stats.misfits[misfit.reason.value] += 1
        if not result.extractions:
            stats.no_examples += 1
        for tagged in result.extractions:
            stats.langs[record.lang] += 1
            stats.examples += 1
            yield {
                "id": record.sentence.id,
                "lang": record.lang,
                "words": result.tokens,
                "pred_tags": result.pred_tags,
                "pred_span": list(tagged.pred_span),
                "arg_tags": tagged.arg_tags,
            }


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


def example_features() -> datasets.Features:
    """The columns of :func:`records_to_examples`' rows, declared rather than inferred from the first
    rows (Arrow would otherwise guess each batch's types on its own). Tags are ``int8`` (3 and 9
    labels): the cached file, which the encoding step reads memory-mapped, is a third of ``int64``'s."""
    import datasets

    def values(dtype: str) -> datasets.List:
        return datasets.List(datasets.Value(dtype))

    return datasets.Features({"id": datasets.Value("string"), "lang": datasets.Value("string"),
                              "words": values("string"), "pred_tags": values("int8"),
                              "pred_span": values("int32"), "arg_tags": values("int8")})


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def build_dataset(
    sources: Iterable[str | Path | Mapping[str, Any] | DataSource],
    tokenizer: Any,
    *,
    max_length: int = 100,
    cache_dir: str | Path | None = None,
    num_proc: int | None = None,
    stats: LoadStats | None = None,
    max_rejected_fraction: float | None = None,
) -> datasets.Dataset:
    """The encoded training set (columns: ``id``, ``lang``, ``input_ids``, ``attention_mask``,
    ``pred_labels``, ``arg_labels``, ``pred_mask``, ``length``), cached by ``datasets`` under
    ``cache_dir`` (see the module docstring); without one it is built in a temporary folder and
    kept in memory. With ``max_rejected_fraction`` a source with more rejected lines than that share
    fails (:meth:`LoadStats.check_rejections`) before tokenising."""
    stats = stats if stats is not None else LoadStats()
    parsed = [DataSource.parse(s) for s in sources]
    for source in parsed:  # here, not inside the generator, where datasets would wrap the error
        if not source.path.exists():
            raise FileNotFoundError(f"{source.path}: data source not found")
    examples_key = _key(DATA_VERSION, [s.stamp() for s in parsed])
    encoded_key = _key(examples_key, max_length, tokenizer_fingerprint(tokenizer))
    in_memory = cache_dir is None
    with contextlib.ExitStack() as stack:
        folder = Path(cache_dir or stack.enter_context(tempfile.TemporaryDirectory()))
        examples = _labelled_examples(parsed, stats, folder, examples_key, in_memory)
        if max_rejected_fraction is not None:
            stats.check_rejections(max_rejected_fraction)
        if examples is None or not stats.examples:
            names = ", ".join(s.label for s in parsed)
            raise RunProblems(
                f"the data sources ({names}) gave no training examples: {stats.records} records, "
                f"{stats.rejected} rejected lines, {stats.no_examples} records without a usable extraction"
            )
        encoded = examples.map(
            encode_examples,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "max_length": max_length},
            remove_columns=["words", "pred_tags", "pred_span", "arg_tags"],
            num_proc=num_proc,
            keep_in_memory=in_memory,
            new_fingerprint=f"encode-{encoded_key}",
            desc="tokenising",
        )
        before = len(encoded)
        encoded = encoded.filter(
            any, input_columns="pred_mask", keep_in_memory=in_memory, new_fingerprint=f"filter-{encoded_key}"
        )
    if len(encoded) < before:
        log.info("dropped %d examples whose predicate was truncated away", before - len(encoded))
    return encoded


def _labelled_examples(
    sources: list[DataSource], stats: LoadStats, folder: Path, key: str, in_memory: bool
) -> datasets.Dataset | None:
    """The word-level examples of ``sources`` as a dataset that ``datasets`` writes to ``folder`` in
    batches while the generator streams, so no list of all records or examples is ever held. The
    generator labels in this process (not in a ``map`` that may run in worker processes) so that
    ``stats`` counts what it saw; those counts are saved beside the Arrow files, and a later run
    served from the cache (the generator does not run) reads them back. ``None``: no examples."""
    import datasets
    from datasets.exceptions import DatasetGenerationError
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    generated = False

    def generate() -> Iterator[dict[str, Any]]:
        nonlocal generated
        generated = True
        yield from records_to_examples(load_records(sources, stats), stats)

    quiet = are_progress_bars_disabled()
    disable_progress_bars()  # a bar on stderr before a one-line rejection error is noise
    try:
        dataset = datasets.Dataset.from_generator(
            generate, features=example_features(), cache_dir=str(folder), keep_in_memory=in_memory,
            fingerprint=f"examples-{key}",
        )
    except DatasetGenerationError as error:  # what went wrong inside the generator, not the wrapper
        raise (error.__cause__ or error) from None
    except ValueError:  # datasets refuses a split without rows: build_dataset says why there are none
        if not generated:
            _count(sources, stats)
        if stats.examples:
            raise
        return None
    finally:
        if not quiet:
            enable_progress_bars()
    if in_memory:
        return dataset
    saved = Path(dataset.cache_files[0]["filename"]).parent / STATS_FILE
    if generated:
        _write_atomically(saved, stats.to_json())
    elif saved.is_file():
        log.info("using cached examples %s", saved.parent)
        stats.restore(saved.read_text(encoding="utf-8"))
    else:  # a cache from a run that stopped before saving its counts: count again, without building
        _count(sources, stats)
        _write_atomically(saved, stats.to_json())
    return dataset


def _count(sources: list[DataSource], stats: LoadStats) -> None:
    """What the generator would have counted, without keeping anything (its dataset is cached)."""
    for _ in records_to_examples(load_records(sources, stats), stats):
        pass
    stats.cached = True


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)


__all__ = [
    "DATA_VERSION",
    "IGNORE_INDEX",
    "DataSource",
    "LoadStats",
    "WordEncoding",
    "build_dataset",
    "encode_examples",
    "encode_words",
    "example_features",
    "load_records",
    "records_to_examples",
    "tokenizer_fingerprint",
    "word_starts",
]
