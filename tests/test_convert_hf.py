"""`sn.convert` on Hugging Face ``transformers`` models (GPT-2, BERT) built from small configs with random weights.

Needs the optional ``transformers`` package (the ``hf`` extra); skipped without it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.converting import ConvertedSpace
from supernet.space.base import Searchable
from supernet.space.superposition import superposition

transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face tests need the optional `transformers` package (pip install supernet[hf])"
)
from transformers.pytorch_utils import Conv1D  # noqa: E402

transformers.logging.set_verbosity_error()


def _gpt2(attn: str = "sdpa") -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=32,
                                  attn_implementation=attn)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    return model, torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(1)), "logits"


def _bert_config(attn: str = "sdpa") -> Any:
    return transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, attn_implementation=attn,
    )


def _bert_inputs() -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 100, (2, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0  # padding in the second sequence
    return {"input_ids": ids, "attention_mask": mask}


def _bert() -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    return transformers.BertModel(_bert_config()).eval(), _bert_inputs(), "last_hidden_state"


def _bert_mlm() -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    return transformers.BertForMaskedLM(_bert_config()).eval(), _bert_inputs(), "logits"


MODELS: dict[str, Callable[[], tuple[nn.Module, Any, str]]] = {"gpt2": _gpt2, "bert": _bert, "bert_mlm": _bert_mlm}


def _out(net: nn.Module, x: Any, key: str) -> torch.Tensor:
    with torch.no_grad():
        return (net(**x) if isinstance(x, dict) else net(x))[key]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def converted() -> dict[str, tuple[nn.Module, Any, str, ConvertedSpace]]:
    out = {}
    for name, make in MODELS.items():
        model, x, key = make()
        out[name] = (model, x, key, sn.convert(model, x))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_max_arch_reproduces_the_model(converted, name: str) -> None:
    model, x, key, space = converted[name]
    space.eval()
    space.set_arch(space.max_arch())
    assert _max_diff(_out(space, x, key), _out(model, x, key)) <= 1e-5
    assert sn.cost.params(space) == sn.cost.params(model)
    assert not any(isinstance(m, Searchable) for m in model.modules())  # the model itself is left alone


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sampled_archs_extract_to_plain_models_of_the_users_classes(converted, name: str) -> None:
    model, x, key, space = converted[name]
    space.eval()
    sizes = set()
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(seed=s) for s in range(25)]:
        space.set_arch(arch)
        expected = _out(space, x, key)
        net = space.extract(arch)
        assert type(net) is type(model)
        assert not any(isinstance(m, (Searchable, sn.SuperModule)) for m in net.modules())
        assert _max_diff(_out(net, x, key), expected) <= 1e-5, arch
        n = sn.cost.params(net)
        assert n == sn.cost.params(space) == sum(p.numel() for p in net.parameters())
        sizes.add(n)
    assert max(sizes) == sn.cost.params(model) and min(sizes) < 0.7 * max(sizes)
    space.set_arch(space.max_arch())


def test_gpt2_conv1d_mlp_residual_stream_and_depth_are_searchable(converted) -> None:
    _, x, _, space = converted["gpt2"]
    choices = space.choices
    assert choices["transformer.wte.width"] == (16, 24, 32)  # the residual stream (tied to the LM head)
    assert choices["transformer.h.0.mlp.c_fc.width"] == (64, 96, 128)
    assert choices["transformer.h.depth"] == (1, 2)
    for i in range(2):
        assert choices[f"transformer.h.{i}.attn.heads"] == (2, 3, 4)  # 4 heads of 8: the first h are kept
    assert "FIXED" in space.report.table()  # the LM head's width (the vocabulary) reaches the output
    for seed in range(10):
        net = space.extract(space.sample(seed=seed))
        t = net.transformer
        assert net.lm_head.weight is t.wte.weight  # still tied
        stream = {t.wte.embedding_dim, t.wpe.embedding_dim, t.ln_f.normalized_shape[0], net.lm_head.in_features}
        for blk in t.h:
            assert isinstance(blk.mlp.c_fc, Conv1D) and isinstance(blk.attn.c_attn, Conv1D)
            assert blk.mlp.c_fc.weight.shape == (blk.mlp.c_fc.nx, blk.mlp.c_fc.nf)
            assert blk.mlp.c_proj.nx == blk.mlp.c_fc.nf
            stream |= {blk.ln_1.normalized_shape[0], blk.attn.c_attn.nx, blk.attn.c_proj.nf,
                       blk.ln_2.normalized_shape[0], blk.mlp.c_fc.nx, blk.mlp.c_proj.nf}
        assert len(stream) == 1  # residual-joined widths stay together
    small = space.extract(space.min_arch())
    assert len(small.transformer.h) == 1 and small.transformer.wte.embedding_dim == 16
    with torch.no_grad():
        assert small(x, use_cache=True).logits.shape == (2, 8, 100)  # still runs the model's own (cached) path


def test_bert_mlp_and_depth_are_searchable_and_the_output_width_is_fixed(converted) -> None:
    _, _, _, bert = converted["bert"]
    assert bert.choices["encoder.layer.0.intermediate.dense.width"] == (32, 48, 64)
    assert bert.choices["encoder.layer.depth"] == (1, 2)
    rows = {r.name: r for r in bert.report.groups}
    stream = rows["embeddings.word_embeddings.width"]  # last_hidden_state is the model's output
    assert not stream.searchable and any("output" in why for why in stream.fixed_because)
    assert bert.choices["encoder.layer.0.attention.self.heads"] == (2, 3, 4)
    _, _, _, mlm = converted["bert_mlm"]
    assert mlm.choices["bert.embeddings.word_embeddings.width"] == (16, 24, 32)  # under an LM head it may shrink
    for seed in range(10):
        net = mlm.extract(mlm.sample(seed=seed))
        emb = net.bert.embeddings
        assert emb.word_embeddings.padding_idx == 0
        assert net.cls.predictions.decoder.weight is emb.word_embeddings.weight
        widths = {emb.word_embeddings.embedding_dim, emb.position_embeddings.embedding_dim,
                  emb.LayerNorm.normalized_shape[0], net.cls.predictions.transform.dense.in_features}
        for layer in net.bert.encoder.layer:
            widths |= {layer.attention.output.dense.out_features, layer.output.dense.out_features,
                       layer.attention.self.query.in_features, layer.intermediate.dense.in_features}
            assert layer.output.dense.in_features == layer.intermediate.dense.out_features
        assert len(widths) == 1


@pytest.mark.parametrize("name", ["gpt2", "bert_mlm"])
def test_sorting_keeps_the_outputs(name: str) -> None:
    model, x, key = MODELS[name]()
    space = sn.convert(model, x, depth=False)
    space.eval()
    sn.sort_channels(space, method="l1")
    sn.sort_channels(space, data=[x], method="activation")
    space.set_arch(space.max_arch())
    assert _max_diff(_out(space, x, key), _out(model, x, key)) <= 1e-5
    arch = space.sample(seed=0)
    space.set_arch(arch)
    assert _max_diff(_out(space.extract(arch), x, key), _out(space, x, key)) <= 1e-5


def test_gpt2_subnet_trains_its_conv1d_weights() -> None:
    model, x, _ = _gpt2()
    space = sn.convert(model, x)
    space.train()
    space.set_arch(space.min_arch())
    out = space(x, labels=x)
    out.loss.backward()
    grad = space.net.transformer.h[0].mlp.c_fc.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert grad[:16, :64].abs().sum() > 0 and grad[16:].abs().sum() == 0 and grad[:, 64:].abs().sum() == 0


def test_excluded_blocks_stay_fixed_and_are_reported() -> None:
    model, x, key = _gpt2()
    space = sn.convert(model, x, exclude=["transformer.h.1"])
    assert "transformer.h.1" in space.report.fixed
    assert not any(name.startswith("transformer.h.1") for name in space.choices)
    assert "transformer.h.0.mlp.c_fc.width" in space.choices
    space.eval()
    assert _max_diff(_out(space, x, key), _out(model, x, key)) <= 1e-5
    arch = space.sample(seed=2)
    space.set_arch(arch)
    assert _max_diff(_out(space.extract(arch), x, key), _out(space, x, key)) <= 1e-5


# ---------------------------------------------------------------------------------------------------------------
# Attention heads (GPT2Attention, BertSelfAttention): the first h heads of head_dim 8 are kept
# ---------------------------------------------------------------------------------------------------------------

HEADS = {
    "gpt2": ["transformer.h.0.attn", "transformer.h.1.attn"],
    "bert": ["encoder.layer.0.attention.self", "encoder.layer.1.attention.self"],
    "bert_mlm": ["bert.encoder.layer.0.attention.self", "bert.encoder.layer.1.attention.self"],
}


def _heads_of(m: nn.Module) -> int:
    return m.num_heads if hasattr(m, "num_heads") else m.num_attention_heads


def _check_head_attrs(name: str, attn: nn.Module, heads: int) -> None:
    """The extracted layer is the user's class with every head-counting attribute set for ``heads`` heads."""
    assert type(attn).__name__ == ("GPT2Attention" if name == "gpt2" else "BertSelfAttention")
    assert not isinstance(attn, Searchable) and _heads_of(attn) == heads
    if name == "gpt2":
        assert attn.split_size == attn.embed_dim == heads * 8 == attn.head_dim * heads
        assert attn.c_attn.nf == 3 * heads * 8 and attn.c_proj.nx == heads * 8
    else:
        assert attn.all_head_size == heads * 8 == attn.attention_head_size * heads
        for proj in (attn.query, attn.key, attn.value):
            assert type(proj) is nn.Linear and proj.out_features == heads * 8


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_attention_layer_has_a_head_choice_in_the_report(converted, name: str) -> None:
    _, _, _, space = converted[name]
    for path in HEADS[name]:
        assert space.choices[f"{path}.heads"] == (2, 3, 4)
    rows = {a.path: a for a in space.report.attention}
    assert sorted(rows) == HEADS[name]
    for row in rows.values():
        assert row.searchable and row.options == (2, 3, 4) and (row.heads, row.head_dim) == (4, 8)
    table = space.report.table()
    assert "attention layers: 2" in table and "heads 4 x 8  options 2, 3, 4" in table


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sampled_head_counts_extract_to_the_users_attention_classes(converted, name: str) -> None:
    _, x, key, space = converted[name]
    space.eval()
    seen: set[int] = set()
    for seed in range(25):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        net = space.extract(arch)
        for path in HEADS[name]:
            seen.add(arch[f"{path}.heads"])
            if ".0." in path or arch[_depth_name(name)] == 2:  # layer 1 may be dropped by the depth choice
                _check_head_attrs(name, net.get_submodule(path), arch[f"{path}.heads"])
        assert _max_diff(_out(net, x, key), _out(space, x, key)) <= 1e-5, arch
        assert sn.cost.params(net) == sn.cost.params(space)
        # the supernet keeps the full counts (code may build masks or caches from them)
        assert all(_heads_of(space.net.get_submodule(p)) == 4 for p in HEADS[name])
    assert seen == {2, 3, 4}
    space.set_arch(space.max_arch())


