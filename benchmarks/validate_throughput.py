"""``openie4pp validate`` throughput and memory on a large generated JSONL file.

Writes ``--records`` valid records (real CaRB test sentences with grounded LLM-style
extractions, ids made unique) to a temporary file, validates it, and prints one JSON object
with records/s, MB/s and the peak resident memory, which stays flat as the file grows: the
validator streams (only the set of sentence ids, for duplicate detection, grows).

    python benchmarks/validate_throughput.py [--records 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from openie4pp.paths import benchmarks_dir
from openie4pp.schema import Argument, Element, Extraction, Provenance, Record, Sentence
from openie4pp.validate import validate_paths


def template_lines() -> list[str]:
    lines = []
    texts = (benchmarks_dir() / "carb" / "sentences_test.txt").read_text(encoding="utf-8").splitlines()
    for i, text in enumerate(texts):
        sentence = Sentence.from_text(text, "en", id=f"s{i}", pretokenized=True)
        n = len(sentence.tokens)
        if n < 4:
            continue
        extraction = Extraction(
            predicate=Element(text=sentence.span_text(1, 2), span=(1, 2)),
            arguments=[
                Argument(role="arg0", text=sentence.span_text(0, 1), span=(0, 1)),
                Argument(role="arg1", text=sentence.span_text(2, n), span=(2, n)),
            ],
            confidence=0.8,
        )
        record = Record(
            sentence=sentence, extractions=[extraction], provenance=Provenance(source="llm", model="m")
        )
        lines.append(record.model_dump_json())
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    templates = template_lines()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for i in range(args.records):
                line = templates[i % len(templates)]
                out.write(line.replace('"id":"s', f'"id":"{i}-s', 1) + "\n")
        size = path.stat().st_size
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        summary = validate_paths([path])
        seconds = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert summary.ok and summary.records == args.records, summary.as_dict()
    print(
        json.dumps(
            {
                "benchmark": "validate_throughput",
                "records": args.records,
                "file_mb": round(size / 1e6, 1),
                "seconds": round(seconds, 2),
                "records_per_second": round(args.records / seconds),
                "mb_per_second": round(size / 1e6 / seconds, 1),
                "peak_rss_mb_before": round(rss_before / 1024, 1),
                "peak_rss_mb_after": round(rss_after / 1024, 1),
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
