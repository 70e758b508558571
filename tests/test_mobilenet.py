"""The Once-for-All / MobileNetV3-like space: exact extraction, costs, entanglement, decision names, errors."""

from __future__ import annotations

import copy
import random

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import supernet as sn
from supernet.space.base import Searchable
from supernet.spaces.mobilenet import MBConv, SqueezeExcite, make_divisible

N_STAGES = 4
MAX_DEPTH = 4


def _randomise_bn(space: sn.SuperModule, seed: int = 0) -> None:
    """Give BN affine parameters non-trivial values and train running stats under random archs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in space.modules():
            if isinstance(m, sn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    space.train()
    rng = random.Random(seed)
    with torch.no_grad():
        for arch in [space.max_arch(), *(space.sample(rng=rng) for _ in range(3))]:
            space.set_arch(arch)
            space(torch.randn(8, 3, 32, 32, generator=g))
    space.eval()


@pytest.fixture(scope="module")
def space() -> sn.SuperModule:
    torch.manual_seed(0)
    s = sn.spaces.mobilenet()
    _randomise_bn(s)
    return s


def _archs(space: sn.SuperModule) -> list[dict]:
    rng = random.Random(123)
    return [space.max_arch(), space.min_arch(), *(space.sample(rng=rng) for _ in range(25))]


def test_decisions_have_stable_readable_names(space: sn.SuperModule) -> None:
    expected = set()
    for s in range(N_STAGES):
        expected.add(f"stage{s}.depth")
        for b in range(MAX_DEPTH):
            expected |= {f"stage{s}.block{b}.kernel", f"stage{s}.block{b}.expand"}
    assert set(space.choices) == expected
    assert space.choices["stage0.depth"] == (2, 3, 4)
    assert space.choices["stage2.block1.kernel"] == (3, 5, 7)
    assert space.choices["stage3.block3.expand"] == (3, 4, 6)
    assert list(sn.spaces.mobilenet().choices) == list(space.choices)  # same order on every build
    assert space.spec["space"] == "mobilenet"
    rebuilt = sn.spaces.build_space("mobilenet", **space.spec["kwargs"])
    assert rebuilt.choices == space.choices


def test_extracted_net_equals_supernet(space: sn.SuperModule, tmp_path) -> None:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    example = x[:1]
    sizes = []
    for i, arch in enumerate(_archs(space)):
        space.eval()
        net = space.extract(arch)
        assert not net.training
        bad = [type(m).__name__ for m in net.modules() if isinstance(m, (Searchable, sn.SuperModule))]
        assert not bad, f"supernet classes in extracted net: {bad}"
        space.set_arch(arch)
        with torch.no_grad():
            ref, out = space(x), net(x)
        assert out.shape == (2, 10)
        assert (ref - out).abs().max().item() <= 1e-5, arch
        n_params = sn.cost.params(net)
        assert n_params == sn.cost.params(space) == sum(p.numel() for p in net.parameters())
        assert sn.cost.flops(net, example) == sn.cost.flops(space, example) > 0
        sizes.append(n_params)
        # Weights round-trip through safetensors into a fresh copy of the extracted net.
        path = tmp_path / f"net{i}.safetensors"
        save_file(net.state_dict(), str(path))
        loaded = load_file(str(path))
        fresh = copy.deepcopy(net)
        with torch.no_grad():
            for p in fresh.parameters():
                p.zero_()
        fresh.load_state_dict(loaded)
        with torch.no_grad():
            assert torch.equal(fresh(x), out)
    assert sizes[0] == max(sizes) and sizes[1] == min(sizes) and sizes[0] < 2_000_000


def test_depth_and_inactive_decisions(space: sn.SuperModule) -> None:
    arch = space.min_arch()
    net = space.extract(arch)
    assert [len(stage) for stage in net.stages] == [2] * N_STAGES
    # Decisions of blocks beyond the active depth do not change the output.
    other = dict(arch, **{"stage1.block3.kernel": 7, "stage1.block2.expand": 6})
    x = torch.randn(2, 3, 32, 32)
    space.set_arch(arch)
    with torch.no_grad():
        a = space(x)
        space.set_arch(other)
        assert torch.equal(a, space(x))
    # Residuals only where stride 1 and channels stay; the first block of each stage changes them.
    for stage in net.stages:
        assert not stage[0].residual and all(b.residual for b in stage[1:])
    assert net.first.residual and isinstance(net.first.expand, nn.Identity)
    assert isinstance(net.stages[1][0].se, SqueezeExcite) and isinstance(net.stages[0][0].se, nn.Identity)


def test_kernel_is_centred_window_and_expand_is_prefix(space: sn.SuperModule) -> None:
    arch = dict(space.max_arch(), **{"stage1.block1.kernel": 3, "stage1.block1.expand": 3})
    net = space.extract(arch)
    sup = space.net.stages[1].blocks[1]
    block = net.stages[1][1]
    assert isinstance(block, MBConv)
    c = 32  # stage1 width; hidden = 3 * 32
    hidden = 3 * c
    dw = block.depthwise[0]
    assert isinstance(dw, nn.Conv2d) and dw.kernel_size == (3, 3) and dw.groups == hidden == dw.out_channels
    assert torch.equal(dw.weight, sup.depthwise[0].weight[:hidden, :, 2:5, 2:5])
    assert sup.depthwise[0].weight.shape == (6 * c, 1, 7, 7)
    assert torch.equal(block.expand[0].weight, sup.expand[0].weight[:hidden])
    assert torch.equal(block.project[0].weight, sup.project[0].weight[:, :hidden])
    assert torch.equal(block.expand[1].running_var, sup.expand[1].running_var[:hidden])
    assert torch.equal(block.depthwise[1].running_mean, sup.depthwise[1].running_mean[:hidden])
    se_mid = make_divisible(hidden / 4)
    assert block.se.reduce.weight.shape == (se_mid, hidden, 1, 1)
    assert torch.equal(block.se.reduce.weight, sup.se.reduce.weight[:se_mid, :hidden])
    assert torch.equal(block.se.expand.weight, sup.se.expand.weight[:hidden, :se_mid])
    assert torch.equal(block.se.expand.bias, sup.se.expand.bias[:hidden])


def test_training_the_max_arch_changes_a_smaller_subnet() -> None:
    torch.manual_seed(0)
    space = sn.spaces.mobilenet()
    _randomise_bn(space)
    small = space.sample(seed=7)
    x = torch.randn(4, 3, 32, 32)
    space.set_arch(small)
    with torch.no_grad():
        before = space(x)
    weight = space.net.stages[2].blocks[0].depthwise[0].weight
    centre_before = weight[:, :, 3, 3].clone()
    space.train()
    space.set_arch(space.max_arch())
    opt = torch.optim.SGD(space.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(space(x), torch.tensor([0, 1, 2, 3]))
    opt.zero_grad()
    loss.backward()
    opt.step()
    space.eval()
    space.set_arch(small)
    with torch.no_grad():
        after = space(x)
    assert not torch.equal(weight[:, :, 3, 3], centre_before)  # shared centre taps moved
    assert (after - before).abs().max().item() > 1e-4


def test_bad_arch_errors_name_the_decision(space: sn.SuperModule) -> None:
    arch = space.max_arch()
    with pytest.raises(sn.InvalidOptionError, match=r"stage1\.block2\.kernel.*\[3, 5, 7\]"):
        space.set_arch(dict(arch, **{"stage1.block2.kernel": 4}))
    with pytest.raises(sn.InvalidOptionError, match=r"stage0\.depth"):
        space.extract(dict(arch, **{"stage0.depth": 5}))
    missing = dict(arch)
    del missing["stage3.block0.expand"]
    with pytest.raises(sn.MissingDecisionError, match=r"stage3\.block0\.expand"):
        space.set_arch(missing)
    with pytest.raises(sn.UnknownDecisionError, match=r"stage4\.depth"):
        space.set_arch(dict(arch, **{"stage4.depth": 2}))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strides": (2, 2)}, "strides needs one entry per stage"),
        ({"kernel_sizes": (3, 4)}, "kernel_sizes must be odd"),
        ({"activations": ("relu", "gelu", "hswish", "hswish")}, "unknown activation 'gelu'"),
        ({"depths": (0, 2)}, "depths must be"),
        ({"widths": (16,)}, "at least one stage width"),
        ({"image_size": 4, "stem_stride": 2}, "image_size 4 is smaller than the total downsampling"),
    ],
)
def test_bad_space_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sn.spaces.mobilenet(**kwargs)


def test_small_custom_space_runs_on_other_sizes() -> None:
    space = sn.spaces.mobilenet(
        num_classes=5,
        image_size=64,
        widths=(8, 16, 24),
        strides=(2, 2),
        stem_stride=2,
        depths=(1, 2),
        kernel_sizes=(3, 5),
        expand_ratios=(2, 4),
        activations=("hswish", "relu"),
        use_se=(True, True),
        feature_dim=32,
    ).eval()
    assert len(space.choices) == 2 * (1 + 2 * 2)
    x = torch.randn(2, 3, 64, 64)
    for arch in (space.max_arch(), space.min_arch(), space.sample(seed=3)):
        space.set_arch(arch)
        with torch.no_grad():
            assert torch.allclose(space(x), space.extract(arch)(x), atol=1e-6)
    assert space(x).shape == (2, 5)


def test_extracted_net_exports(space: sn.SuperModule) -> None:
    net = space.extract(space.min_arch())
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(net, (x,)).module()
    with torch.no_grad():
        assert (exported(x) - net(x)).abs().max().item() <= 1e-6


def test_make_divisible() -> None:
    assert make_divisible(96 / 4) == 24
    assert make_divisible(144 / 4) == 40  # 36 rounds up to 40
    assert make_divisible(3) == 8
    assert make_divisible(576 / 4) == 144
