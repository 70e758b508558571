"""ShiftNAS (``shiftnas``): cost table, architecture generator, probability shift toward hard bins, exact resume."""

from __future__ import annotations

import itertools
import statistics

import pytest
import torch

import supernet as sn
from supernet.cost import CostTable
from supernet.training.strategies.shiftnas import BinShift, load_generator
from test_train_common import conv_space, image_task, make_context, straight_and_resumed
from tiny_spaces import TINY, tiny_space


def test_cost_table_is_exact_for_additive_costs() -> None:
    # NB201's params are a sum over edges of the chosen op's params: the fit must reproduce them exactly.
    space = sn.spaces.nb201(C=4, N=1)
    table = CostTable.fit(space, lambda: sn.cost.params(space), samples=40, seed=0)
    assert table.r2 > 0.999999
    for seed in range(5):
        arch = space.sample(seed=seed)
        space.set_arch(arch)
        assert table.arch_cost(arch) == pytest.approx(sn.cost.params(space), rel=1e-6)
    low, _ = table.extremes()
    space.set_arch(space.min_arch())
    assert low == pytest.approx(sn.cost.params(space), rel=1e-6)


def test_bins_shift_toward_the_bin_trained_worst_within_the_smoothing_bounds() -> None:
    shift = BinShift(bins=4, momentum=0.5)
    for i in range(200):
        b = i % 4
        x = (b + 0.5) / 4
        loss = 2.0 - x + (0.5 if b == 2 else 0.0)  # bin 2 loses 0.5 more than its cost explains
        shift.record(b, x, loss)
    shift.shift(temperature=0.1, smoothing=0.2)
    p = shift.probs
    assert max(range(4), key=p.__getitem__) == 2
    assert sum(p) == pytest.approx(1.0)
    assert all(0.05 - 1e-12 <= v <= 0.05 + 0.8 + 1e-12 for v in p)  # smoothing / bins .. + (1 - smoothing)


def test_generator_returns_archs_of_the_requested_cost() -> None:
    strat, ctx = make_context(conv_space(), image_task(), "shiftnas", {"steps": 400})
    for step in range(400):
        ctx.step = step
        ctx.space.zero_grad(set_to_none=True)
        strat.step(ctx, ctx.train_batch())
    names = list(strat.options_of)
    reachable = sorted({strat.table_cost(dict(zip(names, c, strict=True)))
                        for c in itertools.product(*strat.options_of.values())})
    errors = []
    for target in reachable:
        arch = strat.generate(target)
        ctx.space.validate(arch)
        errors.append(abs(strat.normalised(strat.table_cost(arch)) - strat.normalised(target)))
    # Stated tolerance (400 steps, 24 archs): half within 5 % of the cost range, every one within 30 %.
    assert statistics.median(errors) <= 0.05 and max(errors) <= 0.30, errors
    with pytest.raises(ValueError, match="outside this space's flops range"):
        strat.generate(strat.high * 2)


def _config(n: int) -> dict:
    return {"steps": 2 * n, "batch_size": 8, "lr": 5e-3, "checkpoint_every": n, "log_every": 1, "progress": False,
            "deterministic": True, "seed": 3, "strategy_options": {"shift_every": 4, "cost_samples": 16}}


def test_shiftnas_resumes_exactly(tmp_path, monkeypatch) -> None:
    n = 6  # shifts at steps 4 and 8: one on each side of the kill at step 6
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "shiftnas", _config(n), kill_at=n)
    sa, sb = straight.strategy, resumed.strategy
    assert sa.shift.probs == sb.shift.probs and sa.shift.residual == sb.shift.residual
    for (k, va), vb in zip(sa.generator.state_dict().items(), sb.generator.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


@pytest.mark.parametrize("name", list(TINY))
def test_shiftnas_trains_every_ready_space(name: str) -> None:
    space = tiny_space(name)
    g = torch.Generator().manual_seed(0)
    if name == "gpt":
        task = sn.training.make_task(sn.data.char_text("abcdefghij " * 40), block_size=8)
    else:
        size = 8 if name in ("nb201", "vit") else 16
        x, y = torch.randn(32, 3, size, size, generator=g), torch.randint(0, 10, (32,), generator=g)
        task = sn.training.ClassificationTask((x[:24], y[:24]), (x[24:], y[24:]))
    run = sn.train(space, task, "shiftnas", {"steps": 4, "batch_size": 4, "progress": False,
                                             "strategy_options": {"cost_samples": 8, "shift_every": 2}}, device="cpu")
    assert len(run.losses) == 4 and all(torch.isfinite(torch.tensor(run.losses)))
    arch = run.strategy.generate((run.strategy.low + run.strategy.high) / 2)
    space.validate(arch)


def test_load_generator_restores_the_runs_generator_and_spreads_over_the_cost_range(tmp_path) -> None:
    run = sn.train(conv_space(0), image_task(), "shiftnas", _config(6), run_dir=tmp_path / "run", device="cpu")
    loaded = load_generator(tmp_path / "run", space=conv_space(1))
    assert (loaded.low, loaded.high) == (run.strategy.low, run.strategy.high)
    for t in (loaded.low, (loaded.low + loaded.high) / 2, loaded.high):
        assert loaded.generate(t) == run.strategy.generate(t)
    expected: list[dict] = []
    for i in range(8):
        arch = run.strategy.generate(loaded.low + (loaded.high - loaded.low) * (i + 0.5) / 8)
        if arch not in expected:
            expected.append(arch)
    assert loaded.spread(8) == expected
    with pytest.raises(ValueError, match="count must be at least 1"):
        loaded.spread(0)


def test_load_generator_refuses_a_run_of_another_strategy(tmp_path) -> None:
    cfg = {"steps": 2, "batch_size": 8, "progress": False, "seed": 0}
    sn.train(conv_space(0), image_task(), "uniform", cfg, run_dir=tmp_path / "u", device="cpu")
    with pytest.raises(ValueError, match="trained with uniform, not shiftnas"):
        load_generator(tmp_path / "u", space=conv_space(0))
