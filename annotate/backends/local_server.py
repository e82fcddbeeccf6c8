"""The embedded llama.cpp server (``python -m llama_cpp.server``) as a context manager.

Why a subprocess speaking HTTP rather than ``llama_cpp.Llama`` in-process: the same
:class:`~openie4pp.annotate.backends.openai_compat.OpenAICompatBackend` code path then serves a
laptop demo, CI and a rack of vLLM servers, and a crash of the native library cannot take the
pipeline down with it. The server is always stopped on exit (SIGTERM, then SIGKILL), also when
the body raises, so no test or run leaves a model loaded in the background.

The model is a name from :mod:`.embedded_models` (the default: an instruction-tuned Qwen2.5
GGUF assembled from its part packages and verified against the official hash) or a GGUF path.

Chat format and prompt cache size follow from the model file's header (:mod:`.gguf`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
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

from ...errors import RunProblems, UsageError
from .gguf import gemma_tokenizer_config, needs_gemma_template, prompt_cache_bytes

INSTALL_HINT = "pip install 'openie4pp[local]'"

_DIE_WITH_PARENT = """
import ctypes, os, runpy, signal, sys
parent = int(sys.argv.pop(1))
try:  # Linux: SIGTERM when the parent dies, however it dies (kill -9 included)
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
except (OSError, AttributeError):
    pass
if os.getppid() != parent:  # the parent died before the guard was set
    sys.exit(1)
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""
"""``python -m llama_cpp.server``, started so that it dies with the process that started it: a
server whose parent was killed (``kill -9``, a test's timeout) would otherwise hold a model and
both cores for ever, and every later run on the machine would crawl."""

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def default_threads() -> int:
    """Threads for generation. llama-cpp-python's own default is half the logical CPUs (to skip
    hyper-threads), which on a 2-core laptop or CI runner leaves one core idle while the single
    request it serves decodes: small machines get every core, larger ones half of them."""
    cpus = os.cpu_count() or 1
    return cpus if cpus <= 4 else cpus // 2


class LocalLlamaServer:
    """Start llama.cpp's OpenAI-compatible server on a free loopback port; stop it on exit.

    ``base_url`` (``http://127.0.0.1:PORT/v1``) and ``model`` (the name to send) are what an
    :class:`OpenAICompatBackend` needs; no API key is needed for a loopback endpoint.

    ``model_path``: an embedded model's name, a GGUF path, or None for the default model.

    ``chat_format``: ``"auto"`` (default) gives a Gemma GGUF without a chat template of its own
    the Gemma format, and leaves any other model to llama.cpp (its GGUF
    template); ``"gemma"`` forces :data:`~.gguf.GEMMA_CHAT_TEMPLATE`; None leaves it to llama.cpp; any
    other string is passed as ``--chat_format`` (a llama-cpp-python format name). A
    ``--chat_format`` in ``extra_args`` wins over all of these.

    ``prompt_cache`` (default on): llama-cpp-python's RAM cache of evaluated prompts (``--cache``,
    :func:`prompt_cache_bytes`). Every request of a prompt shares its system prompt and few-shot
    examples (about 900 tokens; the language notes come last, in the user turn), and the pipeline
    alternates between
    prompts, so without the cache each request evaluates them again. Measured with the 1.5B model
    on two cores: 22 s for an extract request without it, 6 s with it once the prefix is cached.
    """

    def __init__(self, model_path: str | None = None, *, n_ctx: int = 4096, n_threads: int | None = None,
                 port: int | None = None, startup_timeout_s: float = 120, stop_timeout_s: float = 10,
                 chat_format: str | None = "auto", prompt_cache: bool = True,
                 extra_args: list[str] | None = None) -> None:
        self.model_path = model_path
        self.prompt_cache = prompt_cache
        self.requested_chat_format = chat_format
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.port = port
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.extra_args = list(extra_args or [])
        self.chat_format: str | None = None
        """The chat format the server was started with: ``"gemma"`` (:data:`~.gguf.GEMMA_CHAT_TEMPLATE`),
        a llama-cpp-python ``--chat_format`` name, or None (llama.cpp's choice: the GGUF's template)."""
        self.model = ""
        self.base_url = ""
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_dir: str | None = None

    def __repr__(self) -> str:
        return f"LocalLlamaServer(model={self.model!r}, base_url={self.base_url!r})"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> LocalLlamaServer:
        if importlib.util.find_spec("llama_cpp") is None:
            raise UsageError(
                f"--endpoint local needs llama-cpp-python, which is not installed: {INSTALL_HINT}")
        from .embedded_models import resolve_model

        self.model, resolved = resolve_model(self.model_path)
        model_path = str(resolved)
        self._log_dir = tempfile.mkdtemp(prefix="openie4pp-llama-")
        self.log_path = Path(self._log_dir) / "server.log"
        port = self.port or free_port()
        cmd = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), "--model", model_path,
               "--model_alias", self.model, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(self.n_ctx)]
        if self.n_threads:
            cmd += ["--n_threads", str(self.n_threads)]
        cmd += self._chat_format_args(model_path, Path(self._log_dir))
        # logits for the last token only: llama-cpp-python's server defaults to all of them (for
        # logprobs, which the pipeline never asks for), computing the output layer for every
        # prompt token and holding a n_ctx x n_vocab float array (2.5 GB for Qwen's 152k vocab)
        cmd += ["--logits_all", "false"]
        if self.prompt_cache:
            cmd += ["--cache", "true", "--cache_size", str(prompt_cache_bytes(model_path))]
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
        return self

    def _chat_format_args(self, model_path: str, workdir: Path) -> list[str]:
        for i, arg in enumerate(self.extra_args):  # the caller's own --chat_format wins
            if arg == "--chat_format" or arg.startswith("--chat_format="):
                value = arg.partition("=")[2] or " ".join(self.extra_args[i + 1:i + 2])
                self.chat_format = value or None
                return []
        wanted = self.requested_chat_format
        if wanted == "auto":
            wanted = "gemma" if needs_gemma_template(model_path) else None
        self.chat_format = wanted
        if wanted is None:
            return []
        if wanted != "gemma":
            return ["--chat_format", wanted]
        config = workdir / "tokenizer_config.json"
        config.write_text(json.dumps(gemma_tokenizer_config(), ensure_ascii=False), encoding="utf-8")
        return ["--chat_format", "hf-tokenizer-config", "--hf_tokenizer_config_path", str(config)]

    def _wait_ready(self, started: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise RunProblems(f"llama.cpp server exited with code {code} during startup; "
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
