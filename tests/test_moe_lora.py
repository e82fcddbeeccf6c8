"""Mixture of LoRA experts: routing, batched experts, merge, PEFT format, adding and freezing experts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from torch import nn  # noqa: E402
from transformers import BertConfig  # noqa: E402

from openie4pp.train.model import Multi2OIEModel  # noqa: E402
from openie4pp.train.moe_lora import (  # noqa: E402
    MoLoRALinear,
    add_expert,
    freeze_experts,
    load_experts,
    merge_fixed_routing,
    molora_layers,
    save_experts,
    top_k_renormalise,
)

LANGS = ["en", "de", "zh"]


def _layer(n_experts: int = 4, rank: int = 3, top_k: int | None = None, seed: int = 0) -> MoLoRALinear:
    torch.manual_seed(seed)
    layer = MoLoRALinear(nn.Linear(8, 6), n_experts=n_experts, rank=rank, alpha=6.0, top_k=top_k)
    with torch.no_grad():
        for b in layer.lora_B:
            b.normal_()
    return layer


def _reference(layer: MoLoRALinear, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Per-expert loop, straight from the formula (the layer itself never loops)."""
    out = layer.base_layer(x)
    for e in range(layer.n_experts):
        delta = x @ layer.lora_A[e].T @ layer.lora_B[e].T
        out = out + layer.scaling * weights[:, e, None, None] * delta
    return out


def _tiny_model(seed: int = 0) -> Multi2OIEModel:
    torch.manual_seed(seed)
    enc = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100
    )
    return Multi2OIEModel.from_encoder(enc, languages=LANGS, arg_layers=1, arg_ff_dim=32).eval()


