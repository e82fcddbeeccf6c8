"""How long ``openie4pp report`` takes on a large annotation folder, how much memory it needs, and
how big the HTML is: the report reads every line once and keeps only its sample, so time should
grow with the folder and memory and file size should not.

Builds a synthetic folder of ``--records`` records (three languages, one triple each; 1 in 10
sentences also rejected with a candidate line) with the real ``ShardWriter``, then times
:func:`openie4pp.report.write_report` at each size of ``--sizes``. Prints one JSON object.

    python benchmarks/report_speed.py [--sizes 1000,10000,100000] [--sample 200]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import make_record

from openie4pp.report import write_report
from openie4pp.schema import Rejection, RejectionReason
from openie4pp.shards import ShardWriter


def build(folder: Path, records: int) -> None:
    with ShardWriter(folder, durable=False) as writer:
        for i in range(records):
            writer.write(make_record(i, ("en", "zh-Hans")[i % 2]))
            if i % 10 == 0:
                writer.reject(Rejection(stage="stage2", reason=RejectionReason.llm_rejected, detail="no fact",
                                        input=f"sentence {i}", sentence_id=f"x{i}", lang="en",
                                        field="candidates[0]"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            folder = Path(tmp) / f"n{size}"
            build(folder, size)
            started = time.perf_counter()
            result = write_report(folder, Path(tmp) / f"n{size}.html", sample=args.sample)
            seconds = time.perf_counter() - started
            tracemalloc.start()  # a second run for the memory: tracemalloc slows Python down
            write_report(folder, Path(tmp) / f"n{size}.html", sample=args.sample)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append({"records": size, "seconds": round(seconds, 3),
                         "records_per_s": round(size / seconds), "python_peak_mib": round(peak / 2**20, 1),
                         "html_kib": round(result.bytes / 1024, 1), "records_shown": result.records_shown})
    print(json.dumps({"sample": args.sample, "runs": rows,
                      "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
