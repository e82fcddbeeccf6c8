"""``openie4pp train`` fails loudly, early and in one line (issue 10: items 14, 15, 16, 18, the Low sweep).

Configuration mistakes are :class:`~openie4pp.errors.UsageError`\\ s (exit 2) found before anything is
loaded; too many rejected training lines stop the run before training (exit 1, the data is the
problem); a finished or checkpointed stage is never silently overwritten.
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

from openie4pp.app.cli import main
from openie4pp.errors import UsageError
from openie4pp.train.config import load_config, parse_overrides
from openie4pp.train.data import LoadStats, load_records

SMALL = [
    "data.max_length=64",
    "batch_size=8",
    "progress=false",
    "model.arg_layers=1",
    "model.arg_heads=2",
    "model.arg_ff_dim=64",
    "model.pos_emb_dim=8",
]


def one_error_line(capsys: pytest.CaptureFixture[str], command: str = "train") -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"openie4pp {command}: error: "), lines[0]
    return lines[0]


@functools.lru_cache(maxsize=1)
def good_lines() -> list[str]:
    return [r.model_dump_json() for r in load_records([{"benchmark": "carb-dev", "limit": 20}])]


def write_jsonl(path: Path, good: int, bad: int) -> Path:
    """``good`` valid records, then ``bad`` broken lines (malformed JSON and schema errors, alternating)."""
    broken = ['{"not json', '{"schema_version": "1.0", "sentence": {}}']
    lines = good_lines()[:good] + [broken[i % 2] for i in range(bad)]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- configuration: typed overrides, ranges, files (Low sweep) --------------------------------------


def test_override_of_a_text_key_stays_text() -> None:
    cfg = load_config(None, ["run_dir=1e5", "encoder=1e-3", "eval.metric=auc"])
    assert cfg.run_dir == "1e5" and cfg.encoder == "1e-3"
    assert cfg.output_dir == str(Path("1e5") / "stage1")
    assert parse_overrides(["run_dir=1e5", "output_dir=null", "epochs=3"]) == {
        "run_dir": "1e5",
        "output_dir": None,
        "epochs": 3,
    }
    assert load_config(None, ["optim.lr=1e-4", "mixed_precision=no"]).optim.lr == 1e-4
    assert load_config(None, ["mixed_precision=no"]).mixed_precision == "no"  # not YAML's False


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("epochs=1e999", "epochs"),
        ("epochs=0", "epochs"),
        ("max_steps=-5", "max_steps"),
        ("halt_at_step=-1", "halt_at_step"),
        ("batch_size=0", "batch_size"),
        ("grad_accum=0", "grad_accum"),
        ("optim.lr=0", "optim.lr"),
        ("optim.lr=nan", "optim.lr"),
        ("optim.lr=inf", "optim.lr"),
        ("optim.lr=.inf", "optim.lr"),
        ("optim.warmup_ratio=1.5", "optim.warmup_ratio"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("data.max_rejected_fraction=2", "data.max_rejected_fraction"),
        ("data.max_length=0", "data.max_length"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("eval.metric=accuracy", "eval.metric"),
        ("eval.benchmark=no-such-bench", "eval.benchmark"),
        ("moe.rank=0", "moe.rank"),
        ("moe.dropout=1.5", "moe.dropout"),
        ("mixed_precision=fp8", "mixed_precision"),
        ("data.train=5", "data.train"),
        ("data.train=[]", "data.train"),
        ("data.train=[{path: x, colour: 1}]", "data.train[0]"),
        ("data.train=[{path: x, lang: xx-notalang-123456789}]", "data.train[0]"),
        ("languages=[en, EN]", "languages"),
        ("seed=abc", "seed"),
        ("run_dir=", "run_dir"),
        ("model.arg_dim=1e999", "model.arg_dim"),
        ("model.no_such_head=1", "model.no_such_head"),
        ("resume=maybe", "resume"),
    ],
)
def test_bad_values_name_the_dotted_key(override: str, key: str) -> None:
    with pytest.raises(UsageError, match=f"config: .*{re.escape(key)}"):
        load_config(None, [override])


def test_wrong_type_says_the_expected_type() -> None:
    with pytest.raises(UsageError, match=r"data\.train.*list"):
        load_config(None, ["data.train=5"])
    with pytest.raises(UsageError, match=r"epochs.*integer"):
        load_config(None, ["epochs=1e999"])


def test_resume_and_overwrite_together_are_refused() -> None:
    with pytest.raises(UsageError, match=r"resume=true.*overwrite=true"):
        load_config(None, ["resume=true", "overwrite=true"])


def test_broken_yaml_names_file_and_line(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("batch_size: 16\noptim:\n  lr: [1e-4\nepochs: 2\n")
    with pytest.raises(UsageError, match=rf"{recipe}:\d+"):
        load_config(recipe)


def test_missing_or_odd_config_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"no-such\.yaml"):
        load_config(tmp_path / "no-such.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="mapping"):
        load_config(listed)
    staged = tmp_path / "staged.yaml"
    staged.write_text("stages:\n  4: {batch_size: 2}\n")
    with pytest.raises(UsageError, match="stages"):
        load_config(staged)


def test_unknown_keys_still_error() -> None:
    with pytest.raises(UsageError, match=r"unknown config key 'optim\.learning_rate'"):
        load_config(None, ["optim.learning_rate=1"])


@pytest.mark.parametrize(
    "argv",
    [
        ["run_dir=1e5", "epochs=1e999"],
        ["epochs=1e999"],
        ["data.train=5"],
        ["max_steps=-5"],
        ["optim.lr=nan"],
        ["--config", "MISSING.yaml"],
        ["--config", "BROKEN.yaml"],
        ["nokey"],
        ["stage=7"],
    ],
)
def test_cli_config_errors_are_one_line_exit_2_before_any_work(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "BROKEN.yaml").write_text("epochs: [1\n")
    assert main(["train", *argv]) == 2
    one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BROKEN.yaml"]  # nothing written


# -- language tags (item 18) -------------------------------------------------------------------------


def test_language_tags_are_canonical(tmp_path: Path) -> None:
    overrides = ["languages=[EN, es]", "moe.languages=[PT-br, en]", "data.train=[{path: x, lang: EN}]"]
    cfg = load_config(None, overrides)
    assert cfg.languages == ["en", "es"] and cfg.moe.languages == ["pt-BR", "en"]
    assert cfg.data.train == [{"path": "x", "lang": "en"}]
    upper = json.loads(good_lines()[0])
    upper["sentence"]["lang"] = "EN"
    shard = tmp_path / "mixed.jsonl"
    shard.write_text(json.dumps(upper) + "\n" + good_lines()[1] + "\n")
    records = list(load_records([{"path": str(shard), "langs": ["EN"]}]))
    assert [r.lang for r in records] == ["en", "en"]


# -- rejected training lines (item 14) ---------------------------------------------------------------


def test_rejections_are_counted_per_source_with_locations(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", good=17, bad=3)
    stats = LoadStats()
    assert len(list(load_records([str(data), {"benchmark": "carb-dev", "limit": 2}], stats))) == 19
    assert stats.rejected == 3
    assert stats.rejected_by_source == {str(data): {"malformed_json": 2, "schema_invalid": 1}}
    assert stats.read_by_source == {str(data): 20, "carb-dev": 2}
    assert stats.first_rejections[str(data)][0].startswith(f"{data}:18")
    with pytest.raises(Exception, match=r"3 of 20.*data\.max_rejected_fraction") as caught:
        stats.check_rejections(0.1)
    assert getattr(caught.value, "exit_code", None) == 1
    stats.check_rejections(0.2)
    assert stats.rejection_warnings()[0].startswith(f"{data}: 3 of 20 lines rejected")


@pytest.fixture(scope="module")
def encoder() -> Path:
    pytest.importorskip("torch")
    from helpers import tiny_encoder

    return tiny_encoder()


def test_too_many_rejected_lines_fail_before_training(
    encoder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", good=3, bad=17)
    run = tmp_path / "run"
    argv = ["train", f"encoder={encoder}", f"run_dir={run}", f"data.train=[{data}]", *SMALL]
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert "17 of 20" in line and str(data) in line and "data.max_rejected_fraction" in line
    assert not (run / "stage1" / "log.jsonl").exists() and not (run / "stage1" / "metrics.json").exists()


def test_a_cached_dataset_keeps_its_rejections(encoder: Path, tmp_path: Path) -> None:
    """A rerun served from the dataset cache reports and checks the same rejected lines."""
    from helpers import tiny_tokenizer

    from openie4pp.errors import RunProblems
    from openie4pp.train.data import build_dataset

    data = write_jsonl(tmp_path / "train.jsonl", good=17, bad=3)
    first = LoadStats()
    build_dataset([str(data)], tiny_tokenizer(), max_length=32, cache_dir=tmp_path / "cache", stats=first)
    again = LoadStats()
    with pytest.raises(RunProblems, match="3 of 20"):
        build_dataset([str(data)], tiny_tokenizer(), max_length=32, cache_dir=tmp_path / "cache",
                      stats=again, max_rejected_fraction=0.1)  # fmt: skip
    assert again.cached and again.rejected_by_source == first.rejected_by_source


@functools.lru_cache(maxsize=1)
def _trained_once(encoder: Path) -> tuple[Path, Path, str]:
    """One epoch of stage 1 on 19 good lines and one bad one (run once: the overwrite tests reuse it)."""
    import contextlib
    import io

    work = Path(tempfile.mkdtemp(prefix="openie4pp-train-errors-"))
    data = write_jsonl(work / "train.jsonl", good=19, bad=1)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["train", f"encoder={encoder}", f"run_dir={work / 'run'}", f"data.train=[{data}]",
                   "epochs=1", *SMALL])  # fmt: skip
    assert rc == 0, err.getvalue()
    return work / "run", data, err.getvalue()


def test_rejections_are_printed_and_recorded_in_metrics(encoder: Path) -> None:
    run, data, err = _trained_once(encoder)
    metrics: dict[str, Any] = json.loads((run / "stage1" / "metrics.json").read_text())
    assert metrics["data"]["rejected"] == {str(data): {"malformed_json": 1}}
    assert metrics["data"]["read"] == {str(data): 20}
    warnings = [line for line in err.splitlines() if "lines rejected" in line]
    assert len(warnings) == 1 and f"{data}: 1 of 20 lines rejected" in warnings[0]
    assert f"{data}:20" in warnings[0]


# -- a finished or checkpointed stage is not overwritten (item 15) --------------------------------------


def test_rerun_refuses_to_overwrite_a_finished_stage(
    encoder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data, _ = _trained_once(encoder)
    before = (run / "stage1" / "model.safetensors").stat().st_mtime_ns
    argv = ["train", f"encoder={encoder}", f"run_dir={run}", f"data.train=[{data}]", "max_steps=1", *SMALL]
    assert main(argv) == 2
    line = one_error_line(capsys)
    assert str(run / "stage1") in line and "resume=true" in line and "overwrite=true" in line
    assert (run / "stage1" / "model.safetensors").stat().st_mtime_ns == before


def test_overwrite_true_replaces_the_stage(encoder: Path, tmp_path: Path) -> None:
    run, data, _ = _trained_once(encoder)
    stage = tmp_path / "stage1"
    import shutil

    shutil.copytree(run / "stage1", stage)
    (stage / "best").mkdir()  # a stale artefact of the old run must not survive into the new one
    argv = ["train", f"encoder={encoder}", f"output_dir={stage}", f"run_dir={run}", f"data.train=[{data}]",
            "max_steps=1", "overwrite=true", *SMALL]  # fmt: skip
    assert main(argv) == 0
    assert not (stage / "best").exists() and (stage / "metrics.json").is_file()


def test_a_checkpointed_stage_is_not_restarted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stage1" / "checkpoint").mkdir(parents=True)
    (tmp_path / "stage1" / "checkpoint" / "trainer_state.json").write_text("{}")
    assert main(["train", f"run_dir={tmp_path}", "encoder=does/not/matter/here"]) == 2
    line = one_error_line(capsys)
    assert "checkpoint" in line and "resume=true" in line and "overwrite=true" in line


def test_a_finished_stage_without_checkpoint_offers_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``max_steps`` ends a stage without a checkpoint: resume=true has nothing to continue."""
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "metrics.json").write_text("{}")
    for extra in ([], ["resume=true"]):
        assert main(["train", f"run_dir={tmp_path}", "encoder=does/not/matter/here", *extra]) == 2
        line = one_error_line(capsys)
        assert str(tmp_path / "stage1") in line and "overwrite=true" in line


