"""A finished shard folder onto the Hugging Face Hub as a dataset repo (``openie4pp push``).

What goes up is an explicit allow-list read from the folder's own manifest, not "the folder minus a
few patterns": the shards the manifest lists (each checked against its recorded size and sha256),
``manifest.json``, the dataset card ``README.md``, ``rejected.jsonl``, ``stats.json`` and an old
version's BenchIE sidecar. Everything else an annotation run keeps in its folder is machinery (the
response cache ``cache.sqlite`` and its ``-wal``/``-shm``, the writer lock, ``batches/`` rounds,
``ray/`` parts and slot caches, ``.NAME.XXXX.tmp`` files of atomic writes) or the user's own, and a
deny-list would upload the next kind of such file somebody adds. A folder whose shards do not match
its manifest changed after it was finished and is refused.

Why one :meth:`HfApi.create_commit` and not :meth:`HfApi.upload_folder`: with ``hf_xet`` installed
``upload_folder`` streams the folder in several commits, so a failure half-way leaves a repo with a
manifest that describes shards it lacks; one commit is all or nothing, and the files it sends are
exactly the list checked here. The Hub decides per file whether it travels inline (``regular``) or
through LFS/Xet storage; huggingface_hub follows its answer.

The token is taken as an argument (the command reads ``HF_TOKEN``) and passed explicitly, so
huggingface_hub never falls back to a token file; every error text and log line of the library is
scrubbed of it (:mod:`openie4pp.redact`). Every check of the folder happens before the first request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openie4pp.errors import RunProblems, UsageError
from openie4pp.folder_lock import check_not_busy
from openie4pp.redact import redactor
from openie4pp.shard_layout import CARD, MANIFEST, REJECTED, shard_files

__all__ = ["PushError", "PushResult", "check_repo_id", "files_to_push", "push_folder"]

log = logging.getLogger(__name__)

SIDE_FILES = (REJECTED, "stats.json", "benchie-gold.jsonl")
"""Files uploaded beside the shards, manifest and card when the folder has them: the rejections, the
run's counts and costs, and the BenchIE sidecar that older ``convert`` versions wrote."""

REFUSING_STATUSES = frozenset({401, 403})
"""Hub answers that no retry fixes: a wrong token, or one without write access to the namespace."""


class PushError(RunProblems):
    """The Hub could not be reached or refused the commit; nothing was committed (one commit, all or
    nothing), so rerunning the same command retries."""


@dataclass(frozen=True)
class PushResult:
    """What one push did: where the dataset is, the commit that holds it, and what it uploaded."""

    repo_id: str
    repo_url: str
    commit_url: str
    commit_oid: str
    files: tuple[str, ...]
    """The files sent (relative, with ``/``); those the repo already held unchanged are not."""
    bytes: int
    unchanged: tuple[str, ...]
    """Dataset files the repo already held with the same content: the Hub is not sent them again."""
    private: bool
    revision: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"repo_id": self.repo_id, "repo_url": self.repo_url, "commit_url": self.commit_url,
                "commit_oid": self.commit_oid, "files": len(self.files), "bytes": self.bytes,
                "unchanged": len(self.unchanged), "private": self.private, "revision": self.revision}


def check_repo_id(repo_id: str) -> None:
    """``namespace/name`` (a user or organisation, and a name) by huggingface_hub's own rules."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UsageError(f"REPO_ID {repo_id!r} must be NAMESPACE/NAME (your user or organisation, then the "
                         "dataset's name), e.g. alice/openie4pp-silver-en")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise UsageError(f"REPO_ID {repo_id!r}: {error}") from None


_BAD_REF = re.compile(r"(^[-/.])|(\.\.)|(@\{)|([\x00-\x20\x7f~^:?*\[\\])|(//)|(/$)|(\.lock$)|(\.$)|(/\.)")
"""What git's ``check-ref-format`` refuses in a branch name (``man git-check-ref-format``)."""


