"""``openie4pp push`` against a local stand-in of the Hub's upload API (tests/fake_hub_server.py).

The folder pushed is a real annotation (the fake OpenAI server, the annotation responder), with the
machinery such a folder may hold beside its data planted next to it (the response cache and its WAL,
the writer lock, batch rounds, Ray parts, a temporary file, a user's notes). The real CLI runs in a
subprocess with ``HF_ENDPOINT`` at the stand-in and ``HF_TOKEN`` set: what arrives must be exactly the
dataset's files, byte for byte, loadable with ``datasets.load_dataset``, and the token must appear in
no output and no uploaded file. Every configuration mistake fails before the first request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from annotate_responder import annotate_args, write_jsonl
from fake_hub_server import FakeHubServer
from fake_openai_server import FakeServerProcess

from openie4pp.app.cli import main
from openie4pp.folder_lock import LOCK_NAME, lock_folder, unlock_folder
from openie4pp.publish import files_to_push

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_pushTestToken0123456789abcdef"
WRONG = "hf_wrongTokenWrongTokenWrong0000"
MACHINERY = {  # what an annotation folder may hold beside its dataset: none of it is published
    "cache.sqlite-wal": b"wal",
    LOCK_NAME: b"",
    "batches/round-0001/round.json": b"{}\n",
    "batches/round-0001/part-0.input.jsonl": b"{}\n",
    "ray/caches/slot-0.sqlite": b"sqlite",
    "ray/parts/b0000000000/en/shard-00000.jsonl": b"{}\n",
    ".manifest.json.0a1b2c3d4e5f.tmp": b"{}",
    "notes.txt": f"my token is {TOKEN}\n".encode(),
}


@pytest.fixture(scope="module")
def annotated(_server: FakeServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished annotation folder for the module (copied by each test that changes it)."""
    root = tmp_path_factory.mktemp("annotated")
    rows = [{"id": f"s{i}", "lang": "en", "text": f"Worker{i} sells red apples."} for i in range(6)]
    source = write_jsonl(root / "in.jsonl", rows)
    _server.set_script([], latency_ms=0)
    assert main(annotate_args(_server, source, root / "out")) == 0
    out = root / "out"
    assert all((out / name).is_file() for name in ("cache.sqlite", "stats.json", "README.md"))
    return out


@pytest.fixture
def folder(annotated: Path, tmp_path: Path) -> Path:
    """The annotation, with every kind of machinery planted beside its data."""
    copy = tmp_path / "silver"
    shutil.copytree(annotated, copy)
    for rel, data in MACHINERY.items():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        (copy / rel).write_bytes(data)
    return copy


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHubServer]:
    server = FakeHubServer(tmp_path / "hub", TOKEN)
    yield server
    server.stop()


