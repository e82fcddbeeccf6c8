"""The training recipe on a tiny random BERT and a 64-sentence slice of CaRB dev + Re-OIE2016 es/pt.

What is proven here: the loss falls in each of the three stages; the recipe calls ``set_stage`` and
the optimizer holds exactly the trainable parameters; an interrupted run resumed from its
checkpoint reproduces the uninterrupted run's losses and weights; save -> load gives identical
outputs (stage 3 with experts included); artefacts contain no pickles; two Accelerate processes run.
Which parameters each stage trains is the model's own test (tests/test_model.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from helpers import TRAIN_SOURCES, overrides, tiny_encoder, trained_run  # noqa: E402

from openie4pp.train.recipe import (  # noqa: E402
    build_model,
    build_optimizer,
    load_config,
    parse_overrides,
    save_model_folder,
    train,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Tiny models gain nothing from threads, and on a shared 2-core machine spinning OpenMP threads
    make every matmul wait for a descheduled sibling (milliseconds instead of microseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def losses(stage_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (stage_dir / "log.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


def falls(series: dict[int, float], k: int = 12) -> bool:
    """Mean of the last ``k`` steps below the first ``k`` (k = one epoch: the same examples)."""
    values = [series[s] for s in sorted(series)]
    return sum(values[-k:]) / k < 0.97 * sum(values[:k]) / k


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_loss_falls_in_every_stage(stage: int) -> None:
    stage_dir = trained_run() / f"stage{stage}"
    series = losses(stage_dir)
    assert len(series) == 36  # 3 epochs x 12 batches
    assert falls(series), series
    metrics = json.loads((stage_dir / "metrics.json").read_text())
    assert metrics["stage"] == stage and metrics["languages"] == ["en", "es", "pt"]


def test_artefacts_are_loadable_folders_without_pickles() -> None:
    run = trained_run()
    for stage in (1, 2, 3):
        folder = run / f"stage{stage}"
        for name in (
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "training_args.yaml",
            "metrics.json",
        ):
            assert (folder / name).is_file(), (stage, name)
        assert not [p for p in folder.rglob("*") if p.suffix in (".bin", ".pkl", ".pickle")]
        for name in ("optimizer.pt", "scheduler.pt"):  # torch.save'd dicts of tensors and numbers only
            torch.load(folder / "checkpoint" / name, weights_only=True)
        args = (folder / "training_args.yaml").read_text()
        assert f"stage: {stage}" in args
    experts = run / "stage3" / "experts"
    assert {p.parent.name for p in experts.glob("*/adapter_config.json")} == {"expert0", "expert1", "expert2"}
    assert (experts / "router.safetensors").is_file()


def test_recipe_sets_stage_and_optimizer_holds_only_trainable(monkeypatch: pytest.MonkeyPatch) -> None:
    from openie4pp.train.model import Multi2OIEModel

    calls: list[int] = []
    original = Multi2OIEModel.set_stage
    monkeypatch.setattr(Multi2OIEModel, "set_stage", lambda self, s: (calls.append(s), original(self, s))[1])
    run = trained_run()
    for stage in (1, 2, 3):
        cfg = load_config(None, overrides(run), stage=stage)
        model = build_model(cfg, ["en", "es", "pt"])
        assert calls[-1] == stage
        optimizer = build_optimizer(cfg.optim, model)
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        assert held == {id(p) for p in model.parameters() if p.requires_grad}
        assert len(held) < len(list(model.parameters()))
        if stage == 3:
            assert model.config.moe["n_experts"] == 3 and model.config.moe["rank"] == 4


def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    common = ["epochs=2", "grad_accum=2", "checkpoint_every=3", "model.attn_dropout=0.1"]
    straight = load_config(None, overrides(tmp_path / "a", *common), stage=1)
    train(straight)
    halted = load_config(None, overrides(tmp_path / "b", *common, "halt_at_step=8"), stage=1)
    assert train(halted).halted  # stopped in the second epoch, mid-way
    assert not (tmp_path / "b" / "stage1" / "model.safetensors").exists()
    resumed = load_config(None, overrides(tmp_path / "b", *common, "resume=true"), stage=1)
    train(resumed)
    a, b = losses(tmp_path / "a" / "stage1"), losses(tmp_path / "b" / "stage1")
    assert sorted(a) == sorted(b) == list(range(1, 13))  # 6 optimizer steps an epoch
    for step in range(9, 13):
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "a" / "stage1" / "model.safetensors"))
    wb = load_file(str(tmp_path / "b" / "stage1" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def test_save_load_gives_identical_outputs(tmp_path: Path) -> None:
    from accelerate import Accelerator

    from openie4pp.train.batching import Collator
    from openie4pp.train.data import build_dataset
    from openie4pp.train.model import Multi2OIEModel

    run = trained_run()
    cfg = load_config(None, overrides(run, f"output_dir={tmp_path / 'out'}"), stage=3)
    model = build_model(cfg, ["en", "es", "pt"])
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(run / "stage2")
    data = build_dataset(TRAIN_SOURCES, tokenizer, max_length=64)
    batch = Collator(tokenizer.pad_token_id, model.config.languages)([data[i] for i in range(6)])
    optimizer = build_optimizer(cfg.optim, model)
    for _ in range(2):  # move the experts and routers away from their initial values
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    save_model_folder(Accelerator(cpu=True), model, tokenizer, cfg.model_dump(), tmp_path / "saved")
    loaded = Multi2OIEModel.from_pretrained(tmp_path / "saved")
    model.eval(), loaded.eval()
    with torch.no_grad():
        before, after = model(**batch), loaded(**batch)
    for name in ("pred_logits", "arg_logits", "router_weights", "loss"):
        assert torch.equal(getattr(before, name), getattr(after, name)), name
    assert (tmp_path / "saved" / "experts" / "experts.json").is_file()


def test_stage3_tied_experts_train_per_language_then_mix(tmp_path: Path) -> None:
    run = trained_run()
    extra = ["epochs=1", "moe.experts_tied=true", "moe.expert_epochs=1", "moe.router_aux_weight=0.5"]
    cfg = load_config(None, overrides(run, f"output_dir={tmp_path / 'tied'}", *extra), stage=3)
    metrics = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "tied" / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["experts"] * 12 + ["mixture"] * 12
    assert all("router_loss" not in r for r in rows[:12])  # language routing: the routers are not used
    assert all(r["router_loss"] > 0 for r in rows[12:])  # the mixture: routers supervised by language
    assert metrics.steps == 24
    config = json.loads((tmp_path / "tied" / "config.json").read_text())
    assert config["moe"]["languages"] == ["en", "es", "pt"] and config["moe"]["n_experts"] == 3
    assert {p.parent.name for p in (tmp_path / "tied" / "experts").glob("*/adapter_config.json")} == {
        "en",
        "es",
        "pt",
    }


def test_config_layers_and_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "batch_size: 16\noptim: {lr: 3.0e-5}\nstages:\n  3: {batch_size: 4, optim: {lr: 1.0e-4}}\n"
    )
    cfg = load_config(recipe, ["optim.lr=5e-4", "run_dir=r"], stage=3)
    assert (cfg.batch_size, cfg.optim.lr) == (4, 5e-4)  # stage block, then the command line
    assert cfg.init_from == str(Path("r") / "stage2") and cfg.output_dir == str(Path("r") / "stage3")
    assert cfg.data.cache_dir == str(Path("r") / "cache")
    assert load_config(recipe, [], stage=1).batch_size == 16
    assert parse_overrides(["data.train=[carb-dev]", "eval.limit=null"]) == {
        "data": {"train": ["carb-dev"]},
        "eval": {"limit": None},
    }
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(recipe, ["optim.learning_rate=1"])


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_two_processes_with_accelerate(tmp_path: Path) -> None:
    """``accelerate launch`` runs two gloo processes on CPU (``--cpu`` alone would start one: on CPU
    Accelerate's multi-process mode is the torchrun launcher with ``ACCELERATE_USE_CPU=1``)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "openie4pp.app.cli", "train", "--stage", "1",
        *overrides(tmp_path, "epochs=1", "eval.benchmark=carb-dev", "eval.limit=8"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics: dict[str, Any] = json.loads((tmp_path / "stage1" / "metrics.json").read_text())
    assert metrics["processes"] == 2
    assert metrics["steps"] == 6  # 12 batches shared by two processes: 6 steps each
    assert metrics["evals"] and "f1" in metrics["evals"][-1]  # dev extraction gathered from both processes
    assert (tmp_path / "stage1" / "model.safetensors").is_file()


def test_head_lr_gives_the_randomly_initialised_heads_their_own_rate() -> None:
    from openie4pp.train.model import Multi2OIEModel
    from openie4pp.train.recipe import build_optimizer

    model = Multi2OIEModel.from_encoder(str(tiny_encoder()), languages=["en"])
    model.set_stage(2)
    single = build_optimizer(load_config(None, ["optim.lr=1e-5", "optim.head_lr=null"]).optim, model)
    assert [g["lr"] for g in single.param_groups] == [1e-5]
    split = build_optimizer(load_config(None, ["optim.lr=1e-5", "optim.head_lr=1e-3"]).optim, model)
    encoder, heads = split.param_groups
    assert (encoder["lr"], heads["lr"]) == (1e-5, 1e-3)
    assert {id(p) for p in heads["params"]} == {id(p) for p in model.head_parameters()}
    assert all(not name.startswith("encoder.embeddings.word_embeddings") or not p.requires_grad
               for name, p in model.named_parameters())  # stage 2: the word embeddings stay frozen
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in split.param_groups for p in g["params"]) == trainable


@pytest.mark.parametrize("changed", ["optim.head_lr=1e-3", "data.language_temperature=100", "batch_size=4"])
def test_resume_with_other_batch_order_or_optimizer_settings_is_refused_before_work(
    tmp_path: Path, changed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint restores its optimizer groups, rates and batch position as saved: a resume that
    changes them would crash late (another group count) or silently keep the old values."""
    from openie4pp.app.cli import main

    common = ["epochs=1", "checkpoint_every=2"]
    assert train(load_config(None, overrides(tmp_path, *common, "halt_at_step=3"), stage=1)).halted
    state = tmp_path / "stage1" / "checkpoint" / "trainer_state.json"
    before = state.read_bytes()
    rc = main(["train", "--stage", "1", *overrides(tmp_path, *common, "resume=true", changed)])
    key = changed.split("=")[0]
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{key}=" in err and "checkpoint" in err and "Traceback" not in err
    assert state.read_bytes() == before  # nothing was resumed
    assert train(load_config(None, overrides(tmp_path, *common, "resume=true"), stage=1)).steps > 3
