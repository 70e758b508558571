"""Acceptance checks shared by every ready space: exact extraction, params, plain classes, safetensors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

import supernet as sn
from supernet.space.base import Searchable
from supernet.spaces import SPACES, build_space

# Small but structurally complete configs keep the 27-arch sweep fast; the input each space takes.
SMALL_KWARGS = {
    "gpt": {"vocab_size": 65, "block_size": 16},
    "vit": {"image_size": 16, "patch_size": 4},
    "nb201": {"C": 8, "N": 1},
    "mobilenet": {},
    "darts": {"C": 4, "layers": 5},
}


def example_input(name: str, space: sn.SuperModule) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if name == "gpt":
        return torch.randint(0, 65, (2, 16), generator=g)
    size = 16 if name == "vit" else 32
    return torch.randn(2, 3, size, size, generator=g)


def archs_to_check(space: sn.SuperModule) -> list[dict]:
    return [space.max_arch(), space.min_arch()] + [space.sample(seed=s) for s in range(25)]


def warm_up_batchnorm(space: sn.SuperModule, x: torch.Tensor) -> None:
    """Put BN running stats away from their 0/1 start so eval-mode equality means something."""
    space.train()
    with torch.no_grad():
        for seed in range(3):
            space.set_arch(space.sample(seed=100 + seed))
            space(x)
    space.eval()


def test_every_registered_space_is_covered() -> None:
    assert set(SPACES) <= set(SMALL_KWARGS), "add new spaces to SMALL_KWARGS and example_input"
    assert {"gpt", "vit"} <= set(SPACES)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_extracted_net_equals_supernet(name: str, tmp_path) -> None:
    torch.manual_seed(0)
    space = build_space(name, **SMALL_KWARGS[name])
    x = example_input(name, space)
    warm_up_batchnorm(space, x)
    for i, arch in enumerate(archs_to_check(space)):
        space.set_arch(arch)
        with torch.no_grad():
            expected = space(x)
        net = space.extract(arch)
        assert not any(isinstance(m, (Searchable, sn.SuperModule)) for m in net.modules())
        assert not net.training
        with torch.no_grad():
            got = net(x)
        assert (got - expected).abs().max().item() <= 1e-5, f"{name} arch {arch}"
        assert sn.cost.params(net) == sn.cost.params(space) == sum(p.numel() for p in net.parameters())
        if i < 3:  # safetensors round trip into a freshly extracted copy
            path = tmp_path / f"{name}-{i}.safetensors"
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
            fresh = build_space(name, **SMALL_KWARGS[name]).extract(arch).eval()
            fresh.load_state_dict(load_file(str(path)))
            with torch.no_grad():
                torch.testing.assert_close(fresh(x), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_spec_rebuilds_the_same_space(name: str) -> None:
    space = build_space(name, **SMALL_KWARGS[name])
    assert space.spec["space"] == name
    again = build_space(space.spec["space"], **space.spec["kwargs"])
    assert again.choices == space.choices


def test_gpt_decisions_and_sizes() -> None:
    space = sn.spaces.gpt(vocab_size=65, block_size=64)
    assert list(space.choices)[:2] == ["embed_dim", "depth"]
    assert space.choices["layers.3.mlp_ratio"] == (2, 3, 4)
    space.set_arch(space.max_arch())
    assert sn.cost.params(space) < 1_000_000
    x = torch.randint(0, 65, (1, 64))
    assert space(x).shape == (1, 64, 65)
    with pytest.raises(ValueError, match="block size"):
        space(torch.randint(0, 65, (1, 65)))


def test_unknown_space_name_lists_ready_spaces() -> None:
    with pytest.raises(KeyError, match="gpt"):
        build_space("resnet")


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", sorted(SPACES))
def test_extracted_net_scripts_and_exports_without_search_code(name: str) -> None:
    torch.manual_seed(0)
    space = build_space(name, **SMALL_KWARGS[name]).eval()
    x = example_input(name, space)
    net = space.extract(space.sample(seed=1)).eval()
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(torch.jit.script(net)(x), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.export.export(net, (x,)).module()(x), expected, rtol=0, atol=1e-6)
