"""Where shared benchmark data lives.

The benchmark files are licensed separately and are not shipped with openie4pp. They are
looked up in ``$OPENIE4PP_BENCHMARKS`` or else in ``../shared/benchmarks`` beside a source
checkout (and beside the current directory).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def benchmarks_dir() -> Path:
    """The folder holding ``carb/``, ``re-oie2016/``, ``oie2016/`` and ``benchie/``."""
    env = os.environ.get("OPENIE4PP_BENCHMARKS")
    candidates = [Path(env)] if env else []
    candidates += [_REPO_ROOT.parent / "shared" / "benchmarks", Path.cwd().parent / "shared" / "benchmarks"]
    for candidate in candidates:
        if (candidate / "carb").is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"benchmark data not found (tried {tried}); set OPENIE4PP_BENCHMARKS")
