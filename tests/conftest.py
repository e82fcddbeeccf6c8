from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_openai_server import FakeServerProcess, spawn

from openie4pp.paths import benchmarks_dir


@pytest.fixture(scope="session")
def bench() -> Path:
    """The shared benchmark folder (CaRB, Re-OIE2016, OIE2016, BenchIE). CI has it beside the clone."""
    return benchmarks_dir()


@pytest.fixture(scope="module")
def _server() -> Iterator[FakeServerProcess]:
    """A fake OpenAI-compatible server process answering with the annotation domain responder
    (``tests/annotate_responder.py``); one per test module. Modules that need another server
    (``test_backends.py``: the default responder) define their own ``server``."""
    server = spawn("--responder", "annotate_responder:respond")
    yield server
    server.stop()


@pytest.fixture
def server(_server: FakeServerProcess) -> FakeServerProcess:
    """:func:`_server` with no fault script, no latency and an empty request log."""
    _server.set_script([], latency_ms=0)
    _server.reset()
    return _server


@pytest.fixture(scope="module")
def _plain() -> Iterator[FakeServerProcess]:
    server = spawn()
    yield server
    server.stop()


@pytest.fixture
def plain(_plain: FakeServerProcess) -> FakeServerProcess:
    """A fake server with the default responder (a minimal instance of the asked schema), no fault
    script, no latency and an empty request log; one per test module."""
    _plain.set_script([], latency_ms=0)
    _plain.reset()
    return _plain


@pytest.fixture(params=["aiohttp", "openai"])
def http_client(request: pytest.FixtureRequest) -> str:
    """Run a test over both transports: the policy must not depend on which one moved the bytes."""
    return str(request.param)
