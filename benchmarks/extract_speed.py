"""Sentences per second of ``openie4pp extract`` on the 641 CaRB test sentences.

Default model: the embedded multilingual-e5-small encoder with freshly initialised (random) Multi2OIE heads,
which is enough for speed but over-predicts predicates (a random predicate head tags about a third of
the words ``P-B``), so the argument module runs far more often than with a trained model; pass
``--model DIR`` (an ``openie4pp train`` output) for realistic predicate counts. Timing covers
tokenisation, the batched encoder pass, the one batched argument call per batch and decoding; it is
the best of ``--repeat`` runs after one warm-up batch. Prints one JSON object.

    python benchmarks/extract_speed.py [--model DIR] [--batch-size 32] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from openie4pp.paths import benchmarks_dir
from openie4pp.schema import Sentence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a trained model folder (default: e5-small + random heads)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N sentences only")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from openie4pp.train.extract import Extractor

    lines = (benchmarks_dir() / "carb" / "sentences_test.txt").read_text(encoding="utf-8").splitlines()
    sentences = [Sentence.from_text(line, "en", pretokenized=True) for line in lines if line.strip()]
    sentences = sentences[: args.limit] if args.limit else sentences
    options = {"device": args.device, "batch_size": args.batch_size, "max_length": args.max_length}
    if args.model:
        extractor = Extractor.from_pretrained(args.model, **options)
        name = Path(args.model).name
    else:
        from transformers import AutoTokenizer

        from openie4pp.train.model import Multi2OIEModel

        torch.manual_seed(0)
        from openie4pp.train.embedded_encoder import encoder_folder

        path = str(encoder_folder())
        model = Multi2OIEModel.from_encoder(path, languages=["en"], local_files_only=True)
        extractor = Extractor(
            model, AutoTokenizer.from_pretrained(path), name="e5-small-random-heads", **options
        )
        name = "e5-small-random-heads"
    extractor.extract(sentences[: args.batch_size])  # warm-up
    best, extractions = float("inf"), 0
    for _ in range(args.repeat):
        start = time.perf_counter()
        out = extractor.extract(sentences)
        best = min(best, time.perf_counter() - start)
        extractions = sum(len(e) for e in out)
    print(
        json.dumps(
            {
                "benchmark": "extract_speed",
                "model": name,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "sentences": len(sentences),
                "batch_size": args.batch_size,
                "seconds": round(best, 3),
                "sentences_per_s": round(len(sentences) / best, 1),
                "extractions": extractions,
            }
        )
    )


if __name__ == "__main__":
    main()
