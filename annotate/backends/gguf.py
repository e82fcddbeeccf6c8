"""What a GGUF model file's header says, and the llama.cpp server settings that follow from it.

The header is read directly (no native library, no model load), so that :class:`~.local_server.
LocalLlamaServer` can choose its command line before starting the server.

Chat format: a GGUF that carries a chat template in its metadata gets it from llama.cpp (the
Qwen models do). A base Gemma 3 GGUF (such as Gemma 3 270M) has none, and llama.cpp would then
fall back to the Llama-2 ``[INST]`` format, which Gemma does not know. For a Gemma GGUF without a
template the server is given :data:`GEMMA_CHAT_TEMPLATE` (Gemma's turn format, the system prompt
folded into the first user turn as Google's own template does) through
``--chat_format hf-tokenizer-config``. llama.cpp's built-in ``--chat_format gemma`` is not used:
it silently drops every system message, and with it the pipeline's instructions. Both go through
the same llama-cpp-python completion handler, so ``response_format={"type": "json_object",
"schema": ...}`` stays grammar-constrained.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any, ClassVar

from ...errors import InputFileError

__all__ = [
    "CACHED_PROMPTS",
    "CACHED_PROMPT_TOKENS",
    "GEMMA_ARCHITECTURES",
    "GEMMA_CHAT_TEMPLATE",
    "gemma_tokenizer_config",
    "gguf_metadata",
    "needs_gemma_template",
    "prompt_cache_bytes",
]

GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- set ns = namespace(system='', first=true) -%}"
    "{%- for message in messages if message['role'] == 'system' -%}"
    "{%- set ns.system = ns.system + (message['content'] | trim) + '\n\n' -%}"
    "{%- endfor -%}"
    "{%- for message in messages if message['role'] != 'system' -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{%- if loop.last and role == 'model' and not message['content'] -%}"
    "{{ '<start_of_turn>model\n' }}"
    "{%- else -%}"
    "{{ '<start_of_turn>' + role + '\n' }}"
    "{%- if ns.first and role == 'user' -%}{{ ns.system }}{%- endif -%}"
    "{%- set ns.first = false -%}"
    "{{ (message['content'] or '') | trim }}{{ '<end_of_turn>\n' }}"
    "{%- if loop.last and add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
)
"""Gemma's chat format as a Hugging Face chat template: ``<start_of_turn>user\\n...<end_of_turn>\\n``,
``assistant`` as ``model``, every system message prepended to the first user turn (Gemma has no
system role), and an open ``<start_of_turn>model\\n`` to answer in. llama-cpp-python's
``hf-tokenizer-config`` handler asks for the answer by appending an empty assistant message
(it passes no ``add_generation_prompt``); that message is rendered as the open model turn.
Message contents are text (what the pipeline sends)."""

GEMMA_ARCHITECTURES = frozenset({"gemma", "gemma2", "gemma3", "gemma3n"})
"""GGUF ``general.architecture`` values whose chat format is the Gemma turn format above
(Gemma 4 has its own handler in llama-cpp-python)."""


def gguf_metadata(path: str | os.PathLike[str], keys: tuple[str, ...]) -> dict[str, object]:
    """The scalar metadata values ``keys`` of a GGUF file (those present), read from its header
    without loading the model or the native library. Arrays (the vocabulary) are skipped.

    Not ``gguf.GGUFReader`` (llama.cpp's own package): it decodes every array, and the 262k-token
    Gemma vocabulary made it take 21 s for the default model, against 0.06 s here."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        return _GGUFHeader(buf).scalars(set(keys))


class _GGUFHeader:
    """A cursor over a GGUF header (v2+: little-endian, 64-bit lengths)."""

    SCALARS: ClassVar[dict[int, str]] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                                         7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    STRING, ARRAY = 8, 9

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def scalars(self, wanted: set[str]) -> dict[str, object]:
        if self.buf[:4] != b"GGUF":
            raise InputFileError("not a GGUF file")
        self.pos = 4
        if self.read("<I") < 2:
            raise InputFileError("GGUF v1 is not supported")
        self.read("<Q")  # tensor count
        found: dict[str, object] = {}
        for _ in range(self.read("<Q")):
            key = self.read_str()
            vtype = self.read("<I")
            if key in wanted and vtype != self.ARRAY:
                found[key] = self.read_str() if vtype == self.STRING else self.read(self.scalar(vtype))
                if len(found) == len(wanted):
                    break
            else:
                self.skip(vtype)
        return found

    def scalar(self, vtype: int) -> str:
        if vtype not in self.SCALARS:
            raise InputFileError(f"unknown GGUF value type {vtype}")
        return self.SCALARS[vtype]

    def read(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def read_str(self) -> str:
        n = self.read("<Q")
        self.pos += n
        if self.pos > len(self.buf):
            raise InputFileError("truncated GGUF header")
        return self.buf[self.pos - n:self.pos].decode("utf-8", errors="replace")

    def skip(self, vtype: int) -> None:
        if vtype == self.STRING:
            n = self.read("<Q")
            self.pos += n
        elif vtype == self.ARRAY:
            item_type, count = self.read("<I"), self.read("<Q")
            if item_type in self.SCALARS:
                self.pos += struct.calcsize(self.SCALARS[item_type]) * count
            elif item_type == self.STRING:  # the vocabulary: 262k strings for Gemma 3, kept tight
                pos, buf, unpack = self.pos, self.buf, struct.unpack_from
                for _ in range(count):
                    pos += 8 + unpack("<Q", buf, pos)[0]
                self.pos = pos
            else:
                for _ in range(count):
                    self.skip(item_type)
        else:
            self.pos += struct.calcsize(self.scalar(vtype))


def needs_gemma_template(model_path: str | os.PathLike[str]) -> bool:
    """True for a Gemma GGUF without a chat template of its own (llama.cpp would fall back to
    the Llama-2 format for it)."""
    try:
        meta = gguf_metadata(model_path, ("general.architecture", "tokenizer.chat_template"))
    except (OSError, ValueError, struct.error):  # not readable: llama.cpp will say what is wrong
        return False
    return meta.get("general.architecture") in GEMMA_ARCHITECTURES and not meta.get("tokenizer.chat_template")


def gemma_tokenizer_config() -> dict[str, str]:
    """What ``--hf_tokenizer_config_path`` reads: the template and its special tokens. The
    ``eos_token`` is also the handler's stop string: ``<end_of_turn>`` ends a Gemma answer."""
    return {"chat_template": GEMMA_CHAT_TEMPLATE, "bos_token": "<bos>", "eos_token": "<end_of_turn>"}


CACHED_PROMPTS = 6
"""Prompt states the RAM cache keeps: the pipeline rotates through up to three prompts per item
(translate, project, verify), and the states of the previous item's must survive the current one's.
With 3 states' room (128 MiB for the 1.5B model) the judge's state was evicted by every project-mode
item and each judge request evaluated its ~1,100-token prompt again: 26 s instead of 8 s."""

CACHED_PROMPT_TOKENS = 1_500
"""Tokens per cached state the budget is sized for (the pipeline's prompts are 900-1,300 tokens)."""


def prompt_cache_bytes(model_path: str | os.PathLike[str]) -> int:
    """The RAM cache's budget as llama-cpp-python counts it: the KV-cache bytes of the saved states
    only (not the n_batch x n_vocab logits each state also copies, 311 MB for Qwen's vocabulary), so
    it is sized from the model's KV width to hold :data:`CACHED_PROMPTS` states (about 2 GB of RAM
    in all). llama-cpp-python's own default, 2 GiB of KV bytes, let a run grow the server to 23 GB
    of logits copies until the kernel killed it."""
    try:
        arch = str(gguf_metadata(model_path, ("general.architecture",)).get("general.architecture", ""))
        keys = tuple(f"{arch}.{k}" for k in ("block_count", "embedding_length", "attention.head_count",
                                              "attention.head_count_kv", "attention.key_length"))
        meta = gguf_metadata(model_path, keys)
    except (InputFileError, OSError, ValueError):  # llama.cpp reports an unreadable file, with its log
        return 256 << 20
    layers, width, heads = (meta.get(k) for k in keys[:3])
    if not all(isinstance(v, int) and v > 0 for v in (layers, width, heads)):
        return 256 << 20  # unknown layout: a budget that fits a few states of a 1-2B model
    assert isinstance(layers, int) and isinstance(width, int) and isinstance(heads, int)
    kv_heads = meta.get(keys[3]) if isinstance(meta.get(keys[3]), int) else heads
    head_dim = meta.get(keys[4]) if isinstance(meta.get(keys[4]), int) else width // heads
    assert isinstance(kv_heads, int) and isinstance(head_dim, int)
    per_token = 2 * layers * kv_heads * head_dim * 2  # K and V, f16
    return CACHED_PROMPTS * CACHED_PROMPT_TOKENS * per_token
