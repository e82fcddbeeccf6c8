"""``openie4pp annotate --dry-run``: the per-stage table, sent to no one, and how close it comes to
what a real run is then billed.

The bill is the fake server's: ``usage_responder`` answers as ``annotate_responder`` does and reports
usage counted by a word-level tokenizer trained here on the sample (no download) over a ChatML
rendering of the chat, as a real server counts. The dry run gets the same ``tokenizer.json`` with
``--tokenizer``; a pilot run (``--shard 0/10``) calibrates its output estimates, and the estimate
for the rest of the input is compared with what the run then reports, stage by stage.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import annotate_args
from fake_openai_server import FakeServerProcess, spawn
from usage_responder import END, START, TOKENIZER_ENV

from openie4pp.annotate.config import AnnotationConfig
from openie4pp.annotate.dry_run import DryRunEstimate, estimate_annotation
from openie4pp.app.cli import main
from openie4pp.errors import UsageError

SAMPLE = Path(__file__).resolve().parents[1] / "openie4pp" / "data" / "sample"
STAGE_PURPOSE = {"extract": "stage1", "project": "stage1", "translate": "translate", "verify": "verify"}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A word-level tokenizer.json trained on the sample's sentences, with ChatML's markers."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    texts = [json.loads(line)["text"] for name in ("extract.jsonl", "project_en.jsonl")
             for line in (SAMPLE / name).read_text(encoding="utf-8").splitlines()]
    built = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    built.pre_tokenizer = pre_tokenizers.Whitespace()
    built.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]", START, END]))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    built.save(str(path))
    return path


@pytest.fixture(scope="module")
def server(tokenizer: Path) -> Iterator[FakeServerProcess]:
    with spawn("--responder", "usage_responder:respond", env={TOKENIZER_ENV: str(tokenizer)}) as process:
        yield process


def dry_run(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    """``openie4pp annotate ARGS --dry-run``: exit 0, the table, then its JSON (returned)."""
    assert main([*args, "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("dry run:") and lines[1].split()[:3] == ["stage", "requests", "cached"]
    return json.loads(lines[-1])


def billed(cache: Path, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, dict[str, int]]:
    """What the server reported, per purpose, for the cache's answers (other than ``skip``'s keys)."""
    totals: dict[str, dict[str, int]] = {}
    with sqlite3.connect(cache) as db:
        for key, purpose, prompt, completion in db.execute(
                "SELECT key, purpose, prompt_tokens, completion_tokens FROM responses"):
            if key in skip:
                continue
            row = totals.setdefault(purpose, {"requests": 0, "input_tokens": 0, "output_tokens": 0})
            row["requests"] += 1
            row["input_tokens"] += prompt
            row["output_tokens"] += completion
    return totals


def keys(cache: Path) -> set[str]:
    with sqlite3.connect(cache) as db:
        return {row[0] for row in db.execute("SELECT key FROM responses")}


def errors(estimate: dict[str, Any], actual: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    """Relative error of each stage's tokens, and the requests estimated and made."""
    found: dict[str, dict[str, Any]] = {}
    for stage, row in estimate["stages"].items():
        real = actual[STAGE_PURPOSE[stage]]
        found[stage] = {"requests": (row["requests"], real["requests"]),
                        **{k: row[k] / real[k] - 1 for k in ("input_tokens", "output_tokens")}}
    return found


def per_request(estimate: dict[str, Any], actual: dict[str, dict[str, int]], stage: str) -> float:
    """The relative error of the input tokens per request of ``stage``."""
    row, real = estimate["stages"][stage], actual[STAGE_PURPOSE[stage]]
    return abs((row["input_tokens"] / row["requests"]) / (real["input_tokens"] / real["requests"]) - 1)


