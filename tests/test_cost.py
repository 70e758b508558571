"""Cost model: params, FLOPs and latency agree between a supernet's active subnet and its extraction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import supernet as sn


def test_params_and_flops_of_plain_linear_by_hand() -> None:
    net = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 3))
    assert sn.cost.params(net) == 10 * 20 + 20 + 20 * 3 + 3
    # flop_counter counts a multiply-add as 2 FLOPs; biases and ReLU are not counted.
    assert sn.cost.flops(net, torch.randn(4, 10)) == 2 * 4 * (10 * 20 + 20 * 3)


def test_active_subnet_costs_match_extracted_net() -> None:
    space = sn.spaces.gpt(vocab_size=65, block_size=16)
    x = torch.randint(0, 65, (2, 16))
    for seed in range(3):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        net = space.extract(arch)
        assert sn.cost.params(space) == sn.cost.params(net)
        assert sn.cost.flops(space, x) == sn.cost.flops(net, x)
    space.set_arch(space.min_arch())
    small = sn.cost.flops(space, x)
    space.set_arch(space.max_arch())
    assert sn.cost.flops(space, x) > 3 * small


def test_conv_flops_by_hand() -> None:
    space = sn.SuperModule(sn.Conv2d(3, sn.Choice([4, 8], name="c"), sn.Choice([1, 3], name="k"), bias=False))
    space.set_arch({"c": 4, "k": 3})
    # 4 output channels x 8x8 positions x 3 in-channels x 3x3 kernel, 2 FLOPs per multiply-add.
    assert sn.cost.flops(space, torch.randn(1, 3, 8, 8)) == 2 * 4 * 64 * 3 * 9
    assert sn.cost.params(space) == 4 * 3 * 9


def test_latency_is_a_positive_median_and_validates_arguments() -> None:
    net = nn.Linear(8, 8)
    t = sn.cost.latency(net, torch.randn(2, 8), warmup=1, repeats=5)
    assert 0 < t < 1.0
    assert net.training  # measuring does not change the caller's module
    with pytest.raises(ValueError, match="repeats"):
        sn.cost.latency(net, torch.randn(2, 8), repeats=0)
