"""Latency lookup tables: the additive fit, its holdout check, JSON round trip, use in search and on the CLI."""

from __future__ import annotations

import itertools
import json
import random
import time
from pathlib import Path

import pytest
import torch

import supernet as sn
from supernet import cost
from supernet.cli import main
from supernet.cost import CostTable, latency_table
from supernet.searching import search
from test_cli import TINY_YAML
from test_train_common import mlp_space

COSTS = {"width": {8: 1.0, 16: 3.0}, "op": {"lin": 2.0, "tanh": 0.5, "id": 0.0}, "depth": {0: 0.0, 1: 1.5, 2: 3.0}}


def _fake_latency(space: sn.SuperModule):
    """An additive 'latency' of the active arch (ms), so the fit and its check are exact."""

    def fake(module, example_input, device="cpu", warmup=5, repeats=30, clock="wall") -> float:
        arch = space.arch
        return 1e-3 * (0.25 + sum(COSTS[n][arch[n]] for n in COSTS))

    return fake


def test_latency_table_fits_an_additive_latency_exactly_and_checks_it(monkeypatch) -> None:
    space = mlp_space(0)
    monkeypatch.setattr(cost, "latency", _fake_latency(space))
    table = latency_table(space, torch.randn(1, 8), samples=12, holdout=5, progress=False)
    assert table.unit == "s" and table.r2 > 0.999999
    check = table.meta["holdout"]
    assert check["archs"] == 5 and check["r2"] > 0.999999 and check["max_rel_error"] < 1e-9
    assert table.meta["device"] == "cpu" and table.meta["torch"] == torch.__version__
    for seed in range(5):
        arch = space.sample(seed=seed)
        expected = 1e-3 * (0.25 + sum(COSTS[n][arch[n]] for n in COSTS))
        assert table.arch_cost(arch) == pytest.approx(expected, rel=1e-9)
    low, high = table.extremes()
    assert low == pytest.approx(1e-3 * 1.25) and high == pytest.approx(1e-3 * (0.25 + 3 + 2 + 3))


def test_a_measured_table_predicts_real_latency_roughly() -> None:
    space = mlp_space(0).eval()
    # the CPU clock (one thread, as the test workers run) keeps other processes' load out of this small fit
    table = latency_table(space, torch.randn(1, 8), samples=10, holdout=3, warmup=2, repeats=5, progress=False,
                          clock="cpu")
    assert table.meta["holdout"]["archs"] == 3
    assert all(table.arch_cost(space.sample(seed=s)) > 0 for s in range(3))


def test_cost_tables_round_trip_through_json_and_refuse_unknown_options(tmp_path: Path) -> None:
    space = mlp_space(0)
    table = CostTable.fit(space, lambda: float(sn.cost.params(space)), samples=10, seed=0, unit="params")
    path = table.save(tmp_path / "t.json")
    again = CostTable.load(path)
    assert json.loads(path.read_text())["format"] == "supernet-cost-table"
    for seed in range(4):
        arch = space.sample(seed=seed)
        assert again.arch_cost(arch) == table.arch_cost(arch)
    with pytest.raises(ValueError, match="decision 'width' has no option 12"):
        table.arch_cost({**space.max_arch(), "width": 12})
    old_state = {k: v for k, v in table.state().items() if k != "options"}  # as older checkpoints saved it
    assert CostTable.from_state(old_state, space.choices).arch_cost(space.max_arch()) == table.arch_cost(
        space.max_arch())
    with pytest.raises(ValueError, match="records no options"):
        CostTable.from_state(old_state)


def test_search_predicts_latency_from_a_table_without_timing_subnets(monkeypatch) -> None:
    space = mlp_space(0)
    monkeypatch.setattr(cost, "latency", _fake_latency(space))
    table = latency_table(space, torch.randn(1, 8), samples=12, holdout=0, progress=False)

    def never(*args, **kwargs):
        raise AssertionError("a subnet was timed")

    monkeypatch.setattr(cost, "latency", never)
    result = search(space, lambda arch: {"loss": 1.0 / (1 + sn.cost.params(space.extract(arch)))},
                    objectives=["loss", "latency"], trials=6, algorithm="random", example_input=torch.randn(1, 8),
                    progress=False, latency_table=table)
    for entry in result.entries:
        assert entry["metrics"]["latency"] == pytest.approx(table.arch_cost(entry["arch"]))


