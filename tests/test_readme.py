"""Every command in the README, tried as a new user would: run here, or named with where it runs.

The fenced ``bash`` blocks are parsed (continuation lines joined, comments dropped) and each command
is either run here, in a scratch folder laid out like a checkout (``train/`` and ``../shared`` are
links), with exactly these test doubles:

* remote endpoints (``https://api.openai.com/v1``, ``http://gpu1:8000/v1``, ``http://gpu2:8000/v1``)
  are two fake OpenAI-compatible servers (``tests/fake_openai_server.py``) and the API key is a
  dummy;
* the user's own inputs (``sentences.jsonl``, ``en.jsonl``, ``big.parquet``) are small files
  written first;
* ``openie4pp train`` gets a tiny random encoder and ``max_steps`` appended (later overrides win);

or it is in :data:`COVERED_ELSEWHERE` with the test or CI step that runs it (a GPU, the 5-minute
llama.cpp build, the installation itself). A command in neither place fails the test, so the README
cannot document a command nobody runs. The ``python`` blocks are executed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_server import FakeServerProcess, spawn

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

COVERED_ELSEWHERE: dict[str, str] = {
    "export CMAKE_ARGS=": ".ci/run: README command 1, verbatim (install + quickstart)",
    "python3 -m pytest": ".ci/run: README command 2, verbatim",
    "openie4pp annotate --input sentences.jsonl --endpoint local": (
        "tests/test_annotate_local.py::test_local_endpoint_annotates_three_languages_end_to_end"
    ),
    "openie4pp annotate --input en.jsonl --backend vllm": (
        "tests/test_vllm_backend.py::test_vllm_end_to_end_on_gpu"
    ),
    "accelerate launch": "tests/test_train_recipe.py::test_two_processes_with_accelerate",
    # the Batch API polls every 30 s by default: run with a fast poll against the fake Batch API
    "openie4pp annotate --execution batch ": (
        "tests/test_batch_execution.py::test_project_mode_goes_through_translate_project_and_judge_rounds"
    ),
    "openie4pp annotate --execution batch-files ": (
        "tests/test_batch_execution.py::test_batch_files_are_answered_elsewhere_and_read_back_on_the_rerun"
    ),
    # needs a running Ray cluster (--ray-address auto): the same run on a local instance
    "openie4pp annotate --execution ray ": (
        "tests/test_ray_engine.py::test_ray_run_writes_what_an_online_run_writes_and_its_rerun_asks_nothing"
    ),
    # the quickstart's folders: the same command on folders the test builds, opened in a browser
    "openie4pp report runs/quickstart/silver/extract": (
        "tests/test_report.py::test_the_report_of_an_annotation_folder_in_a_real_browser"
    ),
    "openie4pp report runs/quickstart/model": "tests/test_report.py::test_the_report_of_a_trained_model",
    # the real Hub cannot be reached from here: the command against a local stand-in of its upload API
    "export HF_TOKEN=": "tests/test_push.py::test_push_uploads_exactly_the_dataset_files",
    "openie4pp push ": "tests/test_push.py::test_push_uploads_exactly_the_dataset_files",
    "openie4pp annotate ... --license cc-by-4.0": (
        "tests/test_dataset_card.py::test_an_annotated_folder_card_is_valid_and_says_how_it_was_made"
    ),
    "openie4pp annotate ... --license other": (
        "tests/test_dataset_card.py::test_annotate_license_other_with_name_and_link"
    ),
    "vllm run-batch": (
        "tests/test_batch_execution.py::test_batch_files_are_answered_elsewhere_and_read_back_on_the_rerun"
    ),
}
"""Command prefix -> where it runs: a test (``file::function``, checked to exist) or a CI step."""

ENDPOINTS = ("https://api.openai.com/v1", "http://gpu1:8000/v1", "http://gpu2:8000/v1")
SENTENCES = [
    {"id": "s-de", "lang": "de", "text": "Die Katze schläft auf dem Sofa."},
    {"id": "s-es", "lang": "es", "text": "El perro come carne."},
    {"id": "s-en", "lang": "en", "text": "Tom sells old books."},
]
ENGLISH = [
    {"id": "p-cat", "lang": "en", "text": "The cat sleeps on the sofa.",
     "triples": [["The cat", "sleeps", "on the sofa"]]},
    {"id": "p-baker", "lang": "en", "text": "The baker sells fresh bread.",
     "triples": [["The baker", "sells", "fresh bread"]]},
]  # fmt: skip


def readme_commands(kind: str = "bash") -> list[str]:
    """The commands of the README's fenced blocks of ``kind`` (``python`` blocks: whole blocks)."""
    blocks = re.findall(rf"```{kind}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    if kind != "bash":
        return blocks
    commands = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def covered_elsewhere(command: str) -> str | None:
    return next((where for prefix, where in COVERED_ELSEWHERE.items() if command.startswith(prefix)), None)


def test_every_readme_command_is_run_somewhere() -> None:
    commands = readme_commands()
    assert len(commands) >= 15
    for where in set(COVERED_ELSEWHERE.values()):
        if "::" in where:
            path, function = where.split("::")
            assert f"def {function}(" in (ROOT / path).read_text(encoding="utf-8"), where
        else:
            assert where.startswith(".ci/run")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "sed -n '/^# 1\\./{n;p;}' README.md" in ci and "sed -n '/^# 2\\./{n;p;}' README.md" in ci
    runnable = [c for c in commands if not covered_elsewhere(c)]
    unknown = [c for c in runnable if not (c.startswith("openie4pp ") or c.startswith("export "))]
    assert unknown == [], "README commands that no test runs"
    # each prefix still matches a README command: the map cannot go stale either
    for prefix in COVERED_ELSEWHERE:
        assert any(c.startswith(prefix) for c in commands), f"stale entry {prefix!r}"


@pytest.fixture(scope="module")
def servers() -> Iterator[list[FakeServerProcess]]:
    started = [spawn("--responder", "annotate_responder:respond") for _ in range(2)]
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A scratch folder that looks like the repository root to the README's relative paths."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "train").symlink_to(ROOT / "train")
    (tmp_path / "shared").symlink_to((ROOT.parent / "shared").resolve())
    lines = [json.dumps(s, ensure_ascii=False) + "\n" for s in SENTENCES]
    (work / "sentences.jsonl").write_text("".join(lines), encoding="utf-8")
    (work / "en.jsonl").write_text("".join(json.dumps(s) + "\n" for s in ENGLISH), encoding="utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(SENTENCES), work / "big.parquet")
    return work


def _argv(command: str, servers: list[FakeServerProcess], encoder: Path) -> list[list[str]]:
    """The argument lists to run for one README command (with the test doubles)."""
    argv = shlex.split(command)[1:]
    urls = {ENDPOINTS[0]: servers[0].base_url, ENDPOINTS[1]: servers[0].base_url,
            ENDPOINTS[2]: servers[1].base_url}  # fmt: skip
    argv = [urls.get(a, a) for a in argv]
    if argv[0] == "train":
        from helpers import SMALL_HEAD

        argv += [f"encoder={encoder}", "max_steps=2", "batch_size=8", "data.max_length=48", "progress=false",
                 "moe.rank=4", *SMALL_HEAD]  # fmt: skip
    if argv[0] == "annotate":
        argv += ["--no-progress", "--canaries", "0"]
    if argv[0] == "annotate" and "--shard" in argv and argv[argv.index("--shard") + 1] == "0/4":
        # "(0/4 here, 1/4, 2/4, 3/4 on the others)": run the other machines' shares too
        others = []
        for i in (1, 2, 3):
            other = [a.replace("0/4", f"{i}/4").replace("runs/part0", f"runs/part{i}") for a in argv]
            others.append(other)
        return [argv, *others]
    return [argv]


def test_readme_commands_run(
    checkout: Path, servers: list[FakeServerProcess], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from helpers import tiny_encoder

    from openie4pp.app.cli import main

    monkeypatch.chdir(checkout)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ran: list[str] = []
    for command in readme_commands():
        if covered_elsewhere(command):
            continue
        if command.startswith("export "):
            name, _, _value = command.removeprefix("export ").partition("=")
            monkeypatch.setenv(name, "sk-readme-test-dummy")  # never a real key
            continue
        for argv in _argv(command, servers, tiny_encoder()):
            code = main(argv)
            out = capsys.readouterr()
            assert code == 0, f"{command}\n{out.err[-2000:]}"
        ran.append(argv[0])
    assert {"annotate", "merge", "train", "extract", "eval", "convert", "validate"} <= set(ran)

    # what the commands left behind is what the README says they leave
    assert (checkout / "runs/silver/manifest.json").is_file()
    for stage in (1, 2, 3):
        assert (checkout / f"runs/mt4/stage{stage}/model.safetensors").is_file()
    assert (checkout / "runs/mt4/stage3/experts").is_dir()
    assert (checkout / "runs/mt4/carb-test.png").is_file()
    tab = (checkout / "runs/mt4/carb-test.tab").read_text(encoding="utf-8").splitlines()
    assert tab and all(len(line.split("\t")) >= 4 for line in tab)

    for block in readme_commands("python"):
        namespace: dict[str, Any] = {}
        exec(compile(block, "README.md", "exec"), namespace)
        assert len(namespace["ds"]) > 0  # the last dataset the snippet loaded
    assert os.environ.get("OPENAI_API_KEY") == "sk-readme-test-dummy"
