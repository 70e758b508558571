"""Mixture-of-Supernets (``mos``): K=1 is the plain supernet, router gradients flow, extraction is exact."""

from __future__ import annotations

import pytest
import torch

import supernet as sn
from supernet.space import mixture, mixture_of
from supernet.spaces import SpaceError, build_from_spec
from test_train_common import straight_and_resumed
from tiny_spaces import tiny_space

TEXT = "abcdefghij " * 40


def _gpt() -> sn.SuperModule:
    torch.manual_seed(0)
    return sn.spaces.gpt(vocab_size=12, block_size=8, embed_dims=(8, 16), num_heads=(1, 2), mlp_ratios=(1, 2),
                         depths=(1, 2), head_dim=4)


def _vit() -> sn.SuperModule:
    torch.manual_seed(0)
    return tiny_space("vit", image_size=8, patch_size=4, num_classes=4)


SPACES = {"gpt": (_gpt, lambda: torch.randint(0, 12, (2, 8), generator=torch.Generator().manual_seed(0))),
          "vit": (_vit, lambda: torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)))}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_one_expert_is_exactly_the_plain_supernet(name: str) -> None:
    build, make_x = SPACES[name]
    plain, mixed = build(), build()
    mixture(mixed, experts=1)
    x = make_x()
    plain.eval()
    mixed.eval()
    for arch in [plain.max_arch(), plain.min_arch()] + [plain.sample(seed=s) for s in range(5)]:
        plain.set_arch(arch)
        mixed.set_arch(arch)
        with torch.no_grad():
            assert torch.equal(plain(x), mixed(x))


def test_one_expert_trains_exactly_like_its_inner_strategy() -> None:
    cfg = {"steps": 4, "batch_size": 4, "progress": False, "seed": 1}
    plain = sn.train(_gpt(), sn.data.char_text(TEXT), "uniform", cfg, device="cpu")
    mixed = sn.train(_gpt(), sn.data.char_text(TEXT), "mos",
                     {**cfg, "strategy_options": {"experts": 1, "inner": "uniform"}}, device="cpu")
    assert plain.losses == mixed.losses


@pytest.mark.parametrize("name", sorted(SPACES))
def test_router_gets_finite_nonzero_gradients_and_extraction_is_exact(name: str) -> None:
    build, make_x = SPACES[name]
    space = build()
    mixed = mixture(space, experts=3, hidden=8)
    x = make_x()
    space.train()
    space.set_arch(space.sample(seed=2))
    out = space(x)
    out.float().square().mean().backward()
    grads = [p.grad for p in mixed.router.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    plain_params = sum(p.numel() for p in build().extract(space.arch).parameters())
    space.eval()
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(seed=s) for s in range(8)]:
        space.set_arch(arch)
        with torch.no_grad():
            expected = space(x)
        net = space.extract(arch)
        assert not any(isinstance(m, (sn.SuperModule, sn.space.Searchable)) for m in net.modules())
        with torch.no_grad():
            assert (net(x) - expected).abs().max().item() <= 1e-5, arch
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in build().extract(arch).parameters())
    assert plain_params > 0


def test_mos_runs_rebuild_from_their_spec_and_resume_exactly(tmp_path, monkeypatch) -> None:
    run = sn.train(_gpt(), sn.data.char_text(TEXT), "mos", {"steps": 3, "batch_size": 4, "progress": False},
                   run_dir=tmp_path / "run", device="cpu")
    assert run.space.spec["mixture"] == {"experts": 2, "hidden": 32}
    loaded = sn.training.load_run(tmp_path / "run")
    assert mixture_of(loaded.space) is not None
    x = SPACES["gpt"][1]()
    for arch in (run.space.max_arch(), run.space.sample(seed=4)):
        for s in (run.space, loaded.space):
            s.eval()
            s.set_arch(arch)
        with torch.no_grad():
            assert torch.equal(run.space(x), loaded.space(x))
    config = {"steps": 8, "batch_size": 8, "lr": 5e-3, "checkpoint_every": 4, "log_every": 1, "progress": False,
              "deterministic": True, "seed": 3, "strategy_options": {"inner": "uniform", "experts": 2}}
    straight_and_resumed(tmp_path / "resume", monkeypatch, "mos", config, kill_at=4)


def test_mos_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="needs entangled Linear layers"):
        mixture(tiny_space("nb201"), experts=2)
    space = _gpt()
    mixture(space, experts=2)
    with pytest.raises(ValueError, match="already a mixture"):
        mixture(space, experts=2)
    with pytest.raises(ValueError, match="pada cannot be the inner strategy"):
        sn.training.strategies.make_strategy("mos", {"inner": "pada"})
    with pytest.raises(SpaceError, match="'mixture' must be"):
        build_from_spec({"space": "gpt", "kwargs": {}, "mixture": {"experts": 2}})
