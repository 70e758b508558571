"""`sn.convert` on models built from ``nn.MultiheadAttention``: a head-count choice per attention layer, its embed
dim in the width groups around it, extraction to plain modules, importance sorting of whole heads, and torch's
transformer layers (``nn.TransformerEncoder``/``Decoder``), whose fused fast paths must never bypass a subnet."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch import nn

import supernet as sn
from supernet import blocks
from supernet.converting import importance
from supernet.converting.layers import MultiheadAttention
from supernet.space import Choice
from supernet.space.base import Searchable
from supernet.space.superposition import superposition

E, H, D = 16, 4, 4  # embed dim, heads, head dim of the test layers

# ---------------------------------------------------------------------------------------------------------------
# The layer against nn.MultiheadAttention
# ---------------------------------------------------------------------------------------------------------------


def _mha(seed: int = 0, **kw) -> nn.MultiheadAttention:
    torch.manual_seed(seed)
    m = nn.MultiheadAttention(E, H, **kw)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.3)  # biases (zero at init) too
    return m.eval()


def _inputs(batch_first: bool, cross: bool, n: int = 3, length: int = 5, src: int = 6) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1)
    shape = (lambda t: (n, t, E)) if batch_first else (lambda t: (t, n, E))
    q = torch.randn(shape(length), generator=g)
    if not cross:
        return q, q, q
    kv = torch.randn(shape(src), generator=g)
    return q, kv, kv


def _masks(n: int, length: int, src: int, heads: int = H) -> dict[str, dict]:
    g = torch.Generator().manual_seed(2)
    kpm = torch.rand(n, src, generator=g) < 0.3
    kpm[:, 0] = False  # every query sees a key
    bool2d = torch.rand(length, src, generator=g) < 0.3
    bool2d[:, 0] = False
    cases = {
        "none": {},
        "key_padding": {"key_padding_mask": kpm},
        "bool_2d": {"attn_mask": bool2d},
        "float_2d": {"attn_mask": torch.randn(length, src, generator=g)},
        "float_3d": {"attn_mask": torch.randn(n * heads, length, src, generator=g)},
        "bool_3d_and_padding": {"attn_mask": torch.rand(n * heads, length, src, generator=g) < 0.2,
                                "key_padding_mask": kpm},
    }
    cases["bool_3d_and_padding"]["attn_mask"][..., 0] = False
    if length == src:
        cases["causal"] = {"attn_mask": torch.ones(length, src, dtype=torch.bool).triu(1), "is_causal": True}
    return cases


def _close(a: tuple, b: tuple, atol: float = 1e-5) -> None:
    assert (a[1] is None) == (b[1] is None)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=atol)
    if a[1] is not None:
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=atol)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("options", [{}, {"bias": False}, {"add_bias_kv": True, "add_zero_attn": True}])
def test_all_heads_reproduce_nn_multihead_attention(batch_first: bool, cross: bool, options: dict) -> None:
    mha = _mha(batch_first=batch_first, **options)
    layer = MultiheadAttention(mha, Choice((8, 16)), Choice((12, 16)), Choice((1, 2, 4))).eval()
    q, k, v = _inputs(batch_first, cross)
    for name, masks in _masks(3, 5, k.shape[1 if batch_first else 0]).items():
        for need, avg in [(True, True), (True, False), (False, True)]:
            kw = {"need_weights": need, "average_attn_weights": avg, **masks}
            with torch.no_grad():
                _close(layer(q, k, v, **kw), mha(q, k, v, **kw))
            # with gradients (nn.MultiheadAttention's slow path), for the training step
            _close(tuple(t if t is None else t.detach() for t in layer(q, k, v, **kw)),
                   tuple(t if t is None else t.detach() for t in mha(q, k, v, **kw))), name


def test_unbatched_inputs() -> None:
    mha = _mha()
    layer = MultiheadAttention(mha, E, E, Choice((2, 4))).eval()
    x = torch.randn(5, E)
    for kw in [{}, {"attn_mask": torch.randn(H, 5, 5)}, {"key_padding_mask": torch.tensor([0, 0, 1, 0, 1]).bool()}]:
        with torch.no_grad():
            _close(layer(x, x, x, **kw), mha(x, x, x, **kw))


@pytest.mark.parametrize("batch_first", [True, False])
def test_fewer_heads_are_the_first_heads(batch_first: bool) -> None:
    """h heads give the full layer's output with the other heads' output-projection columns zeroed, and the
    full layer's per-head weights of the first h heads (3-D masks: the first h heads' masks)."""
    mha = _mha(batch_first=batch_first)
    heads = Choice((1, 2, 3, 4))
    layer = MultiheadAttention(mha, E, E, heads).eval()
    q, k, v = _inputs(batch_first, cross=True)
    for h in heads.options:
        ref = _mha(batch_first=batch_first)
        with torch.no_grad():
            ref.out_proj.weight[:, h * D :] = 0
        heads.current = h
        for masks in _masks(3, 5, 6).values():
            kw = {"need_weights": True, "average_attn_weights": False, **masks}
            with torch.no_grad():
                out, w = layer(q, k, v, **kw)
                ref_out, ref_w = ref(q, k, v, **kw)
                torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5)
                torch.testing.assert_close(w, ref_w[:, :h], rtol=0, atol=1e-6)
                no_weights = layer(q, k, v, **{**kw, "need_weights": False})
            assert no_weights[1] is None
            torch.testing.assert_close(no_weights[0], out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"bias": False, "add_bias_kv": True, "add_zero_attn": True}])
def test_extract_is_a_plain_module_with_the_active_parameters(options: dict) -> None:
    mha = _mha(batch_first=True, **options)
    i, o, heads = Choice((8, 16)), Choice((12, 16)), Choice((1, 3, 4))
    layer = MultiheadAttention(mha, i, o, heads).eval()
    g = torch.Generator().manual_seed(3)
    for sizes in itertools.product(i.options, o.options, heads.options):
        i.current, o.current, heads.current = sizes
        x = torch.randn(2, 5, sizes[0], generator=g)
        mask = torch.randn(2 * H, 5, 5, generator=g)  # made for the layer's 4 heads
        net = layer.extract().eval()
        assert type(net) is blocks.MultiheadAttention
        full = sizes == (E, E, H)
        if full:  # the same parameter names and shapes as the layer it came from
            assert {k: v.shape for k, v in net.state_dict().items()} == {
                k: v.shape for k, v in mha.state_dict().items()
            }
        n, bias = sizes[2] * D, options.get("bias", True)
        expected = 3 * n * sizes[0] + sizes[1] * n + (3 * n + sizes[1] if bias else 0)
        expected += 2 * n if options.get("add_bias_kv") else 0
        assert sum(p.numel() for p in net.parameters()) == expected
        for kw in [{}, {"attn_mask": mask, "need_weights": False}, {"average_attn_weights": False}]:
            with torch.no_grad():
                _close(net(x, x, x, **kw), layer(x, x, x, **kw))
        if not full:
            # the extracted block also takes masks for its own heads (code that builds them from num_heads)
            own = mask.view(2, H, 5, 5)[:, : sizes[2]].reshape(-1, 5, 5)
            with torch.no_grad():
                _close(net(x, x, x, attn_mask=own), layer(x, x, x, attn_mask=mask))
    heads.current = 4
    with pytest.raises(RuntimeError, match="3D attn_mask"):
        layer(x, x, x, attn_mask=torch.zeros(3, 5, 5))


def test_superposition_with_one_hot_weights_is_the_subnet() -> None:
    mha = _mha(batch_first=True)
    i, heads = Choice((8, 16)), Choice((2, 4))
    layer = MultiheadAttention(mha, i, i, heads).eval()
    x = torch.randn(2, 5, E)
    for a, b in itertools.product(range(2), range(2)):
        i.current, heads.current = i.options[a], heads.options[b]
        with torch.no_grad():
            expected = layer(x[..., : i.current], x[..., : i.current], x[..., : i.current], average_attn_weights=False)
        mixes = {i: torch.eye(2)[a], heads: torch.eye(2)[b]}
        for mode in ("weights", "outputs"):
            with torch.no_grad(), superposition(mixes, mode):
                out, w = layer(x, x, x, average_attn_weights=False)
            assert out.shape[-1] == E and w.shape[1] == H  # zero-padded to the largest sizes
            torch.testing.assert_close(out[..., : i.current], expected[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(w[:, : heads.current], expected[1], rtol=0, atol=1e-6)
    i.current, heads.current = 16, 4
    soft = {heads: torch.tensor([0.3, 0.7], requires_grad=True)}
    with superposition(soft):
        layer(x, x, x)[0].square().mean().backward()
    assert soft[heads].grad is not None and torch.isfinite(soft[heads].grad).all()


# ---------------------------------------------------------------------------------------------------------------
# Converted models
# ---------------------------------------------------------------------------------------------------------------


class Block(nn.Module):
    """A pre-LN transformer block around nn.MultiheadAttention with a residual."""

    def __init__(self, d: int = E, heads: int = H, batch_first: bool = True, per_head: bool = False) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=batch_first)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.per_head = per_head

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                padding: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.ln1(x)
        a, w = self.attn(h, h, h, key_padding_mask=padding, attn_mask=mask,
                         average_attn_weights=not self.per_head)
        x = x + a
        return x + self.mlp(self.ln2(x)), w


class Tagger(nn.Module):
    """Embedding, blocks in an nn.ModuleList (the per-head weights of the last are used), a classifier."""

    def __init__(self, layers: int = 2, **kw) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, E)
        self.blocks = nn.ModuleList([Block(**kw) for _ in range(layers)])
        self.head = nn.Linear(E, 5)

    def forward(self, idx: torch.Tensor, mask: torch.Tensor | None = None,
                padding: torch.Tensor | None = None) -> torch.Tensor:
        x = self.emb(idx)
        for blk in self.blocks:
            x, _ = blk(x, mask, padding)
        return self.head(x)


class Encoder(nn.Module):
    """A linear stem, an nn.TransformerEncoder of nn.TransformerEncoderLayer (batch_first), a classifier."""

    def __init__(self, nested: bool = False, norm_first: bool = False) -> None:
        super().__init__()
        self.stem = nn.Linear(8, E)
        layer = nn.TransformerEncoderLayer(E, H, 2 * E, dropout=0.1, batch_first=True, norm_first=norm_first)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns that norm_first disables the nested tensors
            self.enc = nn.TransformerEncoder(layer, 3, enable_nested_tensor=nested)
        self.head = nn.Linear(E, 5)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                padding: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.enc(self.stem(x), mask=mask, src_key_padding_mask=padding))


def _tokens() -> torch.Tensor:
    return torch.randint(0, 20, (2, 7), generator=torch.Generator().manual_seed(4))


def _series() -> torch.Tensor:
    return torch.randn(2, 7, 8, generator=torch.Generator().manual_seed(4))


def _padding() -> torch.Tensor:
    p = torch.zeros(2, 7, dtype=torch.bool)
    p[1, 5:] = True
    return p


def _model(cls: type[nn.Module], **kw) -> nn.Module:
    torch.manual_seed(0)
    return cls(**kw).eval()


MODELS = {
    "block": (lambda: _model(Tagger), lambda: {"idx": _tokens()}),
    "block_masks": (lambda: _model(Tagger, batch_first=False),
                    lambda: {"idx": _tokens().T, "mask": torch.ones(7, 7, dtype=torch.bool).triu(1),
                             "padding": _padding()}),
    "encoder": (lambda: _model(Encoder), lambda: {"x": _series()}),
    "encoder_masks": (lambda: _model(Encoder, norm_first=True),
                      lambda: {"x": _series(), "mask": torch.ones(7, 7, dtype=torch.bool).triu(1),
                               "padding": _padding()}),
}


@pytest.fixture(scope="module")
def converted() -> dict[str, tuple[nn.Module, dict, sn.SuperModule]]:
    out = {}
    for name, (make, inputs) in MODELS.items():
        model, x = make(), inputs()
        out[name] = (model, x, sn.convert(model, x))
    return out


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _attention_paths(model: nn.Module) -> list[str]:
    return [p for p, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_attention_layer_gets_a_head_choice(converted, name: str) -> None:
    model, _, space = converted[name]
    paths = _attention_paths(model)
    assert paths and not space.report.fixed_layers
    for path in paths:
        assert space.choices[f"{path}.heads"] == (2, 3, 4)  # 0.5, 0.75, 1.0 of 4 heads
        assert isinstance(space.net.get_submodule(path), MultiheadAttention)
    rows = {r.path: r for r in space.report.attention}
    assert set(rows) == set(paths)
    assert all(r.searchable and r.options == (2, 3, 4) and r.input_searchable and r.output_searchable
               for r in rows.values())
    # the embed dim joins the residual stream's width group
    stream = space.choices["emb.width" if name.startswith("block") else "stem.width"]
    assert stream == (8, 12, 16)
    table = space.report.table()
    assert "attention layers:" in table and f"{paths[0]}  " in table and "options 2, 3, 4" in table


@pytest.mark.parametrize("name", sorted(MODELS))
def test_max_arch_reproduces_the_model(converted, name: str) -> None:
    model, x, space = converted[name]
    space.set_arch(space.max_arch())
    space.eval()
    with torch.no_grad():
        assert _diff(space(**x), model(**x)) <= 1e-5
    assert sn.cost.params(space) == sn.cost.params(model)
    assert not any(isinstance(m, Searchable) for m in model.modules())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sampled_archs_extract_to_equal_plain_models(converted, name: str) -> None:
    model, x, space = converted[name]
    space.eval()
    kinds = set()
    sizes = set()
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(seed=s) for s in range(25)]:
        space.set_arch(arch)
        with torch.no_grad():
            expected = space(**x)
        net = space.extract(arch)
        assert not any(isinstance(m, (Searchable, sn.SuperModule)) for m in net.modules())
        kinds |= {type(m) for m in net.modules() if isinstance(m, (nn.MultiheadAttention, blocks.MultiheadAttention))}
        if arch == space.max_arch():  # the original's parameters under the original names
            assert net.state_dict().keys() == model.state_dict().keys()
        with torch.no_grad():
            assert _diff(net(**x), expected) <= 1e-5, arch
        n = sn.cost.params(net)
        assert n == sn.cost.params(space) == sum(p.numel() for p in net.parameters())
        sizes.add(n)
    assert kinds == {blocks.MultiheadAttention}
    assert max(sizes) == sn.cost.params(model) and min(sizes) < 0.5 * max(sizes)
    space.set_arch(space.max_arch())


def test_training_step_reaches_the_attention_weights(converted) -> None:
    _, x, space = converted["encoder"]
    space.train()
    space.set_arch(space.sample(seed=1))
    space(**x).square().mean().backward()
    attn = space.net.get_submodule("enc.layers.0.self_attn")
    assert attn.in_proj_weight.grad is not None and attn.out_proj.weight.grad is not None
    h = space.arch["enc.layers.0.self_attn.heads"] * D
    assert attn.in_proj_weight.grad[h:E].abs().sum() == 0  # query rows of the dropped heads
    assert attn.in_proj_weight.grad[:h].abs().sum() > 0
    space.zero_grad()
    space.eval()


def test_encoder_layers_get_depth_and_no_fused_fast_path(converted) -> None:
    model, x, space = converted["encoder"]
    assert space.choices["enc.layers.depth"] == (1, 2, 3)
    # torch's fused encoder-layer kernel reads the full weights: the space keeps it off, and so do its subnets
    # (torch's FLOP counter does not see inside the kernel: FLOPs would not compare across subnets)
    for i in range(3):
        assert space.net.enc.layers[i].activation_relu_or_gelu == 0
    assert model.enc.layers[0].activation_relu_or_gelu == 1
    assert "enc.layers.0" in space.report.fastpath_off and "fused fast path off" in space.report.table()
    net = space.extract({**space.max_arch(), "enc.layers.1.self_attn.heads": 2, "enc.layers.depth": 2})
    assert len(net.enc.layers) == 2 and type(net.enc.layers[0]) is nn.TransformerEncoderLayer
    assert all(layer.activation_relu_or_gelu == 0 and not layer.self_attn._qkv_same_embed_dim
               for layer in net.enc.layers)
    flops = []
    for heads in (4, 3, 2):
        space.set_arch({**space.max_arch(), "enc.layers.0.self_attn.heads": heads})
        flops.append(sn.cost.flops(space, x["x"]))
    assert flops[0] > flops[1] > flops[2]
    space.set_arch(space.max_arch())


def test_fast_path_stays_off_when_only_the_feedforward_is_searched() -> None:
    """With the attention left alone (its sizes pinned), the fused kernel would still read linear1's full weight."""
    model, x = _model(Encoder), {"x": _series()}
    pin = ["stem"] + [f"enc.layers.{i}.self_attn.heads" for i in range(3)]
    space = sn.convert(model, x, pin=pin, depth=False)
    assert set(space.choices) == {f"enc.layers.{i}.linear1.width" for i in range(3)}
    assert type(space.net.enc.layers[0].self_attn) is nn.MultiheadAttention
    space.eval()
    space.set_arch(space.min_arch())
    with torch.no_grad():
        small = space(**x)
        assert _diff(space.extract(space.min_arch())(**x), small) <= 1e-5
        for layer in space.net.enc.layers:
            layer.activation_relu_or_gelu = 1  # what torch would do: the full model, silently
        assert _diff(space(**x), small) > 1e-3 and _diff(space(**x), model(**x)) <= 1e-5


