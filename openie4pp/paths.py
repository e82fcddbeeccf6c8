"""Where shared benchmark data and derived model files live.

The benchmark files are licensed separately and are not shipped with openie4pp. They are
looked up in ``$OPENIE4PP_BENCHMARKS`` when it is set (and only there), else in
``../shared/benchmarks`` beside a source checkout (and beside the current directory).
"""

from __future__ import annotations

import os
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parent.parent


def benchmarks_dir() -> Path:
    """The folder holding ``carb/``, ``re-oie2016/``, ``oie2016/`` and ``benchie/``.

    ``$OPENIE4PP_BENCHMARKS``, when set, is the only place looked at: a typo there must be an error
    naming the variable, not a silent fall-back to another copy of the data (a different version
    would give different scores without anyone noticing).
    """
    from openie4pp.errors import UsageError

    env = os.environ.get("OPENIE4PP_BENCHMARKS")
    if env:
        chosen = Path(env).expanduser()
        if not (chosen / "carb").is_dir():
            state = "is not a folder" if not chosen.is_dir() else "holds no carb/ folder"
            raise UsageError(
                f"OPENIE4PP_BENCHMARKS={env} {state}: set it to the benchmarks folder "
                "(the one holding carb/, re-oie2016/, oie2016/ and benchie/) or unset it"
            )
        return chosen
    candidates = [_REPO_ROOT.parent / "shared" / "benchmarks", Path.cwd().parent / "shared" / "benchmarks"]
    for candidate in candidates:
        if (candidate / "carb").is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise UsageError(f"benchmark data not found (tried {tried}); set OPENIE4PP_BENCHMARKS")


def cache_dir() -> Path:
    """Where derived model files are kept (assembled GGUFs, converted encoders): ``$OPENIE4PP_CACHE``,
    else ``$XDG_CACHE_HOME/openie4pp``, else ``~/.cache/openie4pp``."""
    if os.environ.get("OPENIE4PP_CACHE"):
        return Path(os.environ["OPENIE4PP_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openie4pp"
