"""Multi2OIE model: forward and losses, stage parameter sets, save/load, extraction helpers, encoders."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F  # noqa: E402
from transformers import AutoModel, BertConfig, BertModel, XLMRobertaConfig  # noqa: E402

from openie4pp.labels import ARG_LABELS, PRED_LABELS  # noqa: E402
from openie4pp.train.model import Multi2OIEConfig, Multi2OIEModel  # noqa: E402
from openie4pp.train.moe_lora import MoLoRALinear  # noqa: E402

LANGS = ["en", "de", "zh"]
HEADS = {"arg_layers": 2, "arg_ff_dim": 32}


def _bert() -> BertConfig:
    return BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
    )


def _model(seed: int = 0, **heads) -> Multi2OIEModel:
    torch.manual_seed(seed)
    return Multi2OIEModel.from_encoder(_bert(), languages=LANGS, **{**HEADS, **heads}).eval()


def _batch(seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    pred_mask = torch.zeros_like(ids)
    pred_mask[0, 2:4] = 1
    pred_mask[1, 1] = 1
    pred_mask[2, 5] = 1
    pred_labels = torch.randint(0, len(PRED_LABELS), ids.shape, generator=g)
    arg_labels = torch.randint(0, len(ARG_LABELS), ids.shape, generator=g)
    pred_labels[1, 6:] = arg_labels[1, 6:] = -100
    return {"input_ids": ids, "attention_mask": mask, "pred_mask": pred_mask,
            "pred_labels": pred_labels, "arg_labels": arg_labels}  # fmt: skip


def _names(model: Multi2OIEModel) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_forward_shapes_and_loss() -> None:
    model = _model()
    batch = _batch()
    out = model(**batch)
    assert out.pred_logits.shape == (3, 9, len(PRED_LABELS))
    assert out.arg_logits.shape == (3, 9, len(ARG_LABELS))
    pred = F.cross_entropy(out.pred_logits.flatten(0, 1), batch["pred_labels"].flatten(), ignore_index=-100)
    arg = F.cross_entropy(out.arg_logits.flatten(0, 1), batch["arg_labels"].flatten(), ignore_index=-100)
    torch.testing.assert_close(out.pred_loss, pred)
    torch.testing.assert_close(out.arg_loss, arg)
    torch.testing.assert_close(out.loss, pred + arg)
    assert out.router_loss is None and out.router_weights is None
    out.loss.backward()
    assert model.arg_classifier.weight.grad is not None
    bare = model(batch["input_ids"], batch["attention_mask"])
    assert bare.loss is None and bare.arg_logits is None
    with pytest.raises(ValueError, match="pred_mask"):
        model(batch["input_ids"], arg_labels=batch["arg_labels"])


def test_default_heads_are_multi2oie() -> None:
    config = Multi2OIEConfig(encoder=_bert().to_dict())
    assert (config.arg_layers, config.arg_heads, config.pos_emb_dim) == (4, 8, 64)
    assert (config.arg_dropout, config.attn_dropout) == (0.2, 0.2)
    assert (config.n_pred_labels, config.n_arg_labels) == (3, 9)
    model = Multi2OIEModel(config)
    assert len(model.arg_module.layers) == 4
    assert model.arg_module.layers[0].self_attn.embed_dim == 2 * 32 + 64  # no projection by default
    projected = _model(arg_dim=48)
    assert projected.arg_module.layers[0].self_attn.embed_dim == 48
    with pytest.raises(TypeError, match="unknown head settings"):
        Multi2OIEModel.from_encoder(_bert(), languages=LANGS, arg_layer=2)


def test_stage_parameter_sets() -> None:
    model = _model()
    heads = {n for n, _ in model.named_parameters() if not n.startswith("encoder.")}
    assert heads and all(
        n.split(".")[0] in {"pred_classifier", "pos_emb", "arg_module", "arg_classifier"} for n in heads
    )
    encoder = {n for n, _ in model.named_parameters() if n.startswith("encoder.")}
    word = "encoder.embeddings.word_embeddings.weight"
    model.set_stage(1)
    assert _names(model) == {word} | heads
    model.set_stage(2)
    assert _names(model) == (encoder - {word}) | heads
    assert "encoder.embeddings.position_embeddings.weight" in _names(model)
    with pytest.raises(ValueError, match="add_moe"):
        model.set_stage(3)
    model.add_moe(n_experts=2, rank=2)
    moe = {n for n, _ in model.named_parameters() if ".lora_" in n or n.endswith(".router.weight")}
    assert len(moe) == 2 * 5 * (2 + 2 + 1)  # layers x targets x (A, B per expert + router)
    model.set_stage(3)
    assert _names(model) == moe | heads
    model.set_stage(2)
    stage2 = _names(model)
    assert not stage2 & moe and "encoder.encoder.layer.0.attention.self.query.base_layer.weight" in stage2


def test_parameter_groups_partition_the_model() -> None:
    model = _model()
    model.add_moe(n_experts=2, rank=2)
    groups = [
        model.word_embedding_parameters(),
        model.encoder_parameters_except_word_embeddings(),
        model.head_parameters(),
        model.moe_parameters(),
    ]
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert model.word_embedding_parameters()[0] is model.encoder.get_input_embeddings().weight


@pytest.mark.parametrize("moe", [False, True])
def test_save_and_from_pretrained_round_trip(tmp_path: Path, moe: bool) -> None:
    model = _model()
    if moe:
        model.add_moe(n_experts=3, rank=2, top_k=2, languages=LANGS)
        with torch.no_grad():
            for p in model.moe_parameters():
                p.normal_(0, 0.2)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    batch = _batch()
    expected = model(**batch)
    for cls in (Multi2OIEModel, AutoModel):
        loaded = cls.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, Multi2OIEModel) and loaded.config.moe == model.config.moe
        got = loaded(**batch)
        assert torch.equal(got.pred_logits, expected.pred_logits)
        assert torch.equal(got.arg_logits, expected.arg_logits)
        if moe:
            assert torch.equal(got.router_weights, expected.router_weights)


def test_moe_starts_as_a_no_op_and_routes() -> None:
    model = _model()
    batch = _batch()
    before = model(**batch)
    model.add_moe(n_experts=3, rank=4, languages=LANGS, router_aux_weight=0.5)
    after = model(**batch)
    torch.testing.assert_close(after.arg_logits, before.arg_logits, atol=1e-6, rtol=1e-6)
    assert after.router_weights.shape == (2 * 5, 3, 3)
    torch.testing.assert_close(after.router_weights.sum(-1), torch.ones(10, 3))
    assert sum(isinstance(m, MoLoRALinear) for m in model.modules()) == 10


def test_router_loss_from_languages() -> None:
    model = _model()
    model.add_moe(n_experts=2, rank=2, languages=["de", "en"], router_aux_weight=0.5)
    batch = _batch()
    lang_ids = torch.tensor([0, 1, -1])  # en, de, unknown -> experts 1, 0 and none
    out = model(**batch, lang_ids=lang_ids)
    logits = torch.stack([m.last_router_logits for m in model.moe_layers().values()])
    labels = torch.tensor([1, 0, -100])
    expected = F.cross_entropy(logits.flatten(0, 1), labels.repeat(10), ignore_index=-100)
    torch.testing.assert_close(out.router_loss, expected)
    assert model._lang_to_expert(torch.tensor([2, -1, 1])).tolist() == [-100, -100, 0]  # zh has no expert
    torch.testing.assert_close(out.loss, out.pred_loss + out.arg_loss + 0.5 * expected)
    explicit = model(**batch, router_labels=torch.tensor([0, 0, 0]))
    assert explicit.router_loss is not None and not torch.allclose(explicit.router_loss, expected)
    model.set_fixed_routing("en")
    fixed = model(**batch, lang_ids=lang_ids)
    assert fixed.router_loss is None
    assert (fixed.router_weights == torch.tensor([0.0, 1.0])).all()


def test_language_routing() -> None:
    model = _model()
    model.add_moe(n_experts=3, rank=2, languages=["zh", "en", "de"])
    model.set_language_routing(True)
    out = model(**_batch(), lang_ids=torch.tensor([1, 2, 1]))  # de, zh, de
    expected = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert (out.router_weights == expected).all()
    with pytest.raises(ValueError, match="lang_ids"):
        model(**_batch())
    model.set_language_routing(False)
    assert model(**_batch()).router_weights.sum(-1).allclose(torch.ones(10, 3))


def test_encode_once_then_arguments_per_predicate() -> None:
    model = _model()
    batch = _batch()
    full = model(**batch)
    encoded = model.predict_predicates(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(encoded.pred_logits, full.pred_logits)
    torch.testing.assert_close(encoded.pred_probs.sum(-1), torch.ones(3, 9))
    args = model.predict_arguments(encoded.encoder_states, batch["attention_mask"], batch["pred_mask"])
    torch.testing.assert_close(args, full.arg_logits, atol=1e-5, rtol=1e-5)
    # two predicates of sentence 2 and one of sentence 0, from one encoder pass
    masks = torch.zeros(3, 9, dtype=torch.long)
    masks[0, 5], masks[1, 7:9], masks[2, 2:4] = 1, 1, 1
    index = torch.tensor([2, 2, 0])
    got = model.predict_arguments(
        encoded.encoder_states, batch["attention_mask"], masks, sentence_index=index
    )
    one = model.predict_arguments(encoded.encoder_states[2:3], batch["attention_mask"][2:3], masks[:2])
    torch.testing.assert_close(got[:2], one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[2], full.arg_logits[0], atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_outputs() -> None:
    model = _model()
    batch = _batch()
    short = {k: v[1:2, :6] for k, v in batch.items()}
    torch.testing.assert_close(
        model(**short).arg_logits[0], model(**batch).arg_logits[1, :6], atol=1e-5, rtol=1e-5
    )


def test_from_encoder_loads_pretrained_weights_offline(tmp_path: Path) -> None:
    torch.manual_seed(3)
    BertModel(_bert(), add_pooling_layer=False).save_pretrained(tmp_path / "enc")
    model = Multi2OIEModel.from_encoder(tmp_path / "enc", languages=LANGS, local_files_only=True, **HEADS)
    saved = BertModel.from_pretrained(tmp_path / "enc")
    assert torch.equal(model.word_embedding_parameters()[0], saved.get_input_embeddings().weight)
    assert model.config.encoder["_name_or_path"] == str(tmp_path / "enc")
    assert model.config.encoder_config().hidden_size == 32


def test_xlm_roberta_encoder() -> None:
    enc = XLMRobertaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
    )
    torch.manual_seed(0)
    model = Multi2OIEModel.from_encoder(enc, languages=LANGS, **HEADS).eval()
    assert model.config.encoder["model_type"] == "xlm-roberta"
    batch = _batch()
    batch["input_ids"] = batch["input_ids"].clamp(min=2)  # XLM-R's padding id is 1
    before = model(**batch)
    assert before.loss is not None and before.arg_logits.shape == (3, 9, 9)
    model.add_moe(n_experts=2, rank=2)
    assert len(model.moe_layers()) == 10
    torch.testing.assert_close(model(**batch).arg_logits, before.arg_logits, atol=1e-6, rtol=1e-6)
    model.set_stage(1)
    assert "encoder.embeddings.word_embeddings.weight" in _names(model)
