"""Search: constraints for every algorithm, arch keys, aging evolution, resume without duplicate evaluations."""

from __future__ import annotations

import collections
import json

import optuna
import pytest

import supernet as sn
from supernet.searching import (
    RegularizedEvolutionSampler,
    active_decisions,
    arch_key,
    parse_constraints,
    parse_objectives,
    search,
)
from supernet.searching.pareto import pareto_front


def tiny_space() -> sn.SuperModule:
    return sn.spaces.gpt(
        block_size=8, embed_dims=(8, 16, 24), num_heads=(1, 2), mlp_ratios=(2, 4), depths=(1, 2, 3), head_dim=4
    )


class Synthetic:
    """A cheap evaluator: bigger archs get a lower 'loss'; records every call."""

    def __init__(self, space: sn.SuperModule, fail_after: int | None = None) -> None:
        self.space, self.fail_after = space, fail_after
        self.calls: collections.Counter[str] = collections.Counter()

    def __call__(self, arch: dict) -> dict:
        if self.fail_after is not None and sum(self.calls.values()) >= self.fail_after:
            raise RuntimeError("simulated kill")
        self.calls[arch_key(self.space, arch)] += 1
        heads = sum(v for k, v in arch.items() if k.endswith("heads"))
        return {"loss": 3.0 - 0.02 * arch["embed_dim"] - 0.1 * arch["depth"] + 0.01 * heads}


def test_parse_constraints_and_objectives() -> None:
    (c,) = parse_constraints("params <= 1.5M")
    assert (c.metric, c.op, c.bound) == ("params", "<=", 1.5e6)
    assert c.satisfied(1.5e6) and not c.satisfied(1.5e6 + 1) and c.violation(2e6) == pytest.approx(5e5)
    assert [str(x) for x in parse_constraints({"flops": 1e9})] == ["flops <= 1e+09"]
    assert parse_constraints(["accuracy >= 0.9"])[0].satisfied(0.95)
    with pytest.raises(ValueError, match="metric op number"):
        parse_constraints("params is small")
    objs = parse_objectives(["loss", "accuracy", "energy:min"])
    assert [o.direction for o in objs] == ["minimize", "maximize", "minimize"]
    with pytest.raises(ValueError, match="energy"):
        parse_objectives(["energy"])


def test_arch_key_ignores_inactive_decisions() -> None:
    space = tiny_space()
    arch = space.max_arch() | {"depth": 1}
    other = dict(arch) | {"layers.2.heads": 1, "layers.1.mlp_ratio": 2}
    assert "layers.1.heads" not in active_decisions(space, arch)
    assert arch_key(space, arch) == arch_key(space, other)
    assert arch_key(space, arch) != arch_key(space, arch | {"layers.0.heads": 1})
    assert json.loads(arch_key(space, arch))["depth"] == 1


@pytest.mark.parametrize("algorithm", ["random", "evolution", "nsga2"])
def test_every_algorithm_honours_constraints(algorithm: str) -> None:
    space = tiny_space()
    budget = 6000
    ev = Synthetic(space)
    result = search(
        space,
        ev,
        objectives=["loss", "params"],
        algorithm=algorithm,
        constraints=f"params <= {budget}",
        trials=14,
        seed=1,
        population_size=4,
        progress=False,
    )
    assert result.front and len(result.entries) == 14
    for e in result.entries:
        assert e["metrics"]["params"] <= budget
        space.set_arch(e["arch"])
        assert sn.cost.params(space) <= budget
    # infeasible archs are never evaluated on the supernet, and nothing is evaluated twice
    for key in ev.calls:
        arch = json.loads(key) | {k: v for k, v in space.min_arch().items() if k not in json.loads(key)}
        space.set_arch(arch)
        assert sn.cost.params(space) <= budget
    assert max(ev.calls.values()) == 1 and result.evaluations == len(ev.calls)
    front = pareto_front(result.entries, result.objectives)
    assert [e["key"] for e in front] == [e["key"] for e in result.front]


def test_expensive_constraint_filters_the_front() -> None:
    space = tiny_space()
    result = search(
        space,
        Synthetic(space),
        objectives=["params"],
        constraints=["loss <= 2.4"],
        algorithm="random",
        trials=12,
        progress=False,
    )
    assert result.entries and all(e["metrics"]["loss"] <= 2.4 for e in result.entries)
    assert result.best["metrics"]["params"] == min(e["metrics"]["params"] for e in result.entries)


def test_impossible_constraint_fails_early() -> None:
    with pytest.raises(ValueError, match="smallest arch"):
        search(tiny_space(), lambda a: 1.0, objectives=["loss"], constraints="params <= 10", trials=3, progress=False)