def dataset_files(folder: Path) -> dict[str, bytes]:
    """What should be published: the manifest's shards, rejections, stats, manifest and card."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    names = [s["path"] for s in manifest["shards"]] + ["manifest.json", "README.md", "stats.json"]
    names += ["rejected.jsonl"] if (folder / "rejected.jsonl").is_file() else []
    return {name: (folder / name).read_bytes() for name in names}


def push(hub: FakeHubServer, tmp_path: Path, *args: str, token: str | None = TOKEN,
         **env: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, online, at the stand-in, with its own HF_HOME."""
    environ = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT")}
    environ.update(HF_ENDPOINT=hub.base_url, HF_HOME=str(tmp_path / "hf-home"), **env)
    if token is not None:
        environ["HF_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "openie4pp.app.cli", "push", *args], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=120)


def api_requests(hub: FakeHubServer) -> list[dict[str, Any]]:
    """The requests that are part of the upload (not the client's public user-agent telemetry)."""
    return [r for r in hub.requests if r["path"] != "/api/agent-harnesses"]


def files_under(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_push_uploads_exactly_the_dataset_files(folder: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    expected = dataset_files(folder)
    done = push(hub, tmp_path, str(folder), "alice/openie4pp-silver", "--private")
    assert done.returncode == 0, done.stderr
    uploaded = hub.files("alice/openie4pp-silver")
    assert uploaded == expected  # byte for byte, and nothing else: no cache, lock, batches, ray, tmp, notes
    assert hub.repos["datasets/alice/openie4pp-silver"]["private"] is True
    routes = [r["route"] for r in api_requests(hub)]
    assert routes == ["create", "validate_yaml", "preupload", "commit"]  # one commit: all or nothing
    assert all(r["authorized"] for r in api_requests(hub))

    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    repo_url = f"{hub.base_url}/datasets/alice/openie4pp-silver"
    assert summary["repo_url"] == repo_url and summary["commit_url"].startswith(f"{repo_url}/commit/")
    assert summary["files"] == len(expected) and summary["bytes"] == sum(map(len, expected.values()))
    assert repo_url in lines[0] and summary["commit_url"] in lines[1]
    written = [*files_under(tmp_path / "hf-home").values(), *uploaded.values()]
    assert TOKEN not in done.stdout + done.stderr
    assert not any(TOKEN.encode() in data for data in written)


def test_what_was_pushed_still_loads_with_datasets(folder: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    assert push(hub, tmp_path, str(folder), "alice/silver").returncode == 0
    downloaded = hub.repo_dir("alice/silver")
    import datasets

    loaded = datasets.load_dataset(str(downloaded), cache_dir=str(tmp_path / "ds-cache"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert sum(len(split) for split in loaded.values()) == manifest["records"] > 0
    assert hub.repos["datasets/alice/silver"]["private"] is False  # public unless --private


def test_an_existing_repo_is_reused_and_unchanged_files_are_not_resent(folder: Path, hub: FakeHubServer,
                                                                       tmp_path: Path) -> None:
    """The second push of the same folder finds every file there: nothing is sent, no empty commit,
    and huggingface_hub's warning about it is one ``openie4pp push: warning:`` line, not its own."""
    assert push(hub, tmp_path, str(folder), "org/silver").returncode == 0
    again = push(hub, tmp_path, str(folder), "org/silver", "--private")
    assert again.returncode == 0, again.stderr
    repo = hub.repos["datasets/org/silver"]
    assert len(repo["commits"]) == 1 and repo["private"] is False  # reused: its visibility stays
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["files"] == summary["bytes"] == 0 and summary["unchanged"] == len(dataset_files(folder))
    assert summary["commit_url"].endswith(repo["commits"][0]["oid"])
    warned = again.stderr.strip().splitlines()
    assert len(warned) == 1 and warned[0].startswith("openie4pp push: warning: No files have been modified")


def test_a_revision_and_a_commit_message(folder: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    done = push(hub, tmp_path, str(folder), "org/silver", "--revision", "v2", "--commit-message", "silver v2")
    assert done.returncode == 0, done.stderr
    repo = hub.repos["datasets/org/silver"]
    assert repo["branches"] == {"main", "v2"} and repo["commits"][0]["header"]["summary"] == "silver v2"
    assert hub.files("org/silver", revision="v2") == dataset_files(folder)
    assert json.loads(done.stdout.strip().splitlines()[-1])["revision"] == "v2"


def test_a_wrong_token_is_one_scrubbed_line(folder: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    """The stand-in's 401 echoes the token it got, as careless servers do: the error line must not."""
    done = push(hub, tmp_path, str(folder), "alice/silver", token=WRONG)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("openie4pp push: error: ") and "HF_TOKEN" in lines[0] and "401" in lines[0]
    assert WRONG not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert not hub.repos and not (tmp_path / "hub").exists()


def test_an_unreachable_hub_is_a_failure_not_a_traceback(folder: Path, hub: FakeHubServer,
                                                           tmp_path: Path) -> None:
    hub.stop()
    done = push(hub, tmp_path, str(folder), "alice/silver", HF_HUB_DISABLE_TELEMETRY="1")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "could not reach the Hub" in lines[0] and "rerun" in lines[0]


def _unfinished(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    (folder / "manifest.json").write_text(json.dumps({**manifest, "complete": False}), encoding="utf-8")


def _changed_shard(folder: Path) -> None:
    shard = next(folder.glob("en/shard-*.jsonl"))
    shard.write_bytes(shard.read_bytes() + b"\n")


def _extra_shard(folder: Path) -> None:
    (folder / "de").mkdir()
    (folder / "de" / "shard-00000.jsonl").write_text("{}\n", encoding="utf-8")


Setup = Callable[[Path], None]
BEFORE_ANY_REQUEST: list[tuple[str, Setup, list[str], dict[str, str | None], str]] = [
    ("no token", lambda f: None, [], {"HF_TOKEN": None}, "HF_TOKEN"),
    ("empty token", lambda f: None, [], {"HF_TOKEN": " "}, "HF_TOKEN"),
    ("offline", lambda f: None, [], {"HF_HUB_OFFLINE": "1"}, "needs the network"),
    ("unfinished folder", _unfinished, [], {}, "unfinished"),
    ("no dataset card", lambda f: (f / "README.md").unlink(), [], {}, "dataset card"),
    ("no manifest", lambda f: (f / "manifest.json").unlink(), [], {}, "manifest.json"),
    ("a shard changed", _changed_shard, [], {}, "sha256"),
    ("a shard the manifest lacks", _extra_shard, [], {}, "changed after it was finished"),
    ("missing folder", lambda f: shutil.rmtree(f), [], {}, "does not exist"),
    ("repo id without namespace", lambda f: None, ["just-a-name"], {}, "NAMESPACE/NAME"),
    ("repo id with two slashes", lambda f: None, ["datasets/alice/x"], {}, "NAMESPACE/NAME"),
    ("repo id with --", lambda f: None, ["alice/bad--name"], {}, "REPO_ID"),
    ("a branch git refuses", lambda f: None, ["alice/silver", "--revision", "bad..name"], {}, "--revision"),
]


@pytest.mark.parametrize(("name", "setup", "repo", "env", "says"), BEFORE_ANY_REQUEST,
                         ids=[row[0] for row in BEFORE_ANY_REQUEST])
def test_mistakes_fail_before_any_request(
    name: str, setup: Setup, repo: list[str], env: dict[str, str | None], says: str, folder: Path,
    hub: FakeHubServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """In this process (each row is a plain check): exit 2, one line, and the stand-in saw nothing."""
    monkeypatch.setenv("HF_ENDPOINT", hub.base_url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    setup(folder)
    capsys.readouterr()
    code = main(["push", str(folder), *(repo or ["alice/silver"])])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("openie4pp push: error: ") and says in lines[0], lines[0]
    assert TOKEN not in err
    assert hub.requests == []


def test_a_running_writer_blocks_the_push(folder: Path, hub: FakeHubServer, tmp_path: Path) -> None:
    (folder / LOCK_NAME).unlink()
    fd = lock_folder(folder)  # a writer (another descriptor: flock conflicts across processes too)
    try:
        done = push(hub, tmp_path, str(folder), "alice/silver")
    finally:
        if fd is not None:
            unlock_folder(folder, fd)
    assert done.returncode == 2 and "another process is writing" in done.stderr
    assert hub.requests == []


def test_the_allow_list_of_a_converted_benchmark(tmp_path: Path) -> None:
    """A convert output has no stats, cache or rejections: the shards, the manifest and the card."""
    gold = tmp_path / "gold.tsv"
    gold.write_text("Tom sells old books .\tsells\tTom\told books\n", encoding="utf-8")
    out = tmp_path / "carb"
    assert main(["convert", "--from", "carb", str(gold), "--out", str(out)]) == 0
    assert files_to_push(out) == ("en/shard-00000.jsonl", "manifest.json", "README.md")
