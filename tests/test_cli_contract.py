"""The command line's error contract, one table over every subcommand (issue 10's acceptance).

Each row runs ``openie4pp ARGS`` on a bad input and asserts: the documented exit status (0 success,
1 ran and found problems, 2 usage or configuration error, 130 interrupted), exactly one line on
stderr and no ``Traceback``, and no new folder that looks like a finished dataset (a dataset card
beside a manifest that does not say ``"complete": false``). The commands' own tests cover what each
does right; this table makes sure no failure path of any of them prints a traceback again.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_server import FakeServerProcess

from openie4pp.app.cli import main

ROOT = Path(__file__).resolve().parents[1]
CARB = "Tom sells old books .\tsells\tTom\told books\nAnna reads poems .\treads\tAnna\tpoems\n"
SENTENCES = [{"id": f"s{i}", "lang": "en", "text": f"Worker{i} sells red apples."} for i in range(3)]


def finished_datasets(root: Path) -> set[Path]:
    found = set()
    for manifest in root.rglob("manifest.json"):
        complete = json.loads(manifest.read_text(encoding="utf-8")).get("complete", True)
        if complete and (manifest.parent / "README.md").exists():
            found.add(manifest.parent)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Files:
    """The inputs the table's rows point at, made once per test in ``tmp_path``."""

    def __init__(self, root: Path, server: FakeServerProcess) -> None:
        self.root, self.server = root, server
        self.carb = root / "gold.tsv"
        self.carb.write_text(CARB, encoding="utf-8")
        self.jsonl = root / "in.jsonl"
        self.jsonl.write_text("".join(json.dumps(s) + "\n" for s in SENTENCES), encoding="utf-8")
        self.empty = root / "empty.jsonl"
        self.empty.write_text("", encoding="utf-8")
        self.a_file = root / "a-file.txt"
        self.a_file.write_text("x", encoding="utf-8")
        self.folder = root / "a-folder"
        self.folder.mkdir()
        self.dataset = root / "dataset"
        assert main(["convert", "--from", "carb", str(self.carb), "--out", str(self.dataset)]) == 0
        self.yaml = root / "broken.yaml"
        self.yaml.write_text("optim:\n  lr: [1e-4\n", encoding="utf-8")
        self.other_preds = root / "other.tsv"
        self.other_preds.write_text("A sentence nobody wrote .\t0.9\tis\tA\tB\n", encoding="utf-8")
        self.dead = f"http://127.0.0.1:{free_port()}/v1"

    def annotate(
        self, *extra: str, source: Path | None = None, out: str = "silver", endpoint: str | None = None
    ) -> list[str]:
        return [
            "annotate",
            "--input",
            str(source or self.jsonl),
            "--out",
            str(self.root / out),
            "--endpoint",
            endpoint or self.server.base_url,
            "--model",
            "m",
            "--no-progress",
            "--canaries",
            "0",
            *extra,
        ]


