"""`sn.convert` / `sn.sort_channels`: any PyTorch model becomes a search space over its own weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernet as sn
from supernet.converting import ConversionError, ConvertedSpace, importance
from supernet.space.base import Searchable

# ---------------------------------------------------------------------------------------------------------------
# Test models: small, but with the constructs of the real ones.
# ---------------------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """ResNet-18 layout (2-2-2-2 basic blocks, downsampling shortcuts), narrow."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 24, 32), classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = widths[0], []
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(BasicBlock(cin, w, 1 if i == 0 else 2), BasicBlock(w, w)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 layout (torchvision style: one ``features`` Sequential), narrow."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        feats: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(inplace=True))
        ]
        cin = 8
        for t, c, n, s in [(1, 8, 1, 1), (4, 12, 2, 2), (4, 16, 3, 2)]:
            for i in range(n):
                feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        feats.append(nn.Sequential(nn.Conv2d(cin, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True)))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


class Attention(nn.Module):
    """nanoGPT-style causal self-attention from nn.Linear layers (head split from the model's config)."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.d, self.h = d, heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(self.d, dim=2)
        q, k, v = (z.view(b, t, self.h, self.d // self.h).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / (k.size(-1) ** 0.5))
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        return self.proj((att @ v).transpose(1, 2).reshape(b, t, self.d))


class SizeReadingAttention(Attention):
    """The same attention, but reading the width from the input (``C = x.size(-1)``), as nanoGPT does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.size()
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, attention: type[nn.Module]) -> None:
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), attention(d, heads), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """Token + position embeddings, pre-LN blocks in an nn.ModuleList, LM head tied to the token embedding."""

    def __init__(self, vocab: int = 31, d: int = 32, heads: int = 4, layers: int = 3, block: int = 16,
                 attention: type[nn.Module] = Attention) -> None:
        super().__init__()
        self.block = block
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.blocks = nn.ModuleList([Block(d, heads, attention) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        _, t = idx.shape
        assert t <= self.block, "sequence too long"
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def _image() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _tokens() -> torch.Tensor:
    return torch.randint(0, 31, (2, 12), generator=torch.Generator().manual_seed(1))


MODELS = {
    "resnet": (ResNet, _image),
    "mobilenet": (MobileNetV2, _image),
    "gpt": (TinyGPT, _tokens),
}


def _trained_model(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model with BN running statistics away from their 0/1 start (so eval outputs mean something)."""
    torch.manual_seed(0)
    cls, make_input = MODELS[name]
    model, x = cls(), make_input()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(x if name == "gpt" else torch.randn_like(x))
    return model.eval(), x


@pytest.fixture(scope="module")
def converted() -> dict[str, tuple[nn.Module, torch.Tensor, ConvertedSpace]]:
    out = {}
    for name in MODELS:
        model, x = _trained_model(name)
        out[name] = (model, x, sn.convert(model, x))
    return out


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_max_arch_reproduces_the_model(converted, name: str) -> None:
    model, x, space = converted[name]
    assert isinstance(space, sn.SuperModule) and len(space.choices) > 2
    space.set_arch(space.max_arch())
    space.eval()
    with torch.no_grad():
        assert _max_diff(space(x), model(x)) <= 1e-5
    assert sn.cost.params(space) == sn.cost.params(model)
    # The model itself is left alone.
    assert not any(isinstance(m, Searchable) for m in model.modules())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_sampled_archs_extract_to_plain_models(converted, name: str) -> None:
    model, x, space = converted[name]
    space.eval()
    archs = [space.max_arch(), space.min_arch()] + [space.sample(seed=s) for s in range(25)]
    sizes = set()
    for arch in archs:
        space.set_arch(arch)
        with torch.no_grad():
            expected = space(x)
        net = space.extract(arch)
        assert not any(isinstance(m, (Searchable, sn.SuperModule)) for m in net.modules())
        assert not net.training
        with torch.no_grad():
            assert _max_diff(net(x), expected) <= 1e-5, arch
        n = sn.cost.params(net)
        assert n == sn.cost.params(space) == sum(p.numel() for p in net.parameters())
        sizes.add(n)
    space.set_arch(space.max_arch())
    assert max(sizes) == sn.cost.params(model) and min(sizes) < 0.6 * max(sizes)
    space.set_arch(space.min_arch())
    assert sn.cost.params(space) == min(sizes)
    space.set_arch(space.max_arch())


def test_extracted_nets_keep_the_users_classes_and_tied_weights(converted) -> None:
    _, _, space = converted["gpt"]
    net = space.extract(space.min_arch())
    assert type(net) is TinyGPT and type(net.blocks[0]) is Block and type(net.blocks[0].attn) is Attention
    assert net.head.weight is net.tok.weight
    _, _, resnet = converted["resnet"]
    small = resnet.extract(resnet.min_arch())
    assert type(small.layer1[0]) is BasicBlock and len(small.layer2) == 1


def test_residual_joined_layers_share_one_width(converted) -> None:
    _, _, space = converted["resnet"]
    groups = space.width_groups
    stage2 = [n for n, ms in groups.items() if any(m.path == "layer2.0.downsample.0" and m.role == "out" for m in ms)]
    assert len(stage2) == 1
    producers = {m.path for m in groups[stage2[0]] if m.role == "out"}
    assert producers == {"layer2.0.downsample.0", "layer2.0.conv2", "layer2.1.conv2"}
    for seed in range(25):
        net = space.extract(space.sample(seed=seed))
        widths = {net.layer2[0].conv2.out_channels, net.layer2[0].downsample[0].out_channels,
                  net.layer2[0].bn2.num_features, net.layer3[0].conv1.in_channels}
        if len(net.layer2) > 1:
            widths |= {net.layer2[1].conv2.out_channels, net.layer2[1].conv1.in_channels}
        assert len(widths) == 1
        # The stem joins layer1's residual stream.
        assert net.conv1.out_channels == net.layer1[0].conv2.out_channels
    _, _, mobile = converted["mobilenet"]
    for seed in range(10):
        net = mobile.extract(mobile.sample(seed=seed))
        f = dict(net.features.named_children())
        # features.4 projects to the width the residual blocks 5 and 6 add to.
        outs = {f[k].conv[-2].out_channels for k in ("4", "5", "6") if k in f}
        assert len(outs) == 1
        # Depthwise convs follow their expand conv.
        dw = f["4"].conv[3]
        assert dw.groups == dw.in_channels == dw.out_channels == f["4"].conv[0].out_channels


def test_depth_choices_keep_the_first_blocks(converted) -> None:
    _, _, space = converted["resnet"]
    assert {"layer1.depth", "layer2.depth", "layer3.depth", "layer4.depth"} <= set(space.choices)
    assert space.choices["layer2.depth"] == (1, 2)
    _, _, gpt = converted["gpt"]
    assert gpt.choices["blocks.depth"] == (1, 2, 3)
    net = gpt.extract({**gpt.max_arch(), "blocks.depth": 1})
    assert len(net.blocks) == 1
    _, _, mobile = converted["mobilenet"]
    depth = {k: v for k, v in mobile.choices.items() if k.endswith(".depth")}
    assert depth == {"features.0-1.depth": (1, 2), "features.2-3.depth": (1, 2), "features.4-6.depth": (1, 2, 3)}
    net = mobile.extract({**mobile.max_arch(), "features.4-6.depth": 1})
    assert list(dict(net.features.named_children())) == ["0", "1", "2", "3", "4", "7"]


def test_transformer_converts_mlp_embedding_and_depth_and_fixes_heads(converted) -> None:
    _, _, space = converted["gpt"]
    rows = {r.name: r for r in space.report.groups}
    assert rows["tok.width"].searchable  # the residual stream (tied embedding/head)
    for i in range(3):
        assert rows[f"blocks.{i}.mlp.0.width"].options == (64, 96, 128)
        assert not rows[f"blocks.{i}.attn.qkv.width"].searchable
        assert any("splits the channels" in why for why in rows[f"blocks.{i}.attn.qkv.width"].fixed_because)
    assert not rows["head.width"].searchable  # the logits are the output


def test_width_read_from_the_input_is_left_fixed_not_wrong() -> None:
    # nanoGPT reads C = x.size(-1) to split heads: the embedding width must then stay fixed.
    torch.manual_seed(0)
    model, x = TinyGPT(attention=SizeReadingAttention).eval(), _tokens()
    space = sn.convert(model, x)
    rows = {r.name: r for r in space.report.groups}
    assert not rows["tok.width"].searchable and rows["tok.width"].fixed_because
    assert rows["blocks.0.mlp.0.width"].searchable
    for seed in range(5):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        with torch.no_grad():
            assert _max_diff(space.extract(arch)(x), space(x)) <= 1e-5


# ---------------------------------------------------------------------------------------------------------------
# What cannot be converted
# ---------------------------------------------------------------------------------------------------------------


class Gate(nn.Module):
    """Data-dependent control flow: cannot be traced symbolically."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return self.conv(x)
        return x


class Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.a = nn.Conv2d(8, 16, 3, padding=1)
        self.gate = Gate(16)
        self.b = nn.Conv2d(16, 16, 3, padding=1)
        self.c = nn.Conv2d(16, 12, 1)
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.a(self.norm(self.stem(x)))
        x = self.gate(x)
        x = torch.roll(self.b(x), 1, dims=1)  # an op the converter does not follow
        x = self.c(x).mean((2, 3))
        h = self.fc1(x)
        h = h.reshape(h.shape[0], -1, 16).squeeze(1)  # a hard-coded width: wrong for any narrower fc1
        return self.fc2(F.relu(h))


def test_unsupported_constructs_are_left_fixed_and_named() -> None:
    torch.manual_seed(0)
    model, x = Odd().eval(), _image()
    space = sn.convert(model, x)
    fixed = space.report.fixed
    assert "GroupNorm" in fixed["norm"]
    assert "data-dependent" in fixed["gate"]
    rows = {r.name: r for r in space.report.groups}
    assert any("GroupNorm" in w or "norm" in w for w in rows["stem.width"].fixed_because)
    assert any("roll" in w for w in rows["b.width"].fixed_because)
    assert not rows["fc1.width"].searchable and any("subnet" in w for w in rows["fc1.width"].fixed_because)
    assert rows["c.width"].searchable  # what can be converted is
    assert set(space.choices) == {"c.width"}
    with torch.no_grad():
        assert _max_diff(space(x), model(x)) <= 1e-5
        for arch in [space.min_arch(), space.max_arch()]:
            space.set_arch(arch)
            assert _max_diff(space.extract(arch)(x), space(x)) <= 1e-5
    table = space.report.table()
    assert "gate" in table and "GroupNorm" in table and "FIXED" in table


def test_report_table_is_printed(capsys) -> None:
    model, x = _trained_model("resnet")
    sn.convert(model, x, report=True)
    out = capsys.readouterr().out
    assert "width groups:" in out and "layer2.depth" in out and "fc.width" in out


def test_pin_exclude_and_widths_per_group() -> None:
    model, x = _trained_model("resnet")
    space = sn.convert(
        model, x, widths=(0.5, 1.0), depth=False, pin=["layer1.0.conv1"], exclude=["layer4"],
        group_widths={"layer2.0.conv1": (4, 0.75)},
    )
    assert "layer1.0.conv1.width" not in space.choices
    assert not any(name.startswith("layer4") for name in space.choices)
    assert not any(name.endswith(".depth") for name in space.choices)
    assert space.choices["layer2.0.conv1.width"] == (4, 12, 16)
    assert space.choices["layer3.0.conv1.width"] == (12, 24)
    assert "layer4" in space.report.fixed
    with torch.no_grad():
        space.eval()
        assert _max_diff(space(x), model(x)) <= 1e-5
    divided = sn.convert(model, x, widths=(0.3, 1.0), divisor=8)
    assert all(o % 8 == 0 for name, opts in divided.choices.items() if name.endswith(".width") for o in opts)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": ()}, "non-empty"),
        ({"widths": (0.5, 1.5)}, r"\(0, 1\]"),
        ({"widths": "half"}, "non-empty"),
        ({"exclude": ["nope"]}, "no module 'nope'"),
        ({"pin": ["nope"]}, "neither a width decision nor a converted layer"),
        ({"group_widths": {"fc.width": (0,)}}, "at least 1"),
        ({"divisor": 0}, "divisor"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs: dict, match: str) -> None:
    model, x = ResNet().eval(), _image()
    with pytest.raises(ValueError, match=match):
        sn.convert(model, x, **kwargs)


def test_bad_inputs_are_clear_errors(converted) -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        sn.convert(lambda x: x, _image())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="example_input does not fit"):
        sn.convert(ResNet(), (_image(), _image()))
    _, x, space = converted["resnet"]
    with pytest.raises(ValueError, match="already contains searchable layers"):
        sn.convert(space, x)
    with pytest.raises(ValueError, match="method must be one of"):
        sn.sort_channels(space, method="magic")
    with pytest.raises(ValueError, match="needs data"):
        sn.sort_channels(space, method="activation")
    with pytest.raises(TypeError, match=r"made by supernet\.convert"):
        sn.sort_channels(sn.spaces.gpt(vocab_size=11, block_size=8))

    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ConversionError, match="data-dependent"):
        sn.convert(Branchy(), torch.randn(2, 4))


# ---------------------------------------------------------------------------------------------------------------
# Importance sorting
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("method", ["l1", "activation"])
def test_sorting_keeps_outputs_and_orders_channels(name: str, method: str) -> None:
    model, x = _trained_model(name)
    space = sn.convert(model, x)
    space.eval()
    data = [x] if name == "gpt" else [x, torch.randn_like(x)]
    before = importance(space, method, data)
    perms = sn.sort_channels(space, data=data, method=method)
    assert set(perms) == set(space.width_groups) and perms
    with torch.no_grad():
        space.set_arch(space.max_arch())
        assert _max_diff(space(x), model(x)) <= 1e-5
    after = importance(space, method, data)
    for group, scores in after.items():
        assert torch.all(scores[:-1] >= scores[1:] - 1e-5 * scores.abs().max()), group
        # The same channels, reordered.
        torch.testing.assert_close(scores, before[group][perms[group]], rtol=1e-4, atol=1e-6)
    # Subnets of the sorted space still extract exactly.
    for seed in range(3):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        with torch.no_grad():
            assert _max_diff(space.extract(arch)(x), space(x)) <= 1e-5


def test_sorted_prefixes_keep_the_heaviest_channels() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight.mul_(torch.arange(1, 9, dtype=torch.float32)[torch.randperm(8)][:, None])
    x = torch.randn(4, 6)
    space = sn.convert(model, x, widths=(0.5, 1.0))
    (name,) = space.choices
    l1 = model[0].weight.abs().sum(1)
    sn.sort_channels(space)
    space.set_arch({name: 4})
    kept = space.extract({name: 4})[0].weight.abs().sum(1)
    torch.testing.assert_close(kept, l1.sort(descending=True).values[:4])
    space.set_arch({name: 8})
    with torch.no_grad():
        assert _max_diff(space(x), model(x)) <= 1e-5


def test_converted_space_trains_the_models_own_weights() -> None:
    model, x = _trained_model("resnet")
    space = sn.convert(model, x)
    space.train()
    space.set_arch(space.sample(seed=3))
    loss = space(x).square().mean()
    loss.backward()
    grads = [p.grad for p in space.parameters()]
    assert sum(g is not None for g in grads) > 10
    assert all(torch.isfinite(g).all() for g in grads if g is not None)
