"""Where shared benchmark data lives, and the one way files are replaced atomically.

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


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers (and a crash) see the old file or the new one,
    never half of one: written beside as ``.NAME.tmp``, flushed to disk, then renamed over it.
    ``text`` is written as given (no newline translation), so kept lines stay byte for byte."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