def _moe_model(seed: int = 0, **moe) -> Multi2OIEModel:
    model = _tiny_model(seed)
    model.add_moe(**{"n_experts": 3, "rank": 4, "alpha": 8.0, "languages": LANGS, **moe})
    with torch.no_grad():  # trained-looking experts: B = 0 would make every test trivially pass
        for p in model.moe_parameters():
            p.normal_(0, 0.2)
    return model


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def test_router_weights_sum_to_one() -> None:
    layer = _layer()
    layer(torch.randn(5, 7, 8))
    w = layer.last_router_weights
    assert w is not None and w.shape == (5, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    assert layer.last_router_logits is not None


def test_top_k_keeps_k_renormalised_and_exact_zeros() -> None:
    layer = _layer(top_k=2)
    x = torch.randn(5, 7, 8)
    layer(x)
    w = layer.last_router_weights
    assert w is not None
    assert ((w > 0).sum(-1) == 2).all()
    assert (w[w <= 0] == 0).all()  # exact zeros, not a softmax over zeros (the original code's bug)
    full = layer.router(x[:, 0]).softmax(-1)
    keep = full.topk(2, -1).indices
    expected = torch.zeros_like(full).scatter(
        -1, keep, full.gather(-1, keep) / full.gather(-1, keep).sum(-1, True)
    )
    torch.testing.assert_close(w, expected)
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    torch.testing.assert_close(
        top_k_renormalise(torch.tensor([[0.1, 0.6, 0.3]]), 1), torch.tensor([[0.0, 1.0, 0.0]])
    )


@pytest.mark.parametrize("top_k", [None, 2])
def test_batched_experts_equal_per_expert_loop(top_k: int | None) -> None:
    layer = _layer(top_k=top_k)
    x = torch.randn(5, 7, 8)
    out = layer(x)
    assert layer.last_router_weights is not None
    torch.testing.assert_close(out, _reference(layer, x, layer.last_router_weights), atol=1e-5, rtol=1e-5)


def test_new_layer_does_not_change_outputs() -> None:
    torch.manual_seed(0)
    base = nn.Linear(8, 6)
    layer = MoLoRALinear(base, n_experts=3, rank=2, alpha=2.0)
    x = torch.randn(2, 5, 8)
    assert torch.equal(layer(x), base(x))


def test_layer_checks_inputs() -> None:
    layer = _layer()
    with pytest.raises(ValueError, match="expects"):
        layer(torch.randn(7, 8))
    with pytest.raises(ValueError, match="shape"):
        layer.set_fixed_routing(torch.ones(3))
    with pytest.raises(ValueError, match="top_k"):
        MoLoRALinear(nn.Linear(2, 2), n_experts=2, rank=1, alpha=1.0, top_k=3)


def test_fixed_routing_and_merge_layer() -> None:
    layer = _layer()
    x = torch.randn(3, 5, 8)
    w = torch.tensor([0.0, 0.7, 0.3, 0.0])
    layer.set_fixed_routing(w)
    out = layer(x)
    torch.testing.assert_close(out, _reference(layer, x, w.expand(3, -1)), atol=1e-5, rtol=1e-5)
    merged = layer.merged()
    assert type(merged) is nn.Linear
    torch.testing.assert_close(merged(x), out, atol=1e-5, rtol=1e-5)
    layer.set_fixed_routing(None)
    with pytest.raises(ValueError, match="fixed routing"):
        layer.merged()


def test_layer_add_expert_keeps_old_experts() -> None:
    layer = _layer(n_experts=3)
    x = torch.randn(2, 5, 8)
    old_router = layer.router.weight.detach().clone()
    layer.set_fixed_routing(torch.tensor([0.0, 1.0, 0.0]))
    before = layer(x)
    assert layer.add_expert() == 3
    assert layer.router.weight.shape == (4, 8)
    assert torch.equal(layer.router.weight[:3], old_router)
    # fixed routing was padded with a 0 for the new expert (a wider GEMM may round differently)
    torch.testing.assert_close(layer(x), before, atol=1e-6, rtol=1e-6)
    layer.set_fixed_routing(torch.tensor([0.0, 0.0, 0.0, 1.0]))
    assert torch.equal(layer(x), layer.base_layer(x))  # the new expert starts with B = 0


def test_merge_model_under_fixed_routing(tmp_path: Path) -> None:
    model = _moe_model()
    ids, mask = _batch()
    model.set_fixed_routing("de")
    pred_mask = torch.zeros_like(ids)
    pred_mask[:, 2] = 1
    expected = model(ids, mask, pred_mask=pred_mask)
    merge_fixed_routing(model, "de")
    assert not molora_layers(model) and model.config.moe is None
    got = model(ids, mask, pred_mask=pred_mask)
    torch.testing.assert_close(got.pred_logits, expected.pred_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.arg_logits, expected.arg_logits, atol=1e-5, rtol=1e-5)
    assert got.router_weights is None
    model.save_pretrained(tmp_path)
    reloaded = Multi2OIEModel.from_pretrained(tmp_path).eval()
    assert not molora_layers(reloaded) and reloaded.config.moe is None
    torch.testing.assert_close(reloaded(ids, mask, pred_mask=pred_mask).arg_logits, got.arg_logits)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # raised inside peft/transformers
def test_peft_loads_an_expert_as_plain_lora(tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    model = _moe_model()
    base = model.base_encoder().eval()
    out = save_experts(model, tmp_path)
    assert sorted(p.name for p in out.iterdir()) == sorted([*LANGS, "experts.json", "router.safetensors"])
    config = json.loads((tmp_path / "de" / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)
    ids, mask = _batch()
    peft_model = peft.PeftModel.from_pretrained(base, str(tmp_path / "de")).eval()
    with torch.no_grad():
        got = peft_model(input_ids=ids, attention_mask=mask).last_hidden_state
        model.set_fixed_routing("de")
        expected = model.encode(ids, mask)
        model.set_fixed_routing("en")
        other = model.encode(ids, mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, other, atol=1e-3)  # the test tells experts apart


def test_load_experts_restores_everything(tmp_path: Path) -> None:
    model = _moe_model(top_k=2)
    save_experts(model, tmp_path)
    ids, mask = _batch()
    with torch.no_grad():
        expected = model.encode(ids, mask)
    fresh = _tiny_model()  # same seed: same encoder and heads, no MoE yet
    load_experts(fresh, tmp_path)
    assert fresh.config.moe == model.config.moe
    with torch.no_grad():
        torch.testing.assert_close(fresh.encode(ids, mask), expected)
    with pytest.raises(ValueError, match="do not fit"):
        load_experts(_moe_model(n_experts=2, languages=["en", "de"]), tmp_path)


def test_add_expert_keeps_others_and_loads_from_dir(tmp_path: Path) -> None:
    model = _moe_model()
    ids, mask = _batch()
    with torch.no_grad():
        before = {}
        for lang in LANGS:
            model.set_fixed_routing(lang)
            before[lang] = model.encode(ids, mask)
    save_experts(model, tmp_path)
    index = add_expert(model, "ar", from_dir=tmp_path / "zh")
    assert index == 3 and model.config.moe["languages"] == [*LANGS, "ar"]
    assert model.config.moe["n_experts"] == 4
    with torch.no_grad():
        for lang in LANGS:
            model.set_fixed_routing(lang)
            torch.testing.assert_close(model.encode(ids, mask), before[lang], atol=1e-6, rtol=1e-6)
        model.set_fixed_routing("ar")
        torch.testing.assert_close(model.encode(ids, mask), before["zh"])  # started from the zh adapter
    with pytest.raises(ValueError, match="already"):
        add_expert(model, "ar")
    model.save_pretrained(tmp_path / "model")
    reloaded = Multi2OIEModel.from_pretrained(tmp_path / "model").eval()
    reloaded.set_fixed_routing("ar")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.encode(ids, mask), before["zh"])


def test_freeze_experts_is_clean_under_adamw() -> None:
    model = _moe_model()
    model.add_expert("ar")
    model.set_stage(3)
    freeze_experts(model, ["ar"])
    layer = next(iter(molora_layers(model.encoder).values()))
    assert [p.requires_grad for p in layer.lora_A] == [False, False, False, True]
    assert [p.requires_grad for p in layer.lora_B] == [False, False, False, True]
    assert layer.router.weight.requires_grad
    frozen = [
        p.detach().clone() for m in molora_layers(model).values() for p in (*m.lora_A[:3], *m.lora_B[:3])
    ]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
    ids, mask = _batch()
    model.train()
    model.set_language_routing(True)
    out = model(ids, mask, pred_labels=torch.zeros_like(ids), lang_ids=torch.tensor([0, 1, 2]))
    out.loss.backward()
    opt.step()
    after = [p for m in molora_layers(model).values() for p in (*m.lora_A[:3], *m.lora_B[:3])]
    assert all(torch.equal(a, b) for a, b in zip(frozen, after, strict=True))
    model.freeze_experts([], routers=False)
    assert not any(p.requires_grad for p in model.moe_parameters())
