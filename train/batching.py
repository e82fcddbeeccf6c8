"""Batches for the tagger: length-bucketed sampling, padding, and sub-word <-> word values.

:class:`BucketBatchSampler` groups examples of similar length (less padding) but keeps randomness:
each epoch shuffles with ``seed + epoch``, sorts inside large chunks and shuffles the batch order,
so the order is a pure function of ``(seed, epoch)``, which is what makes exact resume possible.
Given each example's language and a temperature ``T != 1`` it first draws the epoch's examples with
MT4CrossOIE's language weights ``q_l ∝ p_l^(1/T)`` (:func:`language_quotas`), then buckets those.
:class:`Collator` pads a batch and adds ``lang_ids``. For extraction, :func:`subword_to_word` reads
per-word values from each word's first sub-word (the position that carried the label in
training), and :func:`bridge_gaps` mends tag runs that a non-first sub-word interrupted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .data import IGNORE_INDEX

if TYPE_CHECKING:
    import torch


class BucketBatchSampler:
    """Length-bucketed batches of indices, a pure function of ``(seed, epoch)``.

    Per epoch: permute all indices with ``numpy.random.default_rng([seed, epoch])``, cut the
    permutation into chunks of ``bucket_size`` (default 50 batches, always a multiple of the batch
    size), sort each chunk by length, cut it into batches and shuffle the order of the full batches.
    Large chunks keep padding low while examples of all lengths still meet in every part of the
    epoch. At most one batch is short and it comes **last**: Accelerate's distributed sharding
    (``BatchSamplerShard``) assumes that. ``shuffle=False`` keeps the input order (evaluation).

    Languages: with ``languages`` (one tag per example) and ``temperature`` ``T != 1`` the epoch
    permutes, instead of all indices, the same number of indices drawn per language by
    :meth:`draw` (``language_counts()`` of each; a language may come more than once or not at all
    per epoch); bucketing, batch order, the short last batch and resume are as above. ``T = 1``
    (the default) is exactly the plain sampler, every example once per epoch.

    Resuming: :meth:`resume_at` skips the first ``skip`` batches of an epoch (for ``P`` processes,
    ``P`` times the batches each process had consumed); :meth:`set_epoch` to another epoch clears it.
    Usable as ``DataLoader(batch_sampler=...)``.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        bucket_size: int | None = None,
        drop_last: bool = False,
        languages: Sequence[str] | None = None,
        temperature: float = 1.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not temperature > 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a finite number > 0, not {temperature}")
        if temperature != 1 and (languages is None or not shuffle):
            raise ValueError("temperature != 1 resamples languages: it needs languages and shuffle=True")
        if languages is not None and len(languages) != len(lengths):
            raise ValueError(f"{len(languages)} languages for {len(lengths)} examples")
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        bucket = bucket_size or 50 * batch_size
        self.bucket_size = -(-bucket // batch_size) * batch_size
        self.drop_last = drop_last
        self.epoch = 0
        self.skip = 0
        self.temperature = float(temperature)
        tags = np.asarray(() if languages is None else languages, dtype=str)
        tags, inverse = np.unique(tags, return_inverse=True)
        #: each language's dataset indices, ascending (tags sorted)
        self.by_language = {str(tag): np.flatnonzero(inverse == i) for i, tag in enumerate(tags)}
        sizes = {tag: len(index) for tag, index in self.by_language.items()}
        self.quotas = sizes if self.temperature == 1 else language_quotas(sizes, self.temperature)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip = 0
        self.epoch = epoch

    def resume_at(self, epoch: int, skip: int) -> None:
        self.epoch, self.skip = epoch, skip

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of ``epoch`` (default: the current one), ignoring ``skip``."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.lengths)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            plain = self.temperature == 1  # every example once (also without languages)
            order = rng.permutation(n) if plain else self.draw(epoch)[rng.permutation(n)]
            for begin in range(0, n, self.bucket_size):
                chunk = order[begin : begin + self.bucket_size]
                order[begin : begin + self.bucket_size] = chunk[
                    np.argsort(self.lengths[chunk], kind="stable")
                ]
        else:
            order = np.arange(n)
        cut = [order[i : i + self.batch_size].tolist() for i in range(0, n, self.batch_size)]
        short = cut.pop() if cut and len(cut[-1]) < self.batch_size else None
        if self.shuffle:
            cut = [cut[i] for i in rng.permutation(len(cut))]
        if short is not None and not self.drop_last:
            cut.append(short)
        return cut

    def draw(self, epoch: int) -> np.ndarray:
        """The ``len(lengths)`` dataset indices of ``epoch`` for ``T != 1``, grouped by language (the
        order does not matter: :meth:`batches` shuffles them). Language ``l`` with ``size`` examples
        and quota ``q = a * size + r`` gives every example ``a`` times (whole passes) plus a window
        of ``r`` from a permutation of its examples: epochs ``c*k ... c*k + k - 1`` with
        ``k = ceil(size / r)`` take the consecutive windows ``[i*r, (i+1)*r)`` of permutation ``c``
        (seeded by ``(seed, l, c)``; the last window wraps round to its start). So within an epoch
        every example comes ``a`` or ``a + 1`` times, and an undersampled language (``a = 0``) shows
        all its examples in every cycle of ``k`` epochs (the first window is a prefix). Oversampled
        copies of one sentence have one length, so bucketing tends to put them in one batch: that
        is what upweighting a language with few examples means."""
        parts = []
        for tag, index in self.by_language.items():
            size = len(index)
            whole, rest = divmod(self.quotas[tag], size)
            parts.append(np.tile(index, whole))
            if rest:
                cycle, window = divmod(epoch, -(-size // rest))
                key = int.from_bytes(tag.encode("utf-8"), "little")  # independent of other languages
                perm = np.random.default_rng([self.seed, _WINDOWS, key, cycle]).permutation(size)
                parts.append(index[perm[np.arange(window * rest, (window + 1) * rest) % size]])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def language_counts(self) -> dict[str, int]:
        """Examples per language in every epoch (sorted tags; before ``drop_last``): the languages'
        sizes for ``T = 1``, else :func:`language_quotas`. Empty without languages."""
        return dict(self.quotas)

    def num_batches(self) -> int:
        """Batches in a whole epoch (``len()`` is what is left of the current one)."""
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + int(rest > 0 and not self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches()[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_batches() - self.skip)


_WINDOWS = 0x4C414E47  # "LANG": keeps the per-language permutations apart from the epoch's seed


def language_quotas(sizes: Mapping[str, int], temperature: float) -> dict[str, int]:
    """Examples per language in an epoch of ``N = sum(sizes)`` examples, MT4CrossOIE's weights.

    ``q_l = p_l^(1/T) / sum_k p_k^(1/T)`` with ``p_l = sizes[l] / N``; ``T = 1`` is the natural
    proportions, ``T -> inf`` uniform (MT4CrossOIE's code uses ``T = 100``). The counts ``N * q_l``
    are rounded by largest remainder: each language gets ``floor(N * q_l)``, the examples still
    missing go one each to the largest fractional parts (ties: the tag that sorts first), so they
    always sum to ``N``. For ``T >= 1`` every language gets at least its own size's share
    (``q_l >= p_l`` for the smallest), hence at least one example.

    MT4CrossOIE itself calls ``np.random.choice(k, n, q)``, which passes ``q`` as ``replace`` (the
    third positional argument), so its languages are in fact drawn uniformly, whatever ``T``; this
    applies the weights as the paper describes them.
    """
    tags = sorted(sizes)
    total = sum(sizes.values())
    weights = [(sizes[tag] / total) ** (1.0 / temperature) if sizes[tag] else 0.0 for tag in tags]
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(tags)), key=lambda i: (counts[i] - exact[i], tags[i]))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return dict(zip(tags, counts, strict=True))


@dataclass
class Collator:
    """Pads a list of encoded examples to the longest one and maps ``lang`` to ``lang_ids``.

    ``languages`` is the model's language list (``config.languages``); an example in another
    language gets ``-1`` (no language: fine for stages 1-2, rejected by router supervision).
    """

    pad_token_id: int
    languages: Sequence[str] = ()
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        length = max(len(e["input_ids"]) for e in examples)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        pads = {
            "input_ids": self.pad_token_id,
            "attention_mask": 0,
            "token_type_ids": 0,
            "pred_labels": IGNORE_INDEX,
            "arg_labels": IGNORE_INDEX,
            "pred_mask": 0,
        }
        batch: dict[str, torch.Tensor] = {}
        for key, pad in pads.items():
            if key not in examples[0]:
                continue
            rows = [list(e[key]) + [pad] * (length - len(e[key])) for e in examples]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        index = {lang: i for i, lang in enumerate(self.languages)}
        batch["lang_ids"] = torch.tensor([index.get(e["lang"], -1) for e in examples], dtype=torch.long)
        return batch


def subword_to_word(values: Sequence[Any], starts: Sequence[int], fill: Any) -> list[Any]:
    """Per-word values read at each word's first sub-word; ``fill`` for words without one."""
    return [values[s] if s >= 0 else fill for s in starts]


def bridge_gaps(tags: list[int], starts: Sequence[int], o_label: int) -> list[int]:
    """Words without a sub-word inside the window take the ``I`` of a chunk that continues across
    them (``X-B/I, <gap>, X-I`` -> the gap is ``X-I``), else ``O``: a dropped zero-width character
    must not split an argument in two. ``B`` ids are even and ``I = B + 1`` in both label sets."""
    out = list(tags)
    for i, start in enumerate(starts):
        if start >= 0:
            continue
        out[i] = o_label
        previous = out[i - 1] if i > 0 else o_label
        following = next((out[j] for j in range(i + 1, len(out)) if starts[j] >= 0), o_label)
        if previous != o_label and following == (previous | 1) and following != o_label:
            out[i] = previous | 1
    return out


__all__ = ["BucketBatchSampler", "Collator", "bridge_gaps", "language_quotas", "subword_to_word"]
