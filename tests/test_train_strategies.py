"""Each training strategy follows its rule for the archs it trains, and lowers the loss on a tiny problem."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

import supernet as sn
from supernet.training import STRATEGIES, decision_kinds, evaluate_many
from supernet.training.distill import alpha_divergence, kl_distill
from supernet.training.strategies.fair import fair_group
from test_train_common import conv_space, image_task, make_context, mlp_space, vector_task


def _steps(strategy: str, n: int, space=None, task=None, config=None, **options):
    space = space or conv_space()
    task = task or image_task()
    strat, ctx = make_context(space, task, strategy, config, **options)
    outs = []
    for step in range(n):
        ctx.step = step
        space.zero_grad(set_to_none=True)
        outs.append(strat.step(ctx, ctx.train_batch()))
    return space, strat, outs


def test_registry_has_the_two_stage_strategies():
    assert {"uniform", "fair", "sandwich", "alpha", "progressive"} <= set(STRATEGIES)


def test_decision_kinds_follow_usage():
    assert decision_kinds(conv_space()) == {"width": "width", "kernel": "kernel", "op": "other", "depth": "depth"}
    gpt = sn.spaces.gpt(block_size=8, embed_dims=(8, 16), num_heads=(1, 2), mlp_ratios=(1, 2), depths=(1, 2),
                        head_dim=4)
    kinds = decision_kinds(gpt)
    assert kinds["depth"] == "depth" and kinds["embed_dim"] == "width"
    assert kinds["layers.0.heads"] == "width" and kinds["layers.1.mlp_ratio"] == "width"
    with pytest.raises(ValueError, match="unknown decision 'nope'"):
        decision_kinds(gpt, {"nope": "width"})


def test_uniform_trains_one_random_arch_per_step():
    space, _, outs = _steps("uniform", 12)
    assert all(len(o.archs) == 1 for o in outs)
    for o in outs:
        space.validate(o.archs[0])
    assert len({tuple(o.archs[0].items()) for o in outs}) > 3  # really random


def test_fair_visits_every_option_exactly_once_per_group():
    space, _, outs = _steps("fair", 4)
    choices = space.choices  # width 2, kernel 2, op 3, depth 2 options -> groups of 3 paths
    for o in outs:
        assert len(o.archs) == 3
        for name, options in choices.items():
            counts = Counter(a[name] for a in o.archs)
            assert set(counts) == set(options), name  # every option at least once
            if len(options) == 3:
                assert all(c == 1 for c in counts.values())  # the largest decision: exactly once
            assert max(counts.values()) <= math.ceil(3 / len(options))


def test_fair_lcm_groups_are_strictly_fair():
    import random

    choices = {"a": (1, 2), "b": ("x", "y", "z"), "c": (4, 5, 6, 7)}
    group = fair_group(choices, random.Random(0), "lcm")
    assert len(group) == 12
    for name, options in choices.items():
        counts = Counter(a[name] for a in group)
        assert counts == {o: 12 // len(options) for o in options}
    with pytest.raises(ValueError, match="max_group"):
        fair_group(choices, random.Random(0), "lcm", max_group=6)


@pytest.mark.parametrize("strategy", ["sandwich", "alpha"])
def test_sandwich_rule_includes_max_and_min_every_step(strategy):
    space, _, outs = _steps(strategy, 5, num_random=2)
    for o in outs:
        assert len(o.archs) == 4
        assert o.archs[0] == space.max_arch() and o.archs[1] == space.min_arch()
        assert "loss_max" in o.metrics and "distill_min" in o.metrics


def test_progressive_respects_its_phases():
    space = conv_space()
    strat, ctx = make_context(space, image_task(), "progressive", {"steps": 40}, num_samples=2)
    assert [p for p, _ in strat.bounds] == ["full", "kernel", "depth", "width"]
    assert [e for _, e in strat.bounds] == [10, 20, 30, 40]
    largest = space.max_arch()
    seen = {"kernel": set(), "depth": set(), "width": set()}
    for step in range(40):
        ctx.step = step
        space.zero_grad(set_to_none=True)
        out = strat.step(ctx, ctx.train_batch())
        phase = strat.phase(step)
        allowed = {"full": set(), "kernel": {"kernel"}, "depth": {"kernel", "depth"},
                   "width": {"kernel", "depth", "width", "op"}}[phase]
        for arch in out.archs:
            changed = {k for k in arch if arch[k] != largest[k]}
            assert changed <= allowed, (step, phase, changed)
            if phase in seen:
                seen[phase] |= changed
        assert (strat.teacher is None) == (phase == "full")
    assert seen["kernel"] == {"kernel"} and seen["depth"] >= {"depth"} and seen["width"] >= {"width", "op"}


def test_progressive_skips_phases_the_space_lacks():
    strat, _ = make_context(mlp_space(), vector_task(), "progressive", {"steps": 30})
    assert [p for p, _ in strat.bounds] == ["full", "depth", "width"]
    assert strat.bounds[-1][1] == 30


def test_alpha_divergence_gradient_matches_the_divergence():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5, requires_grad=True), torch.randn(6, 5)
    for a in (-1.0, 0.0, 0.5, 1.0):
        q, p = s.softmax(-1), t.softmax(-1)
        if a == 0.0:
            d = (q * (q.log() - p.log())).sum(-1)
        elif a == 1.0:
            d = (p * (p.log() - q.log())).sum(-1)
        else:
            d = (q * ((p / q) ** a - 1)).sum(-1) / (a * (a - 1))
        surrogate, value = alpha_divergence(s, t, a, a, clip=1e9)
        assert torch.allclose(value, d.mean().detach(), atol=1e-5)
        g1, = torch.autograd.grad(surrogate, s)
        g2, = torch.autograd.grad(d.mean(), s)
        assert torch.allclose(g1, g2, atol=1e-5)
    # alpha = 1 is KL(p || q), the sandwich loss
    g_kl, = torch.autograd.grad(kl_distill(s, t), s)
    g_a, = torch.autograd.grad(alpha_divergence(s, t, 1.0, 1.0, clip=1e9)[0], s)
    assert torch.allclose(g_kl, g_a, atol=1e-6)


def test_alpha_divergence_picks_the_larger_side_per_sample_and_clips():
    torch.manual_seed(1)
    s, t = torch.randn(8, 5), torch.randn(8, 5) * 3
    _, v_lo = alpha_divergence(s, t, -1.0, -1.0, clip=5.0)
    _, v_hi = alpha_divergence(s, t, 1.0, 1.0, clip=5.0)
    _, v = alpha_divergence(s, t, -1.0, 1.0, clip=5.0)
    assert v >= max(v_lo, v_hi) - 1e-6
    # equal distributions: zero divergence and zero gradient
    z = torch.randn(4, 5, requires_grad=True)
    sur, val = alpha_divergence(z, z.detach(), -1.0, 1.0, clip=5.0)
    assert abs(float(val)) < 1e-6
    g, = torch.autograd.grad(sur, z)
    assert g.abs().max() < 1e-6
    # huge importance ratios are clipped at 5: the gradient stays bounded
    big = torch.tensor([[10.0, -10.0]], requires_grad=True)
    sur, _ = alpha_divergence(big, torch.tensor([[-10.0, 10.0]]), -1.0, 1.0, clip=5.0)
    g, = torch.autograd.grad(sur, big)
    assert torch.isfinite(g).all() and g.abs().max() <= 5.0


@pytest.mark.parametrize("strategy", ["uniform", "fair", "sandwich", "alpha", "progressive"])
def test_loss_decreases_on_a_tiny_problem(strategy):
    space, task = mlp_space(), vector_task()
    archs = [space.max_arch()] + [space.sample(seed=i) for i in range(4)]
    before = [r["loss"] for r in evaluate_many(space, archs, task)]
    cfg = {"steps": 80, "batch_size": 32, "lr": 1e-2, "log_every": 80, "progress": False}
    run = sn.train(space, task, strategy, cfg, device="cpu")
    assert len(run.losses) == 80 and run.step == 80
    after = [r["loss"] for r in evaluate_many(space, archs, task)]
    assert after[0] < before[0], (strategy, before, after)  # the largest arch learned
    assert sum(after) < 0.9 * sum(before), (strategy, before, after)  # and the subnets on average
    assert run.history[-1]["step"] == 80 and run.history[-1]["loss"] < before[0]