def check_branch(branch: str) -> None:
    """``--revision``: a name git accepts for a branch, checked before the repo is created."""
    if not branch or branch == "@" or _BAD_REF.search(branch):
        raise UsageError(f"--revision {branch!r}: not a valid branch name (no spaces, '..', '~^:?*[\\', "
                         "leading '-' or '.', trailing '/', '.' or '.lock')")


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise UsageError(f"{folder} has no {MANIFEST}: not a finished shard folder (annotate, convert "
                         "or merge write one when they finish)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shards"), list):
        raise UsageError(f"{path} is not an openie4pp shard manifest (no list of shards)")
    if manifest.get("complete") is False:
        raise UsageError(f"{folder} is unfinished (its manifest says \"complete\": false: the run stopped "
                         "early); rerun the command that made it to finish it, then push")
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def files_to_push(folder: str | Path) -> tuple[str, ...]:
    """The folder's dataset files, relative with ``/``, after checking it is finished and unchanged:
    the manifest's shards (sizes and sha256 as recorded, and no shard it does not list), the card, the
    manifest and the :data:`SIDE_FILES` present. Raises :class:`UsageError` for anything else."""
    root = Path(folder)
    if not root.exists():
        raise UsageError(f"DIR {root} does not exist")
    if not root.is_dir():
        raise UsageError(f"DIR {root} is a file; give a shard folder (<lang>/shard-*.jsonl, manifest.json)")
    check_not_busy(root)  # a writer that is still running: its manifest is about to change
    manifest = _read_manifest(root)
    listed: dict[str, dict[str, Any]] = {}
    for entry in manifest["shards"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise UsageError(f"{root / MANIFEST}: a shard entry without a path: {entry!r}")
        listed[entry["path"]] = entry
    on_disk = {p.relative_to(root).as_posix() for shards in shard_files(root).values() for p in shards}
    if on_disk != set(listed):
        extra, missing = sorted(on_disk - set(listed)), sorted(set(listed) - on_disk)
        raise UsageError(f"{root} changed after it was finished: shards not in its manifest {extra[:3]}, "
                         f"shards of the manifest that are missing {missing[:3]}; rerun the command that "
                         "made it (or validate it) before pushing")
    if not listed:
        raise UsageError(f"{root} holds no records: there is nothing to publish")
    for rel, entry in sorted(listed.items()):
        path = root / rel
        if path.stat().st_size != entry.get("bytes") or _sha256(path) != entry.get("sha256"):
            raise UsageError(f"{path} is not the file its manifest describes (size or sha256 differ): the "
                             "folder changed after it was finished")
    if not (root / CARD).is_file():
        raise UsageError(f"{root} has no dataset card ({CARD}); a finished annotate/convert run writes one "
                         "(a folder without records gets none)")
    side = [name for name in SIDE_FILES if (root / name).is_file()]
    return (*sorted(listed), *side, MANIFEST, CARD)


def push_folder(folder: str | Path, repo_id: str, *, token: str, endpoint: str, private: bool = False,
                revision: str | None = None, commit_message: str | None = None) -> PushResult:
    """Upload the dataset files of a finished shard folder (:func:`files_to_push`) to the dataset repo
    ``repo_id`` at ``endpoint`` in one commit, creating the repo (``private`` when asked) or reusing it,
    and ``revision``'s branch if it is missing. Every check runs before the first request."""
    if not token:
        raise UsageError("no Hugging Face token: set HF_TOKEN to a write token (https://huggingface.co/"
                         "settings/tokens)")
    check_repo_id(repo_id)
    if revision is not None:
        check_branch(revision)
    root = Path(folder)
    paths = files_to_push(root)
    scrub = redactor([token])
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=endpoint.rstrip("/"), token=token, library_name="openie4pp")
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(root / rel)) for rel in paths]
    message = commit_message or f"openie4pp push: {len(paths)} files of {root.name}"
    with _library_output(scrub), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            repo_url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            if revision:
                api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
            commit = api.create_commit(repo_id, operations, commit_message=message, repo_type="dataset",
                                       revision=revision)
        except Exception as error:
            raise _translate(error, scrub, endpoint) from None
        finally:
            for warning in caught:  # one scrubbed line each, through the CLI's logging
                log.warning("%s", scrub(" ".join(str(warning.message).split())))
    # create_commit leaves out a file whose oid the Hub reported equal to the local one (already there)
    unchanged = tuple(op.path_in_repo for op in operations
                      if op._remote_oid is not None and op._remote_oid == op._local_oid)
    sent = tuple(rel for rel in paths if rel not in unchanged)
    size = sum((root / rel).stat().st_size for rel in sent)
    return PushResult(repo_id=repo_id, repo_url=str(repo_url), commit_url=scrub(commit.commit_url),
                      commit_oid=commit.oid, files=sent, bytes=size, unchanged=unchanged, private=private,
                      revision=revision)


class _Forward(logging.Handler):
    """A huggingface_hub log record re-logged, scrubbed and on one line, through :data:`log`."""

    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self.scrub = scrub

    def emit(self, record: logging.LogRecord) -> None:
        log.log(record.levelno, "%s", self.scrub(" ".join(record.getMessage().split())))


@contextlib.contextmanager
def _library_output(scrub: Callable[[str], str]) -> Iterator[None]:
    """huggingface_hub logs through a handler of its own on its package logger (bare, multi-line, and
    again through the root logger by propagation). For the push, every record of it and of its child
    loggers goes through one scrubbing handler instead: a handler sees propagated records, a logger's
    filter would not."""
    library = logging.getLogger("huggingface_hub")
    saved = library.handlers[:], library.propagate
    library.handlers, library.propagate = [_Forward(scrub)], False
    try:
        yield
    finally:
        library.handlers, library.propagate = saved


def _translate(error: Exception, scrub: Any, endpoint: str) -> Exception:
    """A library or network failure as one scrubbed user-facing error (the token never in its text)."""
    from huggingface_hub.errors import HfHubHTTPError

    text = scrub(" ".join(str(error).split()))[:600]
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status in REFUSING_STATUSES:
            return UsageError(f"the Hub at {scrub(endpoint)} refused the token (HTTP {status}): {text}; set "
                              "HF_TOKEN to a write token of the repo's namespace")
        return PushError(f"the Hub at {scrub(endpoint)} failed (HTTP {status}): {text}; nothing was "
                         "committed, rerun to retry")
    if isinstance(error, ValueError) and "README.md" in text:
        return UsageError(f"the Hub refused the dataset card: {text}")
    if isinstance(error, OSError) or type(error).__module__.startswith(("httpx", "httpcore")):
        return PushError(f"could not reach the Hub at {scrub(endpoint)}: {type(error).__name__}: {text}; "
                         "nothing was committed, rerun to retry")
    if isinstance(error, UsageError):
        return error
    return RuntimeError(f"{type(error).__name__}: {text}")  # a bug: the CLI's internal error line

