"""Every ready space (and a user space) under superposition: gradients reach every alpha; one-hot = slicing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernet as sn
from supernet.gradient import Architect, ArchParameters, DirichletMixer, GumbelMixer, SoftmaxMixer, superposition
from tiny_spaces import tiny_space


def _user() -> tuple[sn.SuperModule, torch.Tensor]:
    width = sn.Choice([4, 8], name="width")
    net = nn.Sequential(
        sn.Conv2d(3, width, sn.Choice([3, 5], name="k")),
        sn.BatchNorm2d(width),
        nn.ReLU(),
        sn.LayerChoice({"avg": nn.AdaptiveAvgPool2d(1), "max": nn.AdaptiveMaxPool2d(1)}),
        nn.Flatten(),
        sn.Linear(width, 3),
    )
    return sn.SuperModule(net), torch.randn(2, 3, 8, 8)


INPUTS = {
    "nb201": lambda: torch.randn(2, 3, 8, 8),
    "mobilenet": lambda: torch.randn(2, 3, 16, 16),
    "gpt": lambda: torch.randint(0, 11, (2, 8)),
    "vit": lambda: torch.randn(2, 3, 8, 8),
}


def _space(name: str) -> tuple[sn.SuperModule, torch.Tensor]:
    if name == "user":
        return _user()
    return tiny_space(name), INPUTS[name]()


SPACES = ["nb201", "mobilenet", "gpt", "vit", "user"]


@pytest.mark.parametrize("name", SPACES)
def test_gradients_reach_the_alpha_of_every_decision(name: str) -> None:
    torch.manual_seed(0)
    space, x = _space(name)
    space.train()
    for mixer in (SoftmaxMixer(), DirichletMixer(reg_scale=0.01)):
        alphas = ArchParameters(space, init_std=0.3, generator=torch.Generator().manual_seed(1))
        assert set(alphas.alpha) == {n for n, c in space.decisions.items() if len(c.options) > 1}
        architect = Architect(alphas, mixer)

        def loss_fn(mixes: dict, batch: torch.Tensor) -> torch.Tensor:
            space.set_arch(space.max_arch())
            with superposition(mixes):
                out = space(batch)
            return (out.float() ** 2).mean()

        mixes = alphas.sample(mixer, 0.0, torch.Generator().manual_seed(2))
        loss = architect.alpha_grads(loss_fn, mixes, x)
        assert torch.isfinite(loss)
        for n, a in alphas.alpha.items():
            assert a.grad is not None and torch.isfinite(a.grad).all(), (name, mixer.name, n)
            assert a.grad.abs().sum() > 0, (name, mixer.name, n)
        before = {n: a.detach().clone() for n, a in alphas.alpha.items()}
        architect.step()
        assert all(not torch.equal(before[n], a) for n, a in alphas.alpha.items())


@pytest.mark.parametrize("name", ["nb201", "mobilenet", "vit"])
def test_one_hot_superposition_equals_the_sliced_subnet(name: str) -> None:
    torch.manual_seed(1)
    space, x = _space(name)
    space.train()
    arch = space.sample(seed=3)
    space.set_arch(arch)
    ref = space(x)
    one_hot = {c: F.one_hot(torch.tensor(c.index(arch[n])), len(c.options)).float() for n, c in space.decisions.items()}
    space.set_arch(space.max_arch())
    with superposition(one_hot):
        y = space(x)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_gdas_gradient_reaches_every_nb201_edge() -> None:
    torch.manual_seed(2)
    space, x = _space("nb201")
    space.train()
    alphas = ArchParameters(space, init_std=0.1, generator=torch.Generator().manual_seed(0))
    mixer = GumbelMixer()
    architect = Architect(alphas, mixer)
    mixes = alphas.sample(mixer, 0.3, torch.Generator().manual_seed(0))
    arch = {c.name: c.options[m.index] for c, m in mixes.items()}

    def loss_fn(m: dict, batch: torch.Tensor) -> torch.Tensor:
        space.set_arch(arch)
        with superposition(m):
            return (space(batch) ** 2).mean()

    architect.alpha_grads(loss_fn, mixes, x)
    for n, a in alphas.alpha.items():
        assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0, n
