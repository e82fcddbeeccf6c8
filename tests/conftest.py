from __future__ import annotations

from pathlib import Path

import pytest

from openie4pp.paths import benchmarks_dir


@pytest.fixture(scope="session")
def bench() -> Path:
    """The shared benchmark folder (CaRB, Re-OIE2016, OIE2016, BenchIE). CI has it beside the clone."""
    return benchmarks_dir()
