"""The search-space core: choices, naming, arch validation, entangled slicing, extraction."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.space.base import Searchable


def small_space() -> sn.SuperModule:
    width = sn.Choice([4, 8, 12], name="width")
    net = nn.Sequential(
        sn.Linear(6, width),
        nn.ReLU(),
        sn.Repeat([nn.Sequential(sn.Linear(width, width), nn.ReLU()) for _ in range(3)], sn.Choice([1, 2, 3])),
        sn.LayerChoice({"lin": sn.Linear(width, 5), "lin_nobias": sn.Linear(width, 5, bias=False)}),
    )
    return sn.SuperModule(net)


def test_choice_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="at least one option"):
        sn.Choice([])
    with pytest.raises(ValueError, match="repeated"):
        sn.Choice([1, 1])
    with pytest.raises(TypeError, match="JSON"):
        sn.Choice([(1, 2)])


def test_unnamed_choices_get_module_path_names_in_stable_order() -> None:
    space = small_space()
    assert list(space.choices) == ["width", "2.depth", "3"]
    assert space.choices["2.depth"] == (1, 2, 3)
    assert small_space().choices == space.choices  # rebuilding gives the same names and order


def test_shared_choice_is_one_decision_and_duplicate_names_are_refused() -> None:
    d = sn.Choice([2, 4], name="d")
    space = sn.SuperModule(nn.Sequential(sn.Linear(3, d), sn.Linear(d, d), sn.Linear(d, 1)))
    assert list(space.choices) == ["d"]
    clash = nn.Sequential(sn.Linear(3, sn.Choice([2, 4], name="d")), sn.Linear(4, sn.Choice([1, 2], name="d")))
    with pytest.raises(ValueError, match="both named 'd'"):
        sn.SuperModule(clash)


def test_bad_arch_errors_name_the_decision() -> None:
    space = small_space()
    arch = space.max_arch()
    with pytest.raises(sn.UnknownDecisionError, match="'nope'"):
        space.set_arch({**arch, "nope": 1})
    missing = dict(arch)
    del missing["2.depth"]
    with pytest.raises(sn.MissingDecisionError, match=r"'2\.depth'"):
        space.set_arch(missing)
    with pytest.raises(sn.InvalidOptionError, match=r"'width'.*\[4, 8, 12\]"):
        space.set_arch({**arch, "width": 5})
    with pytest.raises(sn.InvalidOptionError, match="'3'"):
        space.set_arch({**arch, "3": "conv"})
    with pytest.raises(sn.ArchError, match="dict"):
        space.set_arch([1, 2])
    # A failed set_arch leaves the active arch untouched.
    space.set_arch(space.min_arch())
    with pytest.raises(sn.InvalidOptionError):
        space.set_arch({**space.max_arch(), "width": 7})
    assert space.arch == space.min_arch()


def test_sample_is_reproducible_and_json_serialisable() -> None:
    space = small_space()
    assert space.sample(seed=3) == space.sample(seed=3)
    assert len({json.dumps(space.sample(seed=s), sort_keys=True) for s in range(30)}) > 5
    arch = space.sample(seed=1)
    assert space.validate(json.loads(json.dumps(arch))) == arch
    assert space.max_arch() == {"width": 12, "2.depth": 3, "3": "lin"}
    assert space.min_arch() == {"width": 4, "2.depth": 1, "3": "lin_nobias"}
    assert space.num_archs() == 18


def test_extract_matches_supernet_and_leaves_active_arch() -> None:
    torch.manual_seed(0)
    space = small_space().eval()
    x = torch.randn(7, 6)
    space.set_arch(space.max_arch())
    for seed in range(10):
        arch = space.sample(seed=seed)
        net = space.extract(arch)
        assert space.arch == space.max_arch()
        assert not any(isinstance(m, (Searchable, sn.SuperModule)) for m in net.modules())
        space.set_arch(arch)
        torch.testing.assert_close(net(x), space(x), rtol=0, atol=1e-6)
        assert sn.cost.params(net) == sn.cost.params(space)
        space.set_arch(space.max_arch())
        # The copy shares no storage with the supernet.
        sn_ptrs = {p.data_ptr() for p in space.parameters()}
        assert not any(p.data_ptr() in sn_ptrs for p in net.parameters())


def test_entanglement_is_real_and_slices_are_prefixes() -> None:
    torch.manual_seed(0)
    lin = sn.Linear(sn.Choice([3, 6], name="i"), sn.Choice([2, 5], name="o"))
    space = sn.SuperModule(lin)
    small = {"i": 3, "o": 2}
    space.set_arch(small)
    x = torch.randn(4, 3)
    before = space(x).detach().clone()
    torch.testing.assert_close(space.extract().weight, lin.weight[:2, :3])
    # One optimizer step on the max arch changes the small subnet's output.
    space.set_arch(space.max_arch())
    opt = torch.optim.SGD(space.parameters(), lr=0.1)
    space(torch.randn(4, 6)).pow(2).sum().backward()
    opt.step()
    space.set_arch(small)
    assert not torch.allclose(space(x), before)


def test_conv_kernel_choice_is_centred_window_and_channels_follow_producer() -> None:
    torch.manual_seed(0)
    c = sn.Choice([4, 8], name="c")
    k = sn.Choice([3, 5, 7], name="k")
    conv = sn.Conv2d(3, c, 3)
    dw = sn.Conv2d(c, c, k, depthwise=True)
    space = sn.SuperModule(nn.Sequential(conv, sn.BatchNorm2d(c), dw)).eval()
    space.set_arch({"c": 4, "k": 3})
    plain = space.extract()
    torch.testing.assert_close(plain[2].weight, dw.weight[:4, :, 2:5, 2:5])
    assert plain[2].groups == 4 and plain[2].padding == (1, 1)
    x = torch.randn(2, 3, 9, 9)
    torch.testing.assert_close(plain(x), space(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="odd or all even"):
        sn.Conv2d(3, 4, sn.Choice([3, 4]))
    with pytest.raises(ValueError, match="in_channels"):
        conv(torch.randn(1, 5, 9, 9))


def test_batchnorm_running_stats_are_sliced_in_place() -> None:
    c = sn.Choice([2, 4], name="c")
    bn = sn.BatchNorm2d(c)
    space = sn.SuperModule(bn).train()
    space.set_arch({"c": 2})
    space(torch.randn(8, 2, 3, 3) + 5.0)
    assert (bn.running_mean[:2] > 0.3).all()
    assert (bn.running_mean[2:] == 0).all() and (bn.running_var[2:] == 1).all()
    bn.reset_running_stats()
    assert (bn.running_mean == 0).all()


def test_derived_values_and_layer_choice_sizes() -> None:
    e = sn.Choice([4, 8], name="e")
    r = sn.Choice([2, 3], name="r")
    hidden = e * r
    assert hidden.possible_values() == [8, 12, 16, 24]
    assert set(hidden.leaves()) == {e, r}
    lin = sn.Linear(e, hidden)
    assert lin.weight.shape == (24, 8)
    space = sn.SuperModule(lin)
    space.set_arch({"e": 4, "r": 3})
    assert space.extract().weight.shape == (12, 4)
    with pytest.raises(ValueError, match="whole number"):
        sn.Linear(3, sn.Choice([3, 5]) * 0.5)


def test_repeat_validates_depths_and_runs_prefix_of_blocks() -> None:
    with pytest.raises(ValueError, match=r"0\.\.2"):
        sn.Repeat([nn.Identity(), nn.Identity()], sn.Choice([1, 3]))
    blocks = [nn.Linear(2, 2) for _ in range(3)]
    rep = sn.Repeat(blocks, sn.Choice([1, 2, 3], name="d"))
    space = sn.SuperModule(rep)
    space.set_arch({"d": 2})
    x = torch.randn(1, 2)
    torch.testing.assert_close(space(x), blocks[1](blocks[0](x)))
    assert len(space.extract()) == 2


def test_user_module_holding_a_choice_is_refused_on_extract() -> None:
    class Bad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = sn.Choice([1, 2], name="w")
            self.lin = sn.Linear(2, self.w)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    with pytest.raises(TypeError, match="search-space value"):
        sn.SuperModule(Bad()).extract()


def test_layer_choice_ranks_options_by_size_also_when_the_choice_is_shared() -> None:
    op = sn.Choice(["pool", "conv"], name="op")
    cells = [
        sn.LayerChoice({"pool": nn.AvgPool2d(3, 1, 1), "conv": nn.Conv2d(2, 2, 3, padding=1)}, choice=op)
        for _ in range(2)
    ]
    space = sn.SuperModule(nn.Sequential(*cells))
    assert list(space.choices) == ["op"]
    assert space.max_arch() == {"op": "conv"} and space.min_arch() == {"op": "pool"}
    with pytest.raises(ValueError, match="differ from candidates"):
        sn.LayerChoice({"a": nn.Identity()}, choice=op)
