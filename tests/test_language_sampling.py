"""Language-balanced sampling (``data.language_temperature``), as MT4CrossOIE trains.

Each epoch keeps ``N = len(data)`` examples; language ``l`` gets ``N * q_l`` of them with
``q_l ∝ p_l^(1/T)``, rounded by largest remainder. ``T = 1`` must be exactly the plain sampler
(every existing resume test depends on it); ``T != 1`` must stay a pure function of ``(seed,
epoch)``, length-bucketed, with one short batch at most and last, and resumable mid-epoch. The
recipe logs each epoch's counts on that epoch's first log.jsonl line, once, also across a resume.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from collections import Counter
from decimal import Decimal, getcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openie4pp.errors import UsageError
from openie4pp.train.batching import BucketBatchSampler
from openie4pp.train.config import load_config

SIZES = {"en": 900, "de": 90, "zh": 10}
LANGS = [lang for lang, size in SIZES.items() for _ in range(size)]
random.Random(7).shuffle(LANGS)  # languages interleaved in the dataset, as after a real build
LENGTHS = [random.Random(i).randint(5, 80) for i in range(len(LANGS))]


def plain_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, bucket: int) -> list[list[int]]:
    """The sampler's algorithm before languages existed, copied: permute, sort chunks, shuffle batches."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    sizes = np.asarray(lengths)
    for begin in range(0, len(order), bucket):
        chunk = order[begin : begin + bucket]
        order[begin : begin + bucket] = chunk[np.argsort(sizes[chunk], kind="stable")]
    cut = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    short = cut.pop() if len(cut[-1]) < batch_size else None
    cut = [cut[i] for i in rng.permutation(len(cut))]
    return cut + ([short] if short else [])


def expected_counts(sizes: dict[str, int], temperature: float) -> dict[str, int]:
    """``N * q_l`` in 50-digit decimals, floored, the missing ones to the largest remainders."""
    getcontext().prec = 50
    total = sum(sizes.values())
    power = Decimal(1) / Decimal(temperature)
    weights = {tag: (Decimal(size) / total) ** power for tag, size in sizes.items()}
    exact = {tag: total * w / sum(weights.values()) for tag, w in weights.items()}
    counts = {tag: int(x) for tag, x in exact.items()}
    for tag in sorted(exact, key=lambda t: (counts[t] - exact[t], t))[: total - sum(counts.values())]:
        counts[tag] += 1
    return counts


def drawn(batches: list[list[int]]) -> list[int]:
    return [i for batch in batches for i in batch]


def test_temperature_one_is_exactly_the_plain_sampler() -> None:
    plain = BucketBatchSampler(LENGTHS, 16, seed=3, bucket_size=160)
    tagged = BucketBatchSampler(LENGTHS, 16, seed=3, bucket_size=160, languages=LANGS, temperature=1)
    for epoch in range(4):
        expected = plain_batches(LENGTHS, 16, 3, epoch, 160)
        assert plain.batches(epoch) == tagged.batches(epoch) == expected
    assert tagged.language_counts() == {"de": 90, "en": 900, "zh": 10}
    assert plain.language_counts() == {}


def test_counts_follow_the_formula_with_largest_remainder() -> None:
    sampler = BucketBatchSampler(LENGTHS, 16, seed=3, languages=LANGS, temperature=100)
    counts = expected_counts(SIZES, 100)
    assert counts == {"en": 341, "de": 333, "zh": 326}  # nearly uniform, from 900 / 90 / 10
    assert sampler.language_counts() == counts
    for epoch in range(3):
        batches = sampler.batches(epoch)
        assert len(drawn(batches)) == len(LANGS)  # the epoch keeps its length
        assert Counter(LANGS[i] for i in drawn(batches)) == counts
    for temperature in (1.5, 2, 7, 1e6):
        got = BucketBatchSampler(LENGTHS, 16, languages=LANGS, temperature=temperature).language_counts()
        assert got == expected_counts(SIZES, temperature), temperature
    assert expected_counts(SIZES, 1) == SIZES


def test_every_example_of_a_language_comes_before_any_repeats() -> None:
    sampler = BucketBatchSampler(LENGTHS, 16, seed=3, languages=LANGS, temperature=100)
    counts = sampler.language_counts()
    seen: dict[str, set[int]] = {lang: set() for lang in SIZES}
    for epoch in range(3):  # en: 341 of 900 an epoch, so every one within ceil(900 / 341) = 3 epochs
        uses = Counter(drawn(sampler.batches(epoch)))
        for lang, size in SIZES.items():
            mine = [i for i in range(len(LANGS)) if LANGS[i] == lang]
            whole = counts[lang] // size  # en 0, de 3, zh 32 whole passes
            assert {uses[i] for i in mine} <= {whole, whole + 1}, (lang, epoch)
            seen[lang] |= {i for i in mine if uses[i]}
    assert all(len(seen[lang]) == size for lang, size in SIZES.items())


def test_deterministic_for_seed_and_epoch_and_different_across_epochs() -> None:
    one = BucketBatchSampler(LENGTHS, 16, seed=3, languages=LANGS, temperature=100)
    two = BucketBatchSampler(LENGTHS, 16, seed=3, languages=LANGS, temperature=100)
    assert one.batches(5) == two.batches(5)
    assert one.batches(0) != one.batches(1)
    assert sorted(drawn(one.batches(0))) != sorted(drawn(one.batches(1)))  # other en/de examples
    other = BucketBatchSampler(LENGTHS, 16, seed=4, languages=LANGS, temperature=100)
    assert other.batches(0) != one.batches(0)


