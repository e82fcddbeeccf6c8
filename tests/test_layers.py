"""The house's layers, checked from the source: every import of every project module (those inside
functions too) is read with :mod:`ast`, and

* no module of the base (``openie4pp`` without ``annotate``, ``train``, ``app``) imports annotate,
  train or the application, not even lazily;
* ``annotate`` and ``train`` do not import the application nor each other;
* no two modules import each other, directly or around a circle;
* ``openie4pp validate --help`` and ``openie4pp eval --help`` load neither torch nor numpy nor the
  annotate pipeline (a fresh interpreter, its ``sys.modules`` read afterwards).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"openie4pp": "openie4pp", "annotate": "openie4pp.annotate", "train": "openie4pp.train",
            "prompts": "openie4pp.prompts"}


def project_modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name, from the source folders."""
    modules = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (``from pkg import module`` counts
    as importing the module)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    # an import of a.b.c runs a and a.b too, but those package __init__s are checked on their own
    return {m for m in found if m in known and m != name}


def layer(module: str) -> str:
    for sub in ("annotate", "train", "app", "prompts"):
        if module == f"openie4pp.{sub}" or module.startswith(f"openie4pp.{sub}."):
            return sub
    return "base"


ALLOWED = {
    "base": {"base"},
    "prompts": {"prompts"},
    "annotate": {"base", "annotate", "prompts"},
    "train": {"base", "train"},
    "app": {"base", "annotate", "train", "app", "prompts"},
}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def test_the_walk_sees_the_project(graph: dict[str, set[str]]) -> None:
    """A walk that found nothing would pass everything: it must see every layer and lazy imports."""
    assert {layer(m) for m in graph} >= {"base", "annotate", "train", "app"}
    assert len(graph) > 80
    assert "openie4pp.app.cli" in graph


def test_lazy_imports_are_seen(tmp_path: Path) -> None:
    """The walker reads imports inside functions and resolves relative ones."""
    module = tmp_path / "mod.py"
    module.write_text("def f():\n    from .base import thing\n    from ..text import words\n"
                      "    import openie4pp.x\n", encoding="utf-8")
    known = {"openie4pp.train.base", "openie4pp.x", "openie4pp.text", "openie4pp.unrelated"}
    assert imports_of("openie4pp.train.mod", module, known) == known - {"openie4pp.unrelated"}


def test_no_layer_imports_upwards(graph: dict[str, set[str]]) -> None:
    wrong = sorted(f"{m} ({layer(m)}) imports {t} ({layer(t)})"
                   for m, targets in graph.items() for t in targets if layer(t) not in ALLOWED[layer(m)])
    assert not wrong, "\n".join(wrong)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    assert not cycles(graph), cycles(graph)


HEAVY = ("torch", "numpy", "transformers", "datasets", "openai", "openie4pp.annotate.pipeline",
         "openie4pp.train.extract", "openie4pp.annotate")


@pytest.mark.parametrize("command", ["validate", "eval"])
def test_help_loads_nothing_heavy(command: str) -> None:
    script = (
        "import sys, json, contextlib, io\n"
        "from openie4pp.app.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        f"        main([{command!r}, '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps({'help': out.getvalue(), 'modules': sorted(sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert f"openie4pp {command}" in report["help"]
    loaded = set(report["modules"])
    assert not {m for m in HEAVY if m in loaded}, sorted(m for m in HEAVY if m in loaded)
