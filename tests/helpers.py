"""What several test modules share: download-free tiny models, the training slice, a fast recipe
configuration, one trained run per session, and a valid record. Kept here (not in one test module
that the others import) so that no test module depends on another one's collection."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

from openie4pp.schema import Argument, Element, Extraction, Provenance, Record, Sentence, Source
from openie4pp.train.sources import load_records

# The shared slice: 32 CaRB dev sentences (en), 16 Re-OIE2016 Spanish, 16 Portuguese.
TRAIN_SOURCES: list[dict[str, Any]] = [
    {"benchmark": "carb-dev", "limit": 32},
    {"benchmark": "re-oie2016-es", "limit": 16},
    {"benchmark": "re-oie2016-pt", "limit": 16},
]


@functools.lru_cache(maxsize=1)
def tiny_encoder() -> Path:
    """A folder with a tiny random BERT and a WordPiece tokenizer trained on the test corpus (built once
    per test session; nothing is downloaded)."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    sentences = [r.sentence.text for r in load_records(TRAIN_SOURCES)]
    sentences += [r.sentence.text for r in load_records([{"benchmark": "carb-dev", "limit": 100}])]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(sentences, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tok.decoder = decoders.WordPiece()
    tokenizer = transformers.BertTokenizerFast(tokenizer_object=tok, model_max_length=512)
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    model = transformers.BertModel(config)
    out = Path(tempfile.mkdtemp(prefix="openie4pp-tiny-bert-"))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@functools.lru_cache(maxsize=1)
def tiny_tokenizer() -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(tiny_encoder())


SMALL_HEAD = ["model.arg_layers=1", "model.arg_heads=2", "model.arg_ff_dim=64", "model.pos_emb_dim=8"]


def overrides(run_dir: Path, *extra: str) -> list[str]:
    """A fast configuration: batch 8 over ~95 examples (12 batches an epoch), a high learning rate."""
    return [
        f"encoder={tiny_encoder()}",
        f"run_dir={run_dir}",
        f"data.train={json.dumps(TRAIN_SOURCES)}",
        "data.max_length=64",
        "batch_size=8",
        "epochs=3",
        "optim.lr=2e-3",
        "log_every=1",
        "progress=false",
        "moe.n_experts=3",
        "moe.rank=4",
        "moe.alpha=8",
        *SMALL_HEAD,
        *extra,
    ]


@functools.lru_cache(maxsize=1)
def trained_run() -> Path:
    """Stages 1 -> 2 -> 3 trained once per session into one run folder (shared with test_extract)."""
    run = Path(tempfile.mkdtemp(prefix="openie4pp-run-"))
    from openie4pp.train.recipe import load_config, train

    for stage in (1, 2, 3):
        train(load_config(None, overrides(run), stage=stage))
    return run


# (text template, arg0 span, predicate span, arg1 span) per language; zh is one token per character.
_TEMPLATES = {
    "en": ("Alice{i} visited Paris .", (0, 1), (1, 2), (2, 3)),
    "zh-Hans": ("爱丽丝{i}访问了巴黎。", (0, 3), (4, 6), (7, 9)),
}


def make_record(i: int, lang: str = "en", grounded: bool = True) -> Record:
    """A valid record; ``grounded=False`` gives a gold record whose spans are all null."""
    template, subj, pred, obj = _TEMPLATES[lang]
    sentence = Sentence.from_text(template.format(i=i), lang)

    def text(span: tuple[int, int]) -> str:
        return sentence.span_text(*span)

    def where(span: tuple[int, int]) -> tuple[int, int] | None:
        return span if grounded else None

    extraction = Extraction(predicate=Element(text=text(pred), span=where(pred)),
                            arguments=[Argument(role="arg0", text=text(subj), span=where(subj)),
                                       Argument(role="arg1", text=text(obj), span=where(obj))])
    source = Source.llm if grounded else Source.gold
    provenance = Provenance(source=source, model="m")
    return Record(sentence=sentence, extractions=[extraction], provenance=provenance)