def test_cli_measures_a_table_and_searches_with_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_YAML.format(run_dir=run_dir))
    assert main(["train", str(cfg)]) == 0
    assert main(["latency", str(run_dir), "--samples", "4", "--holdout", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "holdout: 2 archs" in out and (run_dir / "latency.json").is_file()
    table = CostTable.load(run_dir / "latency.json")
    assert main(["search", str(run_dir), "--objectives", "loss,latency", "--latency-table",
                 str(run_dir / "latency.json"), "--no-progress", "--device", "cpu"]) == 0
    front = json.loads((run_dir / "search" / "pareto.json").read_text())["front"]
    assert all(e["metrics"]["latency"] == pytest.approx(table.arch_cost(e["arch"])) for e in front)
    assert main(["latency", str(run_dir), "--samples", "0"]) == 2


class _Sleeper(torch.nn.Module):
    """Waits 20 ms per forward without using the CPU: what another process's load looks like to a timer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.02)
        return x


def test_the_cpu_clock_leaves_out_time_spent_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    x = torch.zeros(1)
    assert cost.latency(_Sleeper(), x, warmup=0, repeats=3, clock="wall") >= 0.02
    assert cost.latency(_Sleeper(), x, warmup=0, repeats=3, clock="cpu") < 0.01


def test_the_cpu_clock_is_refused_where_it_is_not_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="clock must be one of"):
        cost.latency(_Sleeper(), x, clock="gpu-time")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    with pytest.raises(ValueError, match="single-threaded"):
        cost.latency(_Sleeper(), x, clock="cpu")
    with pytest.raises(ValueError, match="single-threaded"):  # before any subnet is timed
        latency_table(mlp_space(), torch.zeros(2, 6), clock="cpu", progress=False)


def _gated_space() -> sn.SuperModule:
    """Three blocks under a depth choice, each with its own op choice: block b's op only runs if depth > b."""
    blocks = [sn.LayerChoice({"a": torch.nn.Identity(), "b": torch.nn.Tanh(), "c": torch.nn.ReLU()}, name=f"op{b}")
              for b in range(3)]
    return sn.SuperModule(torch.nn.Sequential(sn.Repeat(blocks, sn.Choice([1, 2, 3], name="depth"))))


OP_COST = {"a": 1.0, "b": 4.0, "c": 9.0}


def _planted_latency(space: sn.SuperModule):
    """A per-layer 'latency': 0.5 plus each *running* block's op cost; a block beyond the depth costs nothing."""

    def fake(module, example_input, device="cpu", warmup=5, repeats=30, clock="wall") -> float:
        arch = space.arch
        return 0.5 + sum(OP_COST[arch[f"op{b}"]] for b in range(arch["depth"]))

    return fake


def test_a_gated_table_counts_a_block_only_where_the_depth_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    space = _gated_space()
    monkeypatch.setattr(cost, "latency", _planted_latency(space))
    table = latency_table(space, torch.zeros(1, 2), samples=8, holdout=0, progress=False)
    assert table.gates == {"op1": {"depth": [2, 3]}, "op2": {"depth": [3]}}
    assert table.meta["gates_exact"] and table.r2 == pytest.approx(1.0)
    archs = [{"depth": d, "op0": x, "op1": y, "op2": z} for d in (1, 2, 3) for x in "abc" for y in "abc" for z in "abc"]
    truth = [0.5 + sum(OP_COST[a[f"op{b}"]] for b in range(a["depth"])) for a in archs]
    assert [table.arch_cost(a) for a in archs] == pytest.approx(truth, abs=1e-9)
    # the mean under independent option probabilities is the exact expectation over all archs
    g = torch.Generator().manual_seed(0)
    probs = {
        n: torch.softmax(torch.randn(len(o), generator=g, dtype=torch.float64), 0) for n, o in space.choices.items()
    }

    def p_of(a: dict) -> float:
        return float(torch.prod(torch.stack([probs[n][list(space.choices[n]).index(v)] for n, v in a.items()])))

    mean, var = table.moments(probs)
    assert float(mean) == pytest.approx(sum(p_of(a) * c for a, c in zip(archs, truth, strict=True)), abs=1e-9)
    assert float(var) >= 0
    low, high = table.extremes()
    assert low <= min(truth) + 1e-9 and high >= max(truth) - 1e-9
    # the gates survive the JSON round trip, so a saved table predicts on its own
    again = CostTable.from_state(json.loads(json.dumps(table.state())))
    assert again.gates == table.gates and again.arch_cost(archs[5]) == pytest.approx(truth[5])


def test_an_additive_table_without_gates_could_not_fit_the_planted_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the gates buy: the same measurements fitted with every decision always counted leave an error."""
    space = _gated_space()
    monkeypatch.setattr(cost, "latency", _planted_latency(space))
    monkeypatch.setattr(cost, "decision_gates", lambda space: {})
    table = latency_table(space, torch.zeros(1, 2), samples=8, holdout=0, progress=False)
    assert table.gates == {} and table.r2 < 0.99


def _planted_product(space: sn.SuperModule):
    """A per-layer 'latency' of kernel^2 x expand for every *active* block (a depthwise conv's cost), plus 1."""
    from supernet.space.activity import active_decisions

    def fake(module, example_input, device="cpu", warmup=5, repeats=30, clock="wall") -> float:
        arch = space.arch
        active = active_decisions(space, arch)
        blocks = {n.rsplit(".", 1)[0] for n in active if n.endswith(".kernel")}
        return 1.0 + sum(arch[f"{b}.kernel"] ** 2 * arch[f"{b}.expand"] for b in blocks)

    return fake


def test_pair_terms_fit_a_layer_cost_that_is_a_product_of_two_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    from tiny_spaces import tiny_space

    space = tiny_space("mobilenet")
    monkeypatch.setattr(cost, "latency", _planted_product(space))
    table = latency_table(space, torch.zeros(1, 3, 32, 32), samples=20, holdout=10, progress=False)
    assert table.pairs and all("*" in k for k in table.pairs) and table.meta["interactions"].endswith("cells")
    assert table.r2 == pytest.approx(1.0) and table.meta["holdout"]["max_rel_error"] < 1e-9
    fresh = [space.sample(seed=100 + s) for s in range(20)]
    truth = []
    for arch in fresh:
        space.set_arch(arch)
        truth.append(_planted_product(space)(None, None))
    assert [table.arch_cost(a) for a in fresh] == pytest.approx(truth, rel=1e-9)
    again = CostTable.from_state(json.loads(json.dumps(table.state())))
    assert again.pairs == table.pairs and again.arch_cost(fresh[0]) == pytest.approx(truth[0])
    # without the pair terms the same costs cannot be fitted exactly
    additive = CostTable.fit(space, lambda: _planted_product(space)(None, None), 40, 0, interactions=False)
    assert not additive.pairs and additive.r2 < 0.999


def test_the_expected_cost_with_pairs_is_the_exact_mean() -> None:
    from tiny_spaces import tiny_space

    space = tiny_space("mobilenet")
    table = CostTable.fit(space, lambda: _planted_product(space)(None, None), 20, 0)
    g = torch.Generator().manual_seed(1)
    probs = {
        n: torch.softmax(torch.randn(len(o), generator=g, dtype=torch.float64), 0) for n, o in space.choices.items()
    }
    mean, _ = table.moments(probs)
    # Monte Carlo over independent draws: the mean within a few standard errors
    rng = torch.Generator().manual_seed(2)
    draws = []
    for _ in range(4000):
        arch = {n: o[int(torch.multinomial(probs[n], 1, generator=rng))] for n, o in space.choices.items()}
        draws.append(table.arch_cost(arch))
    d = torch.tensor(draws, dtype=torch.float64)
    assert abs(float(mean) - float(d.mean())) < 4 * float(d.std()) / len(draws) ** 0.5


def test_too_many_pair_cells_are_dropped_and_said() -> None:
    from tiny_spaces import tiny_space

    table = CostTable.fit(tiny_space("darts"), lambda: 1.0, 4, 0)
    assert table.pairs == {} and table.meta["interactions"].startswith("dropped")


def test_the_default_fit_keeps_every_entry_non_negative_where_least_squares_would_not() -> None:
    """A cost that *drops* when block 0 runs op "a" (any real layer can be cheaper than its alternatives): plain
    least squares spreads it as a negative entry, which a search minimising expected cost would read as "this op is
    cheaper than nothing"; the non-negative fit puts the same costs into non-negative entries, as exactly."""
    space = _gated_space()

    def measure() -> float:
        arch = space.arch
        return 2.0 + sum(OP_COST[arch[f"op{b}"]] for b in range(arch["depth"])) - 0.5 * (arch["op0"] == "a")

    free = CostTable.fit(space, measure, 12, 0, method="lstsq")
    table = CostTable.fit(space, measure, 12, 0, method="nnls")
    assert free.meta["fit"] == "lstsq" and table.meta["fit"] == "nnls"
    default = CostTable.fit(space, measure, 12, 0)
    assert default.meta["fit"] == "monotone" and min(min(t) for t in default.tables.values()) >= 0
    assert min(min(t) for t in free.tables.values()) < 0
    assert min(min(t) for t in table.tables.values()) >= 0 and table.bias >= 0
    archs = [{"depth": d, "op0": x, "op1": y, "op2": z} for d in (1, 2, 3) for x in "abc" for y in "abc" for z in "abc"]
    truth = []
    for a in archs:
        space.set_arch(a)
        truth.append(measure())
    assert [table.arch_cost(a) for a in archs] == pytest.approx(truth, abs=1e-9)
    assert [free.arch_cost(a) for a in archs] == pytest.approx(truth, abs=1e-9)
    assert [default.arch_cost(a) for a in archs] == pytest.approx(truth, abs=1e-9)


def test_the_monotone_fit_is_exact_on_a_monotone_cost_and_never_makes_a_larger_option_cheaper() -> None:
    from tiny_spaces import tiny_space

    space = tiny_space("mobilenet")
    exact = CostTable.fit(space, lambda: _planted_product(space)(None, None), 20, 0)
    assert exact.meta["fit"] == "monotone" and exact.r2 == pytest.approx(1.0)
    fresh = [space.sample(seed=300 + s) for s in range(10)]
    truth = []
    for arch in fresh:
        space.set_arch(arch)
        truth.append(_planted_product(space)(None, None))
    assert [exact.arch_cost(a) for a in fresh] == pytest.approx(truth, rel=1e-7)
    # timing noise as large as the option differences: entries still grow with every numeric option
    rng = random.Random(0)
    noisy = CostTable.fit(space, lambda: _planted_product(space)(None, None) * rng.uniform(0.5, 1.5), 20, 0,
                          method="monotone")

    def increasing(values: list[float], options: list) -> bool:
        order = sorted(range(len(options)), key=lambda i: options[i])
        return all(values[i] <= values[j] + 1e-12 for i, j in itertools.pairwise(order))

    for name, t in noisy.tables.items():
        assert min(t) >= 0 and increasing(t, noisy.options[name])
    for key, t in noisy.pairs.items():
        a, b = cost.pair_names(key)
        na, nb = len(noisy.options[a]), len(noisy.options[b])
        assert all(increasing([t[i * nb + j] for j in range(nb)], noisy.options[b]) for i in range(na))
        assert all(increasing([t[i * nb + j] for i in range(na)], noisy.options[a]) for j in range(nb))
    with pytest.raises(ValueError, match="nnls, monotone, lstsq"):
        CostTable.fit(space, lambda: 1.0, 1, 0, method="ols")