def accuracy_run(tmp_path: Path, server: FakeServerProcess, tokenizer: Path,
                 capsys: pytest.CaptureFixture[str], source: Path, *extra: str) -> tuple[Any, ...]:
    """Dry runs before and after a pilot, then the real run: (uncalibrated estimate, the same
    without a tokenizer, calibrated estimate, all billed, billed after the pilot)."""
    out = tmp_path / "out"
    args = annotate_args(server, source, out, *extra)
    cold = dry_run(capsys, *args, "--tokenizer", str(tokenizer))
    chars = dry_run(capsys, *args)
    assert main([*args, "--shard", "0/10"]) == 0  # the pilot: a tenth of the input, by id hash
    capsys.readouterr()
    piloted = keys(out / "cache.sqlite")
    warm = dry_run(capsys, *args, "--tokenizer", str(tokenizer))
    assert main(args) in (0, 1)
    stats = json.loads((out / "stats.json").read_text())
    after = billed(out / "cache.sqlite", piloted)
    assert sum(r["input_tokens"] for r in after.values()) == stats["tokens"]["prompt"]  # no row lost
    assert {p: r["requests"] for p, r in after.items()} == stats["requests_by_purpose"]
    return cold, chars, warm, billed(out / "cache.sqlite"), after


def test_cli_prints_the_table_without_any_server(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> None:
        raise AssertionError(f"a dry run opened a connection to {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    out = tmp_path / "out"
    result = dry_run(capsys, "annotate", "--input", str(SAMPLE / "extract.jsonl"), "--out", str(out),
                     "--endpoint", "http://127.0.0.1:1", "--model", "m", "--canaries", "0")
    assert list(result["stages"]) == ["extract", "verify"]
    assert result["items"] == result["units"] == result["stages"]["extract"]["requests"] == 300
    assert result["exact_tokens"] is False and "4 characters per token" in result["tokens"]
    assert result["total"]["input_tokens"] > 300 * 500  # the system prompt and examples, every time
    assert not out.exists()  # nothing written, not even the folder


def test_extract_estimate_within_ten_percent_of_the_run(tmp_path: Path, server: FakeServerProcess,
                                                        tokenizer: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cold, chars, warm, billed_all, after = accuracy_run(tmp_path, server, tokenizer, capsys,
                                                        SAMPLE / "extract.jsonl")
    assert warm["calibrated"] == ["stage1", "verify"] and warm["finished"] > 10
    calibrated = errors(warm, after)
    for stage, error in calibrated.items():
        estimated, made = error["requests"]
        assert estimated == made or stage == "verify", (stage, error)
        assert abs(estimated - made) <= 0.05 * made, (stage, error)  # sentences without a triple
        assert abs(error["input_tokens"]) < 0.10, (stage, error)
        assert abs(error["output_tokens"]) < 0.10, (stage, error)
    # before the pilot: every sentence is expected to reach the judge (25 of 300 have no grounded
    # triple here), with the default 2 candidates; the prompts themselves are rendered exactly
    uncalibrated = errors(cold, billed_all)
    assert uncalibrated["extract"]["requests"] == (300, 300)
    assert abs(uncalibrated["extract"]["input_tokens"]) < 0.10, uncalibrated
    assert per_request(cold, billed_all, "verify") < 0.10, uncalibrated
    assert all(-0.5 < e["output_tokens"] < 1.0 for e in uncalibrated.values()), uncalibrated
    # without a tokenizer: ~4 characters a token, against a word-level vocabulary (coarser than BPE)
    estimate = errors(chars, billed_all)
    assert all(abs(e["input_tokens"]) < 0.3 for e in estimate.values()), estimate
    print("extract calibrated", calibrated, "uncalibrated", uncalibrated, "chars", estimate)


def test_project_estimate_within_ten_percent_of_the_run(tmp_path: Path, server: FakeServerProcess,
                                                        tokenizer: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # the fake server "translates" a sentence it has no translation for by echoing it: let that
    # pass the language check, so every unit goes through translate, project and verify
    monkeypatch.setattr("openie4pp.annotate.annotator.is_language", lambda text, lang: True)
    cold, chars, warm, billed_all, after = accuracy_run(
        tmp_path, server, tokenizer, capsys, SAMPLE / "project_en.jsonl", "--mode", "project",
        "--target-lang", "de,es")
    assert list(warm["stages"]) == ["translate", "project", "verify"]
    assert warm["units"] + warm["finished"] == 120
    calibrated = errors(warm, after)
    for stage, error in calibrated.items():
        estimated, made = error["requests"]
        assert estimated == made or stage == "verify", (stage, error)
        assert abs(estimated - made) <= 0.05 * made, (stage, error)  # projections that do not ground
        assert abs(error["input_tokens"]) < 0.10, (stage, error)
        assert abs(error["output_tokens"]) < 0.10, (stage, error)
    uncalibrated = errors(cold, billed_all)
    assert all(abs(e["input_tokens"]) < 0.10 for e in uncalibrated.values()), uncalibrated
    estimate = errors(chars, billed_all)
    assert all(abs(e["input_tokens"]) < 0.3 for e in estimate.values()), estimate
    print("project calibrated", calibrated, "uncalibrated", uncalibrated, "chars", estimate)


def folder_state(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def config(source: Path, out: Path, cache: Path | None = None, **pipeline: Any) -> AnnotationConfig:
    return AnnotationConfig(input={"path": str(source)}, out=out, cache={"path": cache},
                            backend={"endpoints": ["http://127.0.0.1:1/v1"], "model": "fake-model"},
                            pipeline={"canaries": {"per_lang": 0}, **pipeline})


def test_cached_requests_and_finished_items_are_not_counted_again(
        tmp_path: Path, server: FakeServerProcess, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "in.jsonl"
    lines = (SAMPLE / "extract.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    before = estimate_annotation(config(source, out))
    assert (before.stage("extract").requests, before.finished) == (12, 0)
    assert main(annotate_args(server, source, out, "--limit", "5")) == 0
    capsys.readouterr()
    state = folder_state(out)
    after = estimate_annotation(config(source, out))
    assert (after.finished, after.units, after.stage("extract").requests) == (5, 7, 7)
    assert after.stage("extract").input_tokens < before.stage("extract").input_tokens * 8 / 12
    # another prompt setting (no judge): the extraction answers are in the cache, nothing to pay
    other = tmp_path / "other"
    cached = estimate_annotation(config(source, other, out / "cache.sqlite", verify=False))
    assert cached.stage("extract").cached == 5 and cached.stage("extract").requests == 7
    assert folder_state(out) == state and not other.exists()  # read, never written


def test_cost_online_and_batch(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text((SAMPLE / "extract.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n")
    settings = config(source, tmp_path / "out", price_in=2.0, price_out=8.0, verify=False)
    settings = settings.model_copy(update={"execution": settings.execution.model_copy(
        update={"batch": settings.execution.batch.model_copy(update={"price_factor": 0.25})})})
    estimate: DryRunEstimate = estimate_annotation(settings)
    total = estimate.total
    assert total.cost_online == pytest.approx((total.input_tokens * 2.0 + total.output_tokens * 8.0) / 1e6)
    assert total.cost_batch == pytest.approx(total.cost_online * 0.25) and total.cost_online > 0
    assert estimate.as_dict()["total"]["cost_batch_usd"] == round(total.cost_batch, 6)
    assert "batch x 0.25" in estimate.table()


def test_unreadable_tokenizer_is_a_usage_error(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text((SAMPLE / "extract.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n")
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{}")
    settings = config(source, tmp_path / "out")
    for path, words in ((tmp_path / "missing.json", "no such file"), (broken, "not a readable tokenizer")):
        with pytest.raises(UsageError, match=words):
            estimate_annotation(settings.model_copy(
                update={"backend": settings.backend.model_copy(update={"tokenizer": str(path)})}))


CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_tokenizer_folder_with_a_chat_template_counts_what_the_server_bills(
        tmp_path: Path, server: FakeServerProcess, tokenizer: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes(tokenizer.read_bytes())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "chat_template": CHATML}))
    source = tmp_path / "in.jsonl"
    lines = (SAMPLE / "extract.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = annotate_args(server, source, tmp_path / "out", "--no-verify")
    estimate = dry_run(capsys, *args, "--tokenizer", str(folder))
    assert "with its chat template" in estimate["tokens"] and estimate["exact_tokens"]
    assert main(args) == 0
    capsys.readouterr()
    assert estimate["stages"]["extract"]["input_tokens"] == billed(tmp_path / "out" / "cache.sqlite")[
        "stage1"]["input_tokens"]  # the template rendered as the server renders it: exactly


def test_canaries_are_a_row_of_their_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("openie4pp.benchmarks")
    from openie4pp.paths import benchmarks_dir

    try:
        benchmarks_dir()
    except UsageError:
        pytest.skip("no benchmarks installed")
    source = tmp_path / "in.jsonl"
    source.write_text((SAMPLE / "extract.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n")
    result = dry_run(capsys, "annotate", "--input", str(source), "--out", str(tmp_path / "out"), "--endpoint",
                     "http://127.0.0.1:1", "--model", "m", "--canaries", "3", "--canary-langs", "en,de")
    assert list(result["stages"]) == ["extract", "verify", "canaries"]
    assert result["stages"]["extract"]["requests"] == 1 and result["stages"]["canaries"]["requests"] == 12
    assert result["total"]["requests"] == 14


def test_the_embedded_models_vocabulary_and_the_estimate_agree(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The ~4 characters a token rule against a real BPE vocabulary (Qwen2.5's, when the embedded
    model is assembled on this machine): within 10 % on the sample's prompts."""
    from openie4pp.annotate.backends.embedded_models import MODELS, cache_dir

    if not (cache_dir() / MODELS["qwen2.5-coder-0.5b"].filename).is_file():
        pytest.skip("the embedded model is not assembled here")
    args = ["annotate", "--input", str(SAMPLE / "extract.jsonl"), "--out", str(tmp_path / "out"),
            "--endpoint", "local", "--model", "qwen2.5-coder-0.5b", "--constrain", "none"]
    exact = dry_run(capsys, *args)
    assert exact["exact_tokens"] and "GGUF" in exact["tokens"]
    settings = config(SAMPLE / "extract.jsonl", tmp_path / "out")
    estimate = estimate_annotation(settings).as_dict()
    for stage in ("extract", "verify"):
        ratio = estimate["stages"][stage]["input_tokens"] / exact["stages"][stage]["input_tokens"]
        assert abs(ratio - 1) < 0.10, (stage, ratio)


# -- found in review: each crashed or miscounted before its fix ----------------------------------

_SAMPLE_LINE = (Path(__file__).resolve().parents[1] / "openie4pp" / "data" / "sample" / "extract.jsonl")
_REFUSES_SYSTEM = ("{% for m in messages %}{% if m.role == 'system' %}"
                   "{{ raise_exception('System role not supported') }}{% endif %}"
                   "<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}")


def _one_line_config(tmp_path: Path, *, limit: int | None = None, canaries: int = 0,
                     **backend: Any) -> Any:
    from openie4pp.annotate.config import AnnotationConfig

    source = tmp_path / "in.jsonl"
    source.write_text(_SAMPLE_LINE.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    return AnnotationConfig(input={"path": str(source), "limit": limit}, out=tmp_path / "out",
                            backend={"endpoints": ["http://127.0.0.1:1/v1"], "model": "fake-model",
                                     **backend},
                            pipeline={"canaries": {"per_lang": canaries, "langs": ["en"]}})


def test_an_empty_cache_file_is_no_cache(tmp_path: Path) -> None:
    from openie4pp.annotate.dry_run import estimate_annotation

    config = _one_line_config(tmp_path)
    config.out.mkdir()
    (config.out / "cache.sqlite").touch()  # a valid, empty SQLite file without the table
    assert estimate_annotation(config).total.cached == 0


def test_a_chat_template_that_refuses_the_chat_falls_back_to_per_message_counts(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from openie4pp.annotate.dry_run import estimate_annotation

    built = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    built.pre_tokenizer = pre_tokenizers.Whitespace()
    built.train_from_iterator(["a b c"], trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    folder = tmp_path / "tok"
    folder.mkdir()
    built.save(str(folder / "tokenizer.json"))
    settings = {"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]",
                "chat_template": _REFUSES_SYSTEM}
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    estimate = estimate_annotation(_one_line_config(tmp_path, tokenizer=str(folder)))
    assert estimate.total.requests == 2 and estimate.total.input_tokens > 0
    assert "refuses" in estimate.tokens


def test_limit_0_costs_nothing_canaries_included(tmp_path: Path) -> None:
    from openie4pp.annotate.dry_run import estimate_annotation

    estimate = estimate_annotation(_one_line_config(tmp_path, limit=0, canaries=2))
    assert estimate.total.requests == 0
