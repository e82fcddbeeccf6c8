"""The quickstart's inputs: which of the packaged sample sentences are annotated, projected and
shown, written into ``WORKDIR/inputs`` only when they change (so an unchanged rerun reuses every
step)."""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "de", "es", "pt", "zh", "ar")
PROJECT_TARGETS = ("de", "es", "pt", "zh", "ar")
SHOWCASE_PER_LANG = 2


def _sample(name: str) -> list[dict[str, Any]]:
    text = (resources.files("openie4pp") / "data" / "sample" / name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def prepare_inputs(folder: Path, limit: int) -> dict[str, Path]:
    """The first ``limit`` sample sentences per language (extract mode), the first ``limit`` English
    sentences with triples (project mode, each into every target language) and, for the showcase,
    the next sentences per language (never annotated, so extraction shows what the tagger learned).
    Files are rewritten only when their content changes, so an unchanged re-run reuses every step."""
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in _sample("extract.jsonl"):
        by_lang[item["lang"]].append(item)
    chosen = {
        "extract": [item for lang in LANGUAGES for item in by_lang[lang][:limit]],
        "project": _sample("project_en.jsonl")[:limit],
        "showcase": [item for lang in LANGUAGES for item in by_lang[lang][limit : limit + SHOWCASE_PER_LANG]],
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, items in chosen.items():
        path = folder / f"{name}.jsonl"
        content = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
        if not path.is_file() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
        paths[name] = path
    return paths
