"""A real HTTP server on 127.0.0.1 that speaks the part of the Hugging Face Hub API an upload uses.

Why a real server (and not a patched ``HfApi``): the point is that the real huggingface_hub client,
inside the real ``openie4pp push`` process, sends what the Hub expects, with the token only in its
``Authorization`` header. What it implements (huggingface_hub 2.x, ``HfApi.create_repo``,
``create_branch`` and ``create_commit``)::

    POST /api/repos/create                      {"name", "organization", "type", "visibility"}
    GET  /api/{type}s/{ns}/{name}[/revision/R]  repo_info (create_repo asks it after a 401/403)
    POST /api/{type}s/{ns}/{name}/branch/{B}    a branch (409 when it exists)
    POST /api/validate-yaml                     the dataset card's metadata (always valid here)
    POST /api/{type}s/{ns}/{name}/preupload/{R} "regular" for every file: contents go inline
    POST /api/{type}s/{ns}/{name}/commit/{R}    ndjson: a header line, then base64 "file" lines
    GET  /api/agent-harnesses                   public, no token: the client's user-agent telemetry

Answering ``regular`` keeps the LFS/Xet path out (with ``hf_xet`` installed the client would speak
the Xet storage protocol, which needs Xet's own servers); an ``lfsFile`` line in a commit is refused.
Every request must carry ``Authorization: Bearer <token>``; a wrong one gets a 401 whose message
echoes it, as careless servers do, so tests can check that the client side scrubs it.

Committed files land in ``root/<type>s/<ns>/<name>/<revision>/``. ``requests`` is the log (method,
path, whether the token was right; never the token itself) and ``repos`` what was created.
Use :class:`FakeHubServer` (a thread in the test process) or run it: ``python tests/fake_hub_server.py
--root DIR --token-env NAME`` prints ``base_url`` once it listens.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

_REPO = r"(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)"
ROUTES = {
    "create": re.compile(r"^/api/repos/create$"),
    "validate_yaml": re.compile(r"^/api/validate-yaml$"),
    "info": re.compile(rf"^/api/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"),
    "branch": re.compile(rf"^/api/{_REPO}/branch/(?P<rev>[^/]+)$"),
    "preupload": re.compile(rf"^/api/{_REPO}/preupload/(?P<rev>[^/]+)$"),
    "commit": re.compile(rf"^/api/{_REPO}/commit/(?P<rev>[^/]+)$"),
}


class FakeHubServer:
    """The stand-in, in a thread: ``base_url``, ``requests``, ``repos``, ``files(repo_id)``, ``stop()``."""

    def __init__(self, root: Path, token: str) -> None:
        self.root, self.token = Path(root), token
        self.requests: list[dict[str, Any]] = []
        self.repos: dict[str, dict[str, Any]] = {}  # "datasets/ns/name" -> {"private", "branches"}
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def repo_dir(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> Path:
        return self.root / f"{repo_type}s" / repo_id / revision

    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        """What the repo holds at ``revision``: path (with ``/``) -> bytes."""
        base = self.repo_dir(repo_id, repo_type, revision)
        found = sorted(p for p in base.rglob("*") if p.is_file())
        return {p.relative_to(base).as_posix(): p.read_bytes() for p in found}


def _handler_for(hub: FakeHubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            auth = self.headers.get("Authorization", "")
            authorized = auth == f"Bearer {hub.token}"
            route = next((name for name, rx in ROUTES.items() if rx.match(path)), None)
            with hub.lock:
                hub.requests.append({"method": method, "path": path, "route": route, "authorized": authorized,
                                     "bytes": len(body)})
            if method == "GET" and path == "/api/agent-harnesses":  # public: user-agent telemetry
                self._answer(200, {"standardEnvVars": [], "harnesses": {}})
                return
            if not authorized:
                given = auth.removeprefix("Bearer ")
                self._answer(401, {"error": f"Invalid credentials in Authorization header (got {given!r})"})
                return
            if route is None or (method == "GET") != (route == "info"):
                self._answer(404, {"error": f"no such endpoint: {method} {path}"})
                return
            match = ROUTES[route].match(path)
            assert match is not None
            try:
                status, answer = getattr(self, f"_{route}")(match, body)
            except (ValueError, KeyError, TypeError) as error:
                status, answer = 400, {"error": f"bad request: {error}"}
            self._answer(status, answer)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        # ---------------------------------------------------------------- endpoints

        def _create(self, match: re.Match[str], body: bytes) -> tuple[int, Any]:
            payload = json.loads(body)
            repo_type = payload.get("type") or "model"
            repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") \
                else f"user/{payload['name']}"
            key = f"{repo_type}s/{repo_id}"
            url = f"{hub.base_url}/{key}" if repo_type != "model" else f"{hub.base_url}/{repo_id}"
            with hub.lock:
                if key in hub.repos:
                    return 409, {"error": "You already created this dataset repo", "url": url}
                hub.repos[key] = {"private": payload.get("visibility") == "private",
                                  "visibility": payload.get("visibility"), "branches": {"main"}}
            return 200, {"url": url, "name": repo_id}

        def _known(self, match: re.Match[str]) -> dict[str, Any] | None:
            return hub.repos.get(f"{match['type']}/{match['repo']}")

        def _info(self, match: re.Match[str], body: bytes) -> tuple[int, Any]:
            repo = self._known(match)
            if repo is None:
                return 404, {"error": "Repository not found"}
            sha = repo["commits"][-1]["oid"] if repo.get("commits") else "0" * 40
            return 200, {"id": match["repo"], "sha": sha, "private": repo["private"], "siblings": []}

        def _branch(self, match: re.Match[str], body: bytes) -> tuple[int, Any]:
            repo = self._known(match)
            if repo is None:
                return 404, {"error": "Repository not found"}
            if match["rev"] in repo["branches"]:
                return 409, {"error": "Branch already exists"}
            repo["branches"].add(match["rev"])
            main = hub.root / match["type"] / match["repo"] / "main"
            if main.is_dir():  # a new branch starts from main's files, as on the Hub
                shutil.copytree(main, hub.root / match["type"] / match["repo"] / match["rev"])
            return 200, {}

        def _validate_yaml(self, match: re.Match[str], body: bytes) -> tuple[int, Any]:
            json.loads(body)
            return 200, {"errors": [], "warnings": []}

        def _preupload(self, match: re.Match[str], body: bytes) -> tuple[int, Any]:
            if self._known(match) is None:
                return 404, {"error": "Repository not found"}
            base = hub.root / match["type"] / match["repo"] / match["rev"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                    "oid": _git_oid(base / f["path"])} for f in json.loads(body)["files"]]}

        def _commit(self, match: re.Match[str], body: bytes) -> tuple[int, Any]:
            repo = self._known(match)
            if repo is None:
                return 404, {"error": "Repository not found"}
            if match["rev"] not in repo["branches"]:
                return 404, {"error": f"Revision {match['rev']} not found"}
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            if not lines or lines[0].get("key") != "header":
                return 400, {"error": "the first ndjson line must be the header"}
            files: dict[str, bytes] = {}
            for line in lines[1:]:
                if line["key"] != "file" or line["value"].get("encoding") != "base64":
                    return 400, {"error": f"unsupported operation {line['key']!r} (regular files only)"}
                rel = PurePosixPath(line["value"]["path"])
                if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                    return 400, {"error": f"bad path {str(rel)!r}"}
                files[str(rel)] = base64.b64decode(line["value"]["content"], validate=True)
            base = hub.root / match["type"] / match["repo"] / match["rev"]
            for rel_path, data in files.items():
                target = base / rel_path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            oid = hashlib.sha1(body).hexdigest()
            commit = {"oid": oid, "header": lines[0]["value"], "files": sorted(files)}
            repo.setdefault("commits", []).append(commit)
            return 200, {"commitUrl": f"{hub.base_url}/{match['type']}/{match['repo']}/commit/{oid}",
                         "commitOid": oid, "pullRequestUrl": None}

    return Handler


def _git_oid(path: Path) -> str | None:
    """A stored file's git blob sha1 (what the Hub reports for a regular file), None when absent: the
    client skips a file whose oid equals its own."""
    if not path.is_file():
        return None
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", required=True, help="where committed files are stored")
    parser.add_argument("--token-env", required=True, help="the environment variable holding the token")
    args = parser.parse_args()
    hub = FakeHubServer(Path(args.root), os.environ[args.token_env])
    print(hub.base_url, flush=True)
    hub.thread.join()


if __name__ == "__main__":
    _main()