def test_nested_tensor_encoder_with_padding_is_left_fixed_and_named() -> None:
    model = _model(Encoder, nested=True)
    x = {"x": _series(), "padding": _padding()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's nested tensors are a prototype
        space = sn.convert(model, x)
        assert "enable_nested_tensor=False" in space.report.fixed["enc"]
        assert not any(c.endswith(".heads") for c in space.choices)
        with torch.no_grad():
            assert _diff(space(**x), model(**x)) <= 1e-5
    # without a padding mask the nested path is never taken: the encoder converts
    space = sn.convert(model, {"x": _series()})
    assert "enc.layers.0.self_attn.heads" in space.choices and not space.net.enc.use_nested_tensor


def test_decoder_cross_attention_joins_both_streams() -> None:
    class Seq2Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.src, self.tgt = nn.Linear(8, E), nn.Linear(8, E)
            self.dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(E, H, 2 * E, 0.0, batch_first=True), 2)
            self.head = nn.Linear(E, 5)

        def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
            causal = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
            return self.head(self.dec(self.tgt(x), self.src(memory), tgt_mask=causal, tgt_is_causal=True))

    model = _model(Seq2Seq)
    x = {"x": _series(), "memory": torch.randn(2, 9, 8)}
    space = sn.convert(model, x)
    (stream,) = [r for r in space.report.groups if "src" in r.layers]
    # the cross-attention's key/value (the memory) and query (the target stream) share its input columns
    assert stream.searchable and {"tgt", "dec.layers.0.multihead_attn", "dec.layers.1.norm3"} <= set(stream.layers)
    assert {f"dec.layers.{i}.{a}.heads" for i in range(2) for a in ("self_attn", "multihead_attn")} <= set(
        space.choices
    )
    space.eval()
    for seed in range(5):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        with torch.no_grad():
            assert _diff(space.extract(arch)(**x), space(**x)) <= 1e-5


