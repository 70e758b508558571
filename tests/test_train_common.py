"""Tiny spaces and tasks shared by the training tests (this module holds no tests of its own)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.training import ClassificationTask, TrainConfig, TrainContext, decision_kinds
from supernet.training.strategies import make_strategy


class ConvNet(nn.Module):
    """Conv (kernel + width choices) -> BN -> op choice -> Repeat of conv blocks (depth) -> pool -> head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        width = sn.Choice([4, 8], name="width")
        kernel = sn.Choice([1, 3], name="kernel")
        self.stem = sn.Conv2d(1, width, kernel)
        self.bn = sn.BatchNorm2d(width)
        self.op = sn.LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh(), "id": nn.Identity()}, name="op")
        self.blocks = sn.Repeat(
            lambda i: nn.Sequential(sn.Conv2d(width, width, 3), sn.BatchNorm2d(width), nn.ReLU()),
            sn.Choice([1, 2], name="depth"),
        )
        self.head = sn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.op(self.bn(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


class MLPNet(nn.Module):
    """LayerNorm-only space (no BatchNorm): Linear width choice, an op choice with parameters, a depth choice."""

    def __init__(self, d_in: int = 8, classes: int = 4) -> None:
        super().__init__()
        width = sn.Choice([8, 16], name="width")
        self.inp = sn.Linear(d_in, width)
        self.op = sn.LayerChoice(
            {"lin": nn.Sequential(sn.Linear(width, width), nn.ReLU()), "tanh": nn.Tanh(), "id": nn.Identity()},
            name="op",
        )
        self.blocks = sn.Repeat(
            lambda i: nn.Sequential(sn.LayerNorm(width), sn.Linear(width, width), nn.GELU()),
            sn.Choice([0, 1, 2], name="depth"),
        )
        self.head = sn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.op(self.inp(x))))


def conv_space(seed: int = 0) -> sn.SuperModule:
    torch.manual_seed(seed)
    return sn.SuperModule(ConvNet())


def mlp_space(seed: int = 0) -> sn.SuperModule:
    torch.manual_seed(seed)
    return sn.SuperModule(MLPNet())


def image_task(n: int = 256, seed: int = 0) -> ClassificationTask:
    """Learnable synthetic 8x8 images: the label is the brightest quadrant."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    quads = torch.stack(
        [
            x[:, 0, :4, :4].mean((1, 2)),
            x[:, 0, :4, 4:].mean((1, 2)),
            x[:, 0, 4:, :4].mean((1, 2)),
            x[:, 0, 4:, 4:].mean((1, 2)),
        ],
        dim=1,
    )
    y = quads.argmax(1)
    k = n * 3 // 4
    return ClassificationTask((x[:k], y[:k]), (x[k:], y[k:]))


def vector_task(n: int = 256, seed: int = 0) -> ClassificationTask:
    """Learnable synthetic vectors: the label is the argmax of a fixed linear map."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 4, generator=g)
    y = (x @ w).argmax(1)
    k = n * 3 // 4
    return ClassificationTask((x[:k], y[:k]), (x[k:], y[k:]))


def make_context(space: sn.SuperModule, task, strategy: str, config: dict | None = None, **options):
    """A strategy (set up) and a single-process `TrainContext` on CPU, for calling ``strategy.step`` directly."""
    cfg = TrainConfig.from_dict({"steps": 20, "batch_size": 8, "progress": False, **(config or {})})
    strat = make_strategy(strategy, options)
    ctx = TrainContext(space, space, task, cfg, strat.options, torch.device("cpu"), decision_kinds(space))
    strat.setup(ctx)
    return strat, ctx


class Killed(Exception):
    """A simulated ``kill -9`` at the start of a step (after the previous checkpoint)."""


def kill_at_step(monkeypatch, strategy: str, step: int) -> None:
    """Make ``strategy`` raise `Killed` at the start of 0-based ``step``."""
    cls = sn.training.STRATEGIES[strategy]
    original = cls.step

    def step_or_die(self, ctx, batch):
        if ctx.step == step:
            raise Killed
        return original(self, ctx, batch)

    monkeypatch.setattr(cls, "step", step_or_die)


def straight_and_resumed(tmp_path, monkeypatch, strategy: str, config: dict, kill_at: int):
    """Train ``config`` on `conv_space` / `image_task` in one go, and again killed at the start of 0-based step
    ``kill_at`` then resumed with a differently initialised space; assert equal later losses and final weights.

    Returns both runs (straight, resumed) for strategy-specific checks.
    """
    straight = sn.train(conv_space(0), image_task(), strategy, config, run_dir=tmp_path / "a", device="cpu")
    with monkeypatch.context() as m:
        kill_at_step(m, strategy, kill_at)
        with pytest.raises(Killed):
            sn.train(conv_space(0), image_task(), strategy, config, run_dir=tmp_path / "b", device="cpu")
    resumed = sn.train(conv_space(1), image_task(), strategy, config, run_dir=tmp_path / "b", device="cpu",
                       resume=True)
    assert resumed.losses == pytest.approx(straight.losses[kill_at:], abs=1e-6)
    a, b = straight.space.state_dict(), resumed.space.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=0), k
    return straight, resumed