def test_resume_mid_epoch_gives_the_remaining_batches() -> None:
    sampler = BucketBatchSampler(LENGTHS, 16, seed=3, languages=LANGS, temperature=100)
    full = sampler.batches(2)
    fresh = BucketBatchSampler(LENGTHS, 16, seed=3, languages=LANGS, temperature=100)
    fresh.resume_at(2, 23)  # a new process after a restart
    assert list(fresh) == full[23:] and len(fresh) == len(full) - 23
    fresh.set_epoch(3)
    assert list(fresh) == sampler.batches(3)


def test_bucketing_and_the_short_last_batch_survive() -> None:
    sampler = BucketBatchSampler(LENGTHS, 16, seed=3, bucket_size=160, languages=LANGS, temperature=100)
    lengths = np.asarray(LENGTHS)
    batches = sampler.batches(0)
    assert [len(b) for b in batches] == [16] * 62 + [8]  # 1000 = 62 x 16 + 8: only the last is short
    assert sampler.num_batches() == len(batches)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    order = drawn(batches)
    random.Random(0).shuffle(order)
    unbucketed = sum(16 * lengths[order[i : i + 16]].max() for i in range(0, len(order), 16))
    assert padded < 1.15 * lengths[drawn(batches)].sum() < unbucketed
    assert all(list(lengths[b]) == sorted(lengths[b]) for b in batches)  # sorted inside each chunk
    dropped = BucketBatchSampler(
        LENGTHS, 16, seed=3, bucket_size=160, languages=LANGS, temperature=100, drop_last=True
    )
    assert dropped.batches(0) == batches[:-1]


def test_sampler_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="needs languages"):
        BucketBatchSampler(LENGTHS, 16, temperature=100)
    with pytest.raises(ValueError, match="languages for"):
        BucketBatchSampler(LENGTHS, 16, languages=LANGS[:-1], temperature=100)
    with pytest.raises(ValueError, match="temperature"):
        BucketBatchSampler(LENGTHS, 16, languages=LANGS, temperature=math.nan)


@pytest.mark.parametrize("value", ["0.5", "0", "-3", "nan", ".inf", "hot"])
def test_config_rejects_a_bad_temperature(value: str) -> None:
    with pytest.raises(UsageError, match=re.escape("data.language_temperature")):
        load_config(None, [f"data.language_temperature={value}"])


def test_config_default_and_a_valid_temperature() -> None:
    assert load_config(None, []).data.language_temperature == 1
    assert load_config(None, ["data.language_temperature=100"]).data.language_temperature == 100.0


def test_a_bad_temperature_stops_the_cli_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from openie4pp.app.cli import main

    assert main(["train", f"run_dir={tmp_path}", "data.language_temperature=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("openie4pp train: error: config: data.language_temperature: must be a number >= 1")
    assert not list(tmp_path.iterdir())


# -- the recipe: counts in log.jsonl, once per epoch, also across a resume ----------------------------


@pytest.fixture(scope="module")
def recipe() -> Any:
    torch = pytest.importorskip("torch")
    pytest.importorskip("accelerate")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only wait for each other (see test_train_recipe)
    from helpers import overrides

    from openie4pp.train.recipe import train

    def run(folder: Path, *extra: str) -> list[dict[str, Any]]:
        train(load_config(None, overrides(folder, "epochs=2", "log_every=5", *extra), stage=1))
        return [json.loads(line) for line in (folder / "stage1" / "log.jsonl").read_text().splitlines()]

    yield run
    torch.set_num_threads(threads)


def counted(rows: list[dict[str, Any]]) -> list[tuple[int, int, dict[str, int], float]]:
    return [(r["step"], r["epoch"], r["languages"], r["temperature"]) for r in rows if "languages" in r]


def test_recipe_logs_each_epochs_counts_once_across_resumes(recipe: Any, tmp_path: Path) -> None:
    """~95 examples, 12 steps an epoch, lines at steps 5 10 15 20 24: epoch 1's first line is step 15."""
    hot = "data.language_temperature=100"
    straight = recipe(tmp_path / "a", hot)
    assert all("loss" in r and "step" in r for r in straight)  # readers of the loss lines keep working
    lines = counted(straight)
    assert [(step, epoch) for step, epoch, _, _ in lines] == [(5, 0), (15, 1)]
    counts = lines[0][2]
    assert lines[1][2] == counts and lines[0][3] == 100.0
    assert sum(counts.values()) == 95 and max(counts.values()) - min(counts.values()) <= 1

    # halted at 14, mid-epoch 1 before its first line; the log then holds lines past the checkpoint
    # (as after a crash), which the resume cuts, step 15's counts included: they come back once
    recipe(tmp_path / "b", hot, "halt_at_step=14")
    shutil.copy(tmp_path / "a" / "stage1" / "log.jsonl", tmp_path / "b" / "stage1" / "log.jsonl")
    resumed = recipe(tmp_path / "b", hot, "resume=true")
    assert counted(resumed) == lines
    assert [r["step"] for r in resumed] == [r["step"] for r in straight]
    after = [(x["loss"], y["loss"]) for x, y in zip(straight, resumed, strict=True) if x["step"] > 15]
    assert after and all(abs(x - y) <= 1e-6 for x, y in after)  # (15's window began at the resume)

    # halted at 17: epoch 1's first line (15) is before the checkpoint, kept and not written again
    recipe(tmp_path / "c", "halt_at_step=17")
    natural = counted(recipe(tmp_path / "c", "resume=true"))
    assert [(step, epoch, t) for step, epoch, _, t in natural] == [(5, 0, 1.0), (15, 1, 1.0)]
    assert natural[0][2] == natural[1][2] and sum(natural[0][2].values()) == 95
