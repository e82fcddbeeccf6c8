"""Peak memory and time of preparing OpenIE4++ records for training, as the recipe does it.

Writes ``--records`` synthetic OpenIE4++ records (sentences of about 25 words in five languages, 2-3
grounded extractions each, built with the :mod:`openie4pp.schema` models) to a JSONL file in a
temporary folder, then, in a *fresh* Python process (so that writing them does not count), prepares
them with the recipe's own data path, :func:`openie4pp.train.data.build_dataset`, and a tiny
WordPiece tokenizer trained in that process (nothing is downloaded). Prints one JSON object with
the wall time and the peak resident memory (``ru_maxrss``) before and after preparing: preparing
must not hold every record in memory, so the growth should stay roughly flat as ``--records`` grows.

    python benchmarks/prepare_memory.py [--records 100000] [--num-proc N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from openie4pp.schema import Argument, Element, Extraction, Provenance, Record, Sentence, Source

LANGS = ("en", "de", "es", "pt", "zh")
WORDS_PER_SENTENCE = (20, 30)


def vocabulary(lang: str, size: int = 400) -> list[str]:
    """Pseudo-words of 3-9 letters, different for each language (so the tokenizer sees several)."""
    rng = random.Random(lang)
    letters = "abcdefghijklmnopqrstuvwxyz" if lang != "zh" else "的一是在不了有和人这中大为上个国我以要他"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def synthetic_record(index: int, rng: random.Random, words: dict[str, list[str]]) -> Record:
    lang = LANGS[index % len(LANGS)]
    tokens = [rng.choice(words[lang]) for _ in range(rng.randint(*WORDS_PER_SENTENCE))]
    sentence = Sentence.from_text(" ".join(tokens), lang, id=f"s{index}", pretokenized=True)
    extractions = []
    for _ in range(rng.randint(2, 3)):
        # arg0 [a, p) predicate [p, q) arg1 [q, e): contiguous, grounded, inside the sentence
        a = rng.randint(0, len(tokens) - 6)
        p = a + rng.randint(1, 2)
        q = p + rng.randint(1, 2)
        e = q + rng.randint(1, 2)
        extractions.append(
            Extraction(
                predicate=Element(text=sentence.span_text(p, q), span=(p, q)),
                arguments=[
                    Argument(role="arg0", text=sentence.span_text(a, p), span=(a, p)),
                    Argument(role="arg1", text=sentence.span_text(q, e), span=(q, e)),
                ],
                confidence=0.9,
            )
        )
    provenance = Provenance(source=Source.llm, model="m")
    return Record(sentence=sentence, extractions=extractions, provenance=provenance)


def write_records(path: Path, count: int) -> None:
    rng = random.Random(0)
    words = {lang: vocabulary(lang) for lang in LANGS}
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            out.write(synthetic_record(index, rng, words).model_dump_json() + "\n")


def tiny_tokenizer() -> Any:
    """A WordPiece fast tokenizer trained on the pseudo-words, as tests/test_train_data.py builds one."""
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    corpus = [" ".join(vocabulary(lang)) for lang in LANGS]
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=512, unk_token="[UNK]", pad_token="[PAD]",
        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
    )


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_now_mb() -> dict[str, float]:
    """Resident memory now, split (Linux): ``anon`` is the process's own heap, ``file`` the pages of
    memory-mapped files (Arrow tables), which the kernel can drop and read again."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if line.startswith(("RssAnon", "RssFile")))
    return {f"rss_{key.removeprefix('Rss').lower()}_mb_after_build": round(int(value.split()[0]) / 1024, 1)
            for key, value in fields.items()}


def measure(data: Path, cache: Path, num_proc: int | None) -> dict[str, Any]:
    """In this (fresh) process: prepare ``data`` as the recipe does, twice (built, then cached)."""
    import datasets  # noqa: F401  (imported before the first reading: its import is not the data's)

    from openie4pp.train.data import LoadStats, build_dataset

    tokenizer = tiny_tokenizer()
    tokenizer("warm up", is_split_into_words=False)
    before = peak_rss_mb()
    stats = LoadStats()
    start = time.perf_counter()
    dataset = build_dataset([str(data)], tokenizer, max_length=100, cache_dir=cache, num_proc=num_proc,
                            stats=stats)
    built_s = time.perf_counter() - start
    after_build, split = peak_rss_mb(), rss_now_mb()
    rows = len(dataset)
    del dataset
    start = time.perf_counter()
    again = LoadStats()
    cached = build_dataset([str(data)], tokenizer, max_length=100, cache_dir=cache, num_proc=num_proc,
                           stats=again)
    cached_s = time.perf_counter() - start
    assert len(cached) == rows and again.examples == stats.examples
    return {
        "records": stats.records,
        "examples": stats.examples,
        "rows": rows,
        "build_seconds": round(built_s, 2),
        "cached_seconds": round(cached_s, 2),
        "peak_rss_mb_before": before,
        "peak_rss_mb_after_build": after_build,
        "peak_rss_mb_after_cached": peak_rss_mb(),
        "peak_rss_growth_mb": round(after_build - before, 1),
        **split,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--num-proc", type=int, default=None)
    parser.add_argument("--measure", nargs=2, metavar=("DATA", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:  # the child process
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]), args.num_proc)))
        return
    with tempfile.TemporaryDirectory(prefix="openie4pp-prepare-") as tmp:
        data, cache = Path(tmp) / "train.jsonl", Path(tmp) / "cache"
        start = time.perf_counter()
        write_records(data, args.records)
        write_s = time.perf_counter() - start
        size = data.stat().st_size
        command = [sys.executable, __file__, "--measure", str(data), str(cache)]
        if args.num_proc:
            command += ["--num-proc", str(args.num_proc)]
        child = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(child.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "benchmark": "prepare_memory",
                "file_mb": round(size / 1e6, 1),
                "write_seconds": round(write_s, 2),
                **result,
                "records_per_second": round(result["records"] / max(result["build_seconds"], 1e-9)),
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