Row = tuple[str, Callable[[Files], list[str]], int]
ROWS: list[Row] = [
    ("unknown command", lambda f: ["no-such-command"], 2),
    ("unknown option", lambda f: ["validate", str(f.dataset), "--no-such-option"], 2),
    # validate
    ("validate: missing path", lambda f: ["validate", str(f.root / "missing")], 2),
    ("validate: empty folder", lambda f: ["validate", str(f.folder)], 1),
    ("validate: empty file", lambda f: ["validate", str(f.empty)], 1),
    (
        "validate: --rejected at a folder",
        lambda f: ["validate", str(f.dataset), "--rejected", str(f.folder)],
        2,
    ),
    ("validate: --max-problems -1", lambda f: ["validate", str(f.dataset), "--max-problems", "-1"], 2),
    # convert
    (
        "convert: missing input",
        lambda f: ["convert", "--from", "carb", str(f.root / "x.tsv"), "--out", str(f.root / "c1")],
        2,
    ),
    (
        "convert: unknown format",
        lambda f: ["convert", "--from", "bogus", str(f.carb), "--out", str(f.root / "c2")],
        2,
    ),
    (
        "convert: into an existing dataset",
        lambda f: ["convert", "--from", "carb", str(f.carb), "--out", str(f.dataset)],
        2,
    ),
    (
        "convert: --lang und",
        lambda f: ["convert", "--from", "carb", str(f.carb), "--out", str(f.root / "c3"), "--lang", "und"],
        2,
    ),
    (
        "convert: --out a file",
        lambda f: ["convert", "--from", "carb", str(f.carb), "--out", str(f.a_file)],
        2,
    ),
    # eval
    ("eval: unknown benchmark", lambda f: ["eval", "--benchmark", "bogus", "--pred", str(f.other_preds)], 2),
    (
        "eval: missing predictions",
        lambda f: ["eval", "--benchmark", "carb-dev", "--pred", str(f.root / "none.tsv")],
        2,
    ),
    ("eval: empty predictions", lambda f: ["eval", "--benchmark", "carb-dev", "--pred", str(f.empty)], 1),
    (
        "eval: predictions for other sentences",
        lambda f: ["eval", "--benchmark", "carb-dev", "--pred", str(f.other_preds)],
        1,
    ),
    (
        "eval: --plot at a folder",
        lambda f: ["eval", "--benchmark", "carb-dev", "--pred", str(f.other_preds), "--plot", str(f.folder)],
        2,
    ),
    # annotate
    ("report: missing folder", lambda f: ["report", str(f.root / "missing")], 2),
    ("report: an empty folder", lambda f: ["report", str(f.folder)], 2),
    ("report: --out a folder", lambda f: ["report", str(f.dataset), "--out", str(f.folder)], 2),
    ("report: --sample -1", lambda f: ["report", str(f.dataset), "--sample", "-1"], 2),
    ("push: missing folder", lambda f: ["push", str(f.root / "missing"), "a/b"], 2),
    ("push: offline", lambda f: ["push", str(f.dataset), "a/b"], 2),
    ("annotate: missing input", lambda f: f.annotate(source=f.root / "missing.jsonl"), 2),
    ("annotate: --out a file", lambda f: f.annotate(out="a-file.txt"), 2),
    (
        "annotate: input inside --out",
        lambda f: f.annotate(source=f.dataset / "en" / "shard-00000.jsonl", out="dataset"),
        2,
    ),
    (
        "annotate: bad --target-lang",
        lambda f: f.annotate("--mode", "project", "--target-lang", "../../etc"),
        2,
    ),
    ("annotate: --concurrency 0", lambda f: f.annotate("--concurrency", "0"), 2),
    ("annotate: --timeout 0", lambda f: f.annotate("--timeout", "0"), 2),
    ("annotate: --price-out nan", lambda f: f.annotate("--price-out", "nan"), 2),
    ("annotate: --retry-failed bogus", lambda f: f.annotate("--retry-failed", "bogus"), 2),
    ("annotate: --canaries x", lambda f: f.annotate("--canaries", "x"), 2),
    ("annotate: unknown embedded model",
     lambda f: f.annotate("--model", "no-such-model", endpoint="local"), 2),
    (
        "annotate: credentials in the URL",
        lambda f: f.annotate(endpoint=f.server.base_url.replace("http://", "http://u:pw@")),
        2,
    ),
    (
        "annotate: no --model",
        lambda f: [
            "annotate",
            "--input",
            str(f.jsonl),
            "--out",
            str(f.root / "s"),
            "--endpoint",
            f.server.base_url,
            "--canaries",
            "0",
        ],
        2,
    ),
    ("annotate: empty input", lambda f: f.annotate(source=f.empty), 1),
    (
        "annotate: endpoint down",
        lambda f: f.annotate("--breaker-after-s", "1", "--timeout", "1", endpoint=f.dead),
        1,
    ),
    # merge
    ("merge: missing folder", lambda f: ["merge", str(f.root / "missing"), "--out", str(f.root / "m")], 2),
    # train
    ("train: broken YAML", lambda f: ["train", "--config", str(f.yaml)], 2),
    ("train: missing config", lambda f: ["train", "--config", str(f.root / "none.yaml")], 2),
    ("train: max_steps=-5", lambda f: ["train", "max_steps=-5"], 2),
    ("train: epochs=1e999", lambda f: ["train", "epochs=1e999"], 2),
    ("train: data.train=5", lambda f: ["train", "data.train=5"], 2),
    ("train: unknown key", lambda f: ["train", "optim.no_such_key=1"], 2),
    # extract
    (
        "extract: missing model",
        lambda f: [
            "extract",
            "--model",
            str(f.root / "no-model"),
            "--input",
            str(f.jsonl),
            "--out",
            str(f.root / "x.jsonl"),
        ],
        2,
    ),
    (
        "extract: model is not a trained model",
        lambda f: [
            "extract",
            "--model",
            str(f.folder),
            "--input",
            str(f.jsonl),
            "--out",
            str(f.root / "x.jsonl"),
        ],
        2,
    ),
    (
        "extract: --max-length -3",
        lambda f: [
            "extract",
            "--model",
            str(f.folder),
            "--input",
            str(f.jsonl),
            "--max-length",
            "-3",
            "--out",
            str(f.root / "x.jsonl"),
        ],
        2,
    ),
    (
        "extract: --limit -1",
        lambda f: [
            "extract",
            "--model",
            str(f.folder),
            "--input",
            str(f.jsonl),
            "--limit",
            "-1",
            "--out",
            str(f.root / "x.jsonl"),
        ],
        2,
    ),
]


@pytest.mark.parametrize(("name", "make_args", "code"), ROWS, ids=[row[0] for row in ROWS])
def test_every_failure_is_one_line_with_its_exit_code(
    name: str,
    make_args: Callable[[Files], list[str]],
    code: int,
    server: FakeServerProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # train's default run_dir is relative: keep it here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    files = Files(tmp_path, server)
    capsys.readouterr()
    before = finished_datasets(tmp_path)
    args = make_args(files)
    assert main(args) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, f"{name}: expected one line on stderr, got:\n{err}"
    assert lines[0].startswith(("openie4pp", "error")), lines[0]
    assert finished_datasets(tmp_path) == before, f"{name} left a finished-looking dataset"


def run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openie4pp.app.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_no_arguments_lists_the_commands_and_version_works() -> None:
    bare = run_cli()
    assert bare.returncode == 2 and "Traceback" not in bare.stderr
    for command in ("annotate", "validate", "convert", "eval", "merge", "train", "extract", "quickstart"):
        assert command in bare.stderr
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("openie4pp ")


def test_help_shows_defaults_and_every_option_has_help() -> None:
    from openie4pp.app.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.dest in ("help",) or action.help == "==SUPPRESS==":
                continue
            assert action.help, f"openie4pp {name}: {action.option_strings or action.dest} has no help text"
    annotate_help = subparsers.choices["annotate"].format_help()
    assert "(default: 16)" in annotate_help and "(default: None)" not in annotate_help


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = run_cli("--debug", "validate", str(tmp_path / "missing"))
    assert done.returncode != 0 and "Traceback" in done.stderr