def _depth_name(name: str) -> str:
    return {"gpt2": "transformer.h.depth", "bert": "encoder.layer.depth"}.get(name, "bert.encoder.layer.depth")


@pytest.mark.parametrize("name", ["gpt2", "bert_mlm"])
def test_sorting_moves_whole_heads(name: str) -> None:
    model, x, key = MODELS[name]()
    space = sn.convert(model, x, depth=False)
    space.eval()
    perms = sn.sort_channels(space, method="l1")
    heads = [perms[f"{p}.heads"] for p in HEADS[name]]
    assert all(sorted(p) == [0, 1, 2, 3] for p in heads) and any(p != [0, 1, 2, 3] for p in heads)
    space.set_arch(space.max_arch())
    assert _max_diff(_out(space, x, key), _out(model, x, key)) <= 1e-5
    for seed in range(5):
        arch = {**space.sample(seed=seed), **{f"{p}.heads": 2 for p in HEADS[name]}}
        space.set_arch(arch)
        assert _max_diff(_out(space.extract(arch), x, key), _out(space, x, key)) <= 1e-5


def test_fewer_heads_are_the_first_heads() -> None:
    """BERT with h heads equals the full model with the other heads' columns of the output dense zeroed."""
    model, x, key = _bert()
    space = sn.convert(model, x, widths=(0.25, 0.5, 1.0), depth=False)
    space.eval()
    for h in (1, 2):
        ref = copy.deepcopy(model)
        with torch.no_grad():
            for layer in ref.encoder.layer:
                layer.attention.output.dense.weight[:, h * 8 :] = 0
        arch = {**space.max_arch(), **{f"{p}.heads": h for p in HEADS["bert"]}}
        space.set_arch(arch)
        assert _max_diff(_out(space, x, key), _out(ref, x, key)) <= 1e-5


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_gpt2_padding_mask_attention_weights_and_cache(attn: str) -> None:
    model, ids, key = _gpt2(attn)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding in the second sequence
    x = {"input_ids": ids, "attention_mask": mask}
    space = sn.convert(model, x)
    space.eval()
    assert _max_diff(_out(space, x, key), _out(model, x, key)) <= 1e-5
    nxt = {"input_ids": ids[:, :1], "attention_mask": torch.cat([mask, torch.ones_like(mask[:, :1])], 1)}
    for seed in range(4):
        arch = {**space.sample(seed=seed), "transformer.h.0.attn.heads": 2 + seed % 3}
        space.set_arch(arch)
        net = space.extract(arch)
        with torch.no_grad():
            a, b = space(**x, use_cache=True), net(**x, use_cache=True)
            assert _max_diff(a.logits, b.logits) <= 1e-5
            layer0 = a.past_key_values.layers[0]
            assert layer0.keys.shape[1] == arch["transformer.h.0.attn.heads"]  # (batch, heads, length, head_dim)
            # one generation step on each model's own cache
            a2, b2 = space(**nxt, cache=a.past_key_values), net(**nxt, cache=b.past_key_values)
            assert _max_diff(a2.logits, b2.logits) <= 1e-5
            if attn == "eager":
                wa, wb = space(**x, output_attentions=True).attentions, net(**x, output_attentions=True).attentions
                assert wa[0].shape == (2, arch["transformer.h.0.attn.heads"], 8, 8)
                assert all(_max_diff(p, q) <= 1e-6 for p, q in zip(wa, wb, strict=True))


def test_mixed_head_counts_are_refused() -> None:
    model, x, _ = _gpt2()
    space = sn.convert(model, x, depth=False)
    heads = space.net.transformer.h[0].attn.heads  # the layer's Choice
    with torch.no_grad(), superposition({heads: torch.tensor([0.2, 0.3, 0.5])}), pytest.raises(
        NotImplementedError, match="superposition"
    ):
        space(x)