# -- missing inputs: say what is missing and which command makes it (item 16) ---------------------------


@pytest.mark.parametrize(("stage", "previous"), [(2, 1), (3, 2)])
def test_a_later_stage_before_its_previous_one(
    stage: int, previous: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--stage", str(stage), f"run_dir={tmp_path}"]) == 2
    line = one_error_line(capsys)
    assert f"stage {previous} output not found at {tmp_path / f'stage{previous}'}" in line
    assert f"openie4pp train --stage {previous}" in line
    assert not (tmp_path / f"stage{stage}").exists()


def test_a_halted_previous_stage_says_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "stage1" / "checkpoint").mkdir(parents=True)
    (tmp_path / "stage1" / "checkpoint" / "trainer_state.json").write_text('{"step": 8}')
    assert main(["train", "--stage", "2", f"run_dir={tmp_path}"]) == 2
    line = one_error_line(capsys)
    assert "did not finish" in line and "resume=true" in line


def test_no_arguments_offline_says_which_model_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "encoder=openie4pp-tests/no-such-model"]) == 2
    line = one_error_line(capsys)
    assert "encoder=PATH_OR_NAME" in line and "HF_HUB_OFFLINE" in line
    assert list(tmp_path.iterdir()) == []


def test_hub_unreachable_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("Name or service not known")

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    assert main(["train"]) == 2
    line = one_error_line(capsys)
    assert "bert-base-multilingual-cased" in line and "encoder=PATH_OR_NAME" in line
    assert "cannot be reached" in line


def test_a_missing_data_source_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["train", f"run_dir={tmp_path / 'run'}", f"data.train=[{missing}]"]) == 2
    line = one_error_line(capsys)
    assert "data.train[0]" in line and str(missing) in line