def test_per_head_weights_in_the_output_pin_the_heads() -> None:
    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block(per_head=True)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.block(x)

    model = _model(Probe)
    space = sn.convert(model, torch.randn(2, 5, E))
    (row,) = space.report.attention
    assert not row.searchable and any("output" in why for why in row.fixed_because)
    assert "block.attn.heads" not in space.choices
    assert "FIXED" in space.report.table()


def test_unsupported_attention_stays_fixed_and_named() -> None:
    class KDim(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.kv = nn.Linear(8, E), nn.Linear(8, 12)
            self.attn = nn.MultiheadAttention(E, H, kdim=12, vdim=12, batch_first=True)
            self.head = nn.Linear(E, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            kv = self.kv(x)
            return self.head(self.attn(self.q(x), kv, kv)[0])

    model = _model(KDim)
    x = _series()
    space = sn.convert(model, x)
    assert "kdim" in space.report.fixed["attn"] and not space.report.attention
    assert not any(k.startswith("attn") for k in space.choices)
    with torch.no_grad():
        assert _diff(space(x), model(x)) <= 1e-5


def test_head_options_follow_widths_group_widths_and_pin() -> None:
    model, x = _model(Tagger), {"idx": _tokens()}
    space = sn.convert(model, x, widths=(0.3, 0.6, 1.0), divisor=8)
    assert space.choices["blocks.0.attn.heads"] == (1, 2, 4)  # rounded, at least 1; heads ignore the divisor
    space = sn.convert(model, x, group_widths={"blocks.0.attn.heads": (1, 3)}, pin=["blocks.1.attn.heads"])
    assert space.choices["blocks.0.attn.heads"] == (1, 3, 4)
    assert "blocks.1.attn.heads" not in space.choices
    row = {r.path: r for r in space.report.attention}["blocks.1.attn"]
    assert any("pinned by the caller" in why for why in row.fixed_because)


# ---------------------------------------------------------------------------------------------------------------
# Importance sorting
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["block", "encoder"])
@pytest.mark.parametrize("method", ["l1", "activation"])
def test_sorting_moves_whole_heads_and_keeps_the_outputs(name: str, method: str) -> None:
    make, inputs = MODELS[name]
    model, x = make(), inputs()
    space = sn.convert(model, x)
    space.eval()
    before = importance(space, method, [x])
    perms = sn.sort_channels(space, data=[x], method=method)
    assert set(perms) == set(space.width_groups)
    heads = [n for n in perms if n.endswith(".heads")]
    assert heads and any(perms[n] != sorted(perms[n]) for n in heads)
    with torch.no_grad():
        space.set_arch(space.max_arch())
        assert _diff(space(**x), model(**x)) <= 1e-5
    after = importance(space, method, [x])
    for n in heads:
        assert torch.all(after[n][:-1] >= after[n][1:])
        torch.testing.assert_close(after[n], before[n][perms[n]])
    # the first head of a sorted layer is the heaviest head of the original
    path = heads[0].removesuffix(".heads")
    first = perms[heads[0]][0]
    (stream,) = [n for n, ms in space.width_groups.items() if any(m.path == path and m.role == "in" for m in ms)]
    sorted_qkv = space.net.get_submodule(path).in_proj_weight.view(3, H, D, E)[:, 0]
    original_qkv = model.get_submodule(path).in_proj_weight.view(3, H, D, E)[:, first][..., perms[stream]]
    assert torch.equal(sorted_qkv, original_qkv)  # its q, k, v rows (input columns in the stream's new order)
    for seed in range(3):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        with torch.no_grad():
            assert _diff(space.extract(arch)(**x), space(**x)) <= 1e-5


def test_per_head_masks_keep_the_head_order() -> None:
    model = _model(Tagger)
    x = {"idx": _tokens(), "mask": torch.randn(2 * H, 7, 7, generator=torch.Generator().manual_seed(5))}
    space = sn.convert(model, x)
    perms = sn.sort_channels(space)
    assert not any(n.endswith(".heads") for n in perms) and "emb.width" in perms
    space.set_arch(space.max_arch())
    space.eval()
    with torch.no_grad():
        assert _diff(space(**x), model(**x)) <= 1e-5
    # a layer whose heads were reordered refuses per-head masks (they were made for the first order)
    sorted_space = sn.convert(model, {"idx": _tokens()})
    sn.sort_channels(sorted_space)
    with pytest.raises(ValueError, match="reordered"):
        sorted_space(**x)
