"""`sn.convert` on Hugging Face ``transformers`` models (GPT-2, BERT) built from small configs with random weights.

Needs the optional ``transformers`` package (the ``hf`` extra); skipped without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.converting import ConvertedSpace
from supernet.space.base import Searchable

transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face tests need the optional `transformers` package (pip install supernet[hf])"
)
from transformers.pytorch_utils import Conv1D  # noqa: E402

transformers.logging.set_verbosity_error()


def _gpt2() -> tuple[nn.Module, Any, str]:
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    return model, torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(1)), "logits"


def _bert_config() -> Any:
    return transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32,
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
    rows = {r.name: r for r in space.report.groups}
    for i in range(2):
        attn = rows[f"transformer.h.{i}.attn.c_attn.width"]  # q/k/v split into heads: left fixed, with the reason
        assert not attn.searchable and any("splits the channels" in why for why in attn.fixed_because)
    assert "FIXED" in space.report.table()
    for seed in range(10):
        net = space.extract(space.sample(seed=seed))
        t = net.transformer
        assert net.lm_head.weight is t.wte.weight  # still tied
        stream = {t.wte.embedding_dim, t.wpe.embedding_dim, t.ln_f.normalized_shape[0], net.lm_head.in_features}
        for blk in t.h:
            assert isinstance(blk.mlp.c_fc, Conv1D) and isinstance(blk.attn.c_attn, Conv1D)
            assert blk.attn.c_attn.nf == 96 and blk.mlp.c_fc.weight.shape == (blk.mlp.c_fc.nx, blk.mlp.c_fc.nf)
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
    query = rows["encoder.layer.0.attention.self.query.width"]
    assert not query.searchable and any("heads" in why for why in query.fixed_because)
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