def test_evolution_children_differ_in_one_active_decision() -> None:
    space = tiny_space()
    result = search(
        space,
        Synthetic(space),
        objectives=["loss"],
        algorithm="evolution",
        trials=20,
        population_size=5,
        sample_size=2,
        seed=3,
        progress=False,
    )
    assert len(result.entries) == 20
    keys = [json.loads(e["key"]) for e in result.entries]
    for i, child in enumerate(keys[5:], start=5):
        # each child is one active-decision mutation of an earlier arch (depth changes add/remove decisions)
        assert any(_one_step(parent, child) for parent in keys[:i]), child


def _one_step(a: dict, b: dict) -> bool:
    """Whether b is a one-decision mutation of a (a depth change also adds or drops per-layer decisions)."""
    diff = [k for k in set(a) & set(b) if a[k] != b[k]]
    return diff == ["depth"] or (len(diff) == 1 and set(a) == set(b))


def test_evolution_sampler_validates_sizes() -> None:
    with pytest.raises(ValueError, match="population_size"):
        RegularizedEvolutionSampler(population_size=1)
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolutionSampler(population_size=4, sample_size=5)


@pytest.mark.parametrize("algorithm", ["random", "nsga2"])
def test_resume_after_kill_evaluates_nothing_twice(tmp_path, algorithm: str) -> None:
    space = tiny_space()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    killed = Synthetic(space, fail_after=6)
    with pytest.raises(RuntimeError, match="simulated kill"):
        search(space, killed, algorithm=algorithm, trials=15, storage=storage, population_size=4, progress=False)
    assert sum(killed.calls.values()) == 6
    resumed = Synthetic(space)
    result = search(
        space,
        resumed,
        algorithm=algorithm,
        trials=15,
        storage=storage,
        population_size=4,
        out_dir=tmp_path / "out",
        progress=False,
    )
    total = killed.calls + resumed.calls
    assert max(total.values()) == 1, "an arch was evaluated twice"
    assert not set(killed.calls) & set(resumed.calls)
    assert len(result.entries) == 15 and sum(total.values()) == 15 == result.evaluations
    study = optuna.load_study(study_name="search", storage=storage)
    assert any(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    for name in ("pareto.json", "pareto.csv", "trials.csv", "pareto.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "pareto.json").read_text())
    assert [e["key"] for e in saved["front"]] == [e["key"] for e in result.front]
    # a finished study resumes with nothing left to do
    again = Synthetic(space)
    search(space, again, algorithm=algorithm, trials=15, storage=storage, progress=False)
    assert not again.calls


def test_resume_with_other_objectives_is_refused(tmp_path) -> None:
    space = tiny_space()
    storage = f"sqlite:///{tmp_path / 's.db'}"
    search(space, Synthetic(space), objectives=["loss"], trials=2, storage=storage, progress=False)
    with pytest.raises(ValueError, match="made with"):
        search(space, Synthetic(space), objectives=["loss", "params"], trials=2, storage=storage, progress=False)


@pytest.mark.parametrize("algorithm", ["random", "evolution", "nsga2"])
def test_start_archs_are_evaluated_first_and_queued_once(tmp_path, algorithm: str) -> None:
    space = tiny_space()
    start = [space.max_arch(), space.min_arch(), space.sample(seed=5)]
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = Synthetic(space)
    search(space, first, algorithm=algorithm, trials=5, storage=storage, population_size=4, progress=False,
           start_archs=start)
    study = optuna.load_study(study_name="search", storage=storage)
    ordered = sorted(study.trials, key=lambda t: t.number)
    assert [t.user_attrs["key"] for t in ordered[:3]] == [arch_key(space, a) for a in start]
    # resuming with more trials does not queue them again
    again = Synthetic(space)
    search(space, again, algorithm=algorithm, trials=8, storage=storage, population_size=4, progress=False,
           start_archs=start)
    assert not set(again.calls) & set(first.calls)
    keys = [t.user_attrs.get("key") for t in optuna.load_study(study_name="search", storage=storage).trials]
    assert all(keys.count(arch_key(space, a)) == 1 for a in start)


def test_a_start_arch_outside_the_space_is_refused_before_any_trial() -> None:
    space = tiny_space()
    calls = Synthetic(space)
    bad = dict(space.max_arch(), embed_dim=7)
    with pytest.raises(ValueError, match=r"start_archs\[1\] is not an arch of this space.*embed_dim"):
        search(space, calls, trials=3, progress=False, start_archs=[space.max_arch(), bad])
    assert not calls.calls
