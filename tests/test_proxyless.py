"""ProxylessNAS (``proxyless``): binary gates, the two-path alpha estimator and rescale, the expected-latency loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.cost import CostTable
from supernet.gradient.proxyless import BinaryGateMixer
from supernet.space.superposition import superposition
from test_train_common import conv_space, image_task, straight_and_resumed
from tiny_spaces import tiny_space


def test_two_paths_give_the_binaryconnect_gradient_on_the_two_sampled_alphas_only() -> None:
    mixer = BinaryGateMixer()
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        alpha = torch.randn(5, generator=g).requires_grad_(True)
        mix, (a, b) = mixer.two_paths(alpha, g)
        assert a != b and mix.paths == (a, b)
        w = mix.weights.detach()
        assert sorted(w.tolist()) == [0.0, 0.0, 0.0, 0.0, 1.0] and w[a] + w[b] == 1.0
        c = torch.randn(5, generator=g)  # dL/dw_j
        (mix.weights * c).sum().backward()
        q = torch.softmax(alpha.detach()[[a, b]], 0)
        expected = torch.zeros(5)
        for i, qi in ((a, q[0]), (b, q[1])):
            expected[i] = sum(c[j] * qj * ((1.0 if i == j else 0.0) - qi) for j, qj in ((a, q[0]), (b, q[1])))
        torch.testing.assert_close(alpha.grad, expected)


class _Counting(nn.Module):
    def __init__(self, calls: list[str], name: str) -> None:
        super().__init__()
        self.calls, self.name, self.lin = calls, name, nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        return self.lin(x)


def test_an_operation_choice_computes_only_the_two_sampled_paths() -> None:
    calls: list[str] = []
    space = sn.SuperModule(sn.LayerChoice({k: _Counting(calls, k) for k in "abcde"}, name="op"))
    alpha = torch.zeros(5, requires_grad=True)
    mix, (a, b) = BinaryGateMixer().two_paths(alpha, torch.Generator().manual_seed(1))
    with superposition({space.decisions["op"]: mix}):
        space(torch.randn(2, 4)).sum().backward()
    assert sorted(calls) == sorted("abcde"[i] for i in (a, b))
    assert alpha.grad is not None and int((alpha.grad != 0).sum()) == 2


def _cost_table(space: sn.SuperModule, tmp_path) -> str:
    table = CostTable.fit(space, lambda: float(sn.cost.params(space)), samples=20, seed=0, unit="params")
    return str(table.save(tmp_path / "cost.json"))


def test_the_alpha_step_keeps_other_paths_probabilities_and_the_latency_loss_lowers_expected_cost(tmp_path) -> None:
    space = tiny_space("nb201")
    path = _cost_table(space, tmp_path)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    task = sn.training.ClassificationTask((x[:24], y[:24]), (x[24:], y[24:]))
    cfg = {"steps": 12, "batch_size": 8, "progress": False, "log_every": 1,
           "strategy_options": {"latency_table": path, "latency_weight": 5.0, "alpha_lr": 0.05}}
    strat = sn.training.strategies.make_strategy("proxyless", cfg["strategy_options"])
    run = sn.train(space, task, strat, cfg, device="cpu")
    lat = [r["expected_latency"] for r in run.history]
    assert lat[-1] < lat[0]
    # the rescale: a step moves only the two sampled alphas and keeps logsumexp over them
    pairs = dict(strat._pairs)
    assert pairs and all(a != b for a, b, _ in pairs.values())
    for name, (a, b, before) in pairs.items():
        assert float(torch.logsumexp(strat.alphas.alpha[name].detach()[[a, b]], 0)) == pytest.approx(before, abs=1e-5)


def test_the_hinge_latency_loss_pulls_only_above_the_target(tmp_path) -> None:
    space = tiny_space("nb201")
    path = _cost_table(space, tmp_path)
    table = CostTable.load(path)
    low, high = table.extremes()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
    task = sn.training.ClassificationTask((x[:12], y[:12]), (x[12:], y[12:]))

    def term(target: float) -> tuple[float, float]:
        strat = sn.training.strategies.make_strategy(
            "proxyless", {"latency_table": path, "latency_weight": 2.0, "latency_target": target,
                          "latency_loss": "hinge"})
        sn.train(space, task, strat, {"steps": 1, "batch_size": 4, "progress": False}, device="cpu")
        for a in strat.alphas.alpha.values():
            a.grad = None
        value = strat.latency_term()
        value.backward()
        grads = sum(float(a.grad.abs().sum()) for a in strat.alphas.alpha.values() if a.grad is not None)
        expected = 2.0 * max(0.0, float(strat.expected_latency()) / target - 1.0)
        assert float(value) == pytest.approx(expected, rel=1e-9)
        return float(value), grads

    above, grad_above = term(low + 0.1 * (high - low))  # expected latency (near the middle) above the target
    assert above > 0 and grad_above > 0
    assert term(2 * high) == (0.0, 0.0)  # under the target: no pull at all


def test_proxyless_runs_on_cell_and_entangled_spaces_and_resumes_exactly(tmp_path, monkeypatch) -> None:
    space = tiny_space("gpt")
    run = sn.train(space, sn.training.make_task(sn.data.char_text("abcdefghij " * 40), block_size=8), "proxyless",
                   {"steps": 3, "batch_size": 4, "progress": False}, device="cpu")
    assert all(math.isfinite(v) for v in run.losses) and run.final_arch is not None
    config = {"steps": 8, "batch_size": 8, "lr": 5e-3, "checkpoint_every": 4, "log_every": 1, "progress": False,
              "deterministic": True, "seed": 3}
    straight_and_resumed(tmp_path, monkeypatch, "proxyless", config, kill_at=4)


def test_a_latency_table_of_another_space_is_refused(tmp_path) -> None:
    path = _cost_table(tiny_space("nb201"), tmp_path)
    with pytest.raises(ValueError, match="not decisions of this space"):
        sn.train(conv_space(0), image_task(), "proxyless",
                 {"steps": 1, "batch_size": 4, "progress": False, "strategy_options": {"latency_table": path}},
                 device="cpu")
