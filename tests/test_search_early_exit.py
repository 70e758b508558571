"""EEEA early exit: a candidate over a params/FLOPs/latency bound is rejected before evaluation (in evolution's
initial population and among its mutated children, and in the potential search's rounds), and the rejections are
counted in the result, pareto.json and the command line's report; bad bounds fail before any evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import supernet as sn
from supernet.cli import main
from supernet.searching import RegularizedEvolutionSampler, arch_key, search
from supernet.searching.report import front_table
from supernet.training import load_run
from test_search_potential import Planted, mlp_space, tiny_task
from tiny_spaces import TINY_GPT_RUN_YAML

torch.set_num_threads(1)


def gpt_space() -> sn.SuperModule:
    return sn.spaces.gpt(
        block_size=8, embed_dims=(8, 16, 24), num_heads=(1, 2), mlp_ratios=(2, 4), depths=(1, 2, 3), head_dim=4
    )


def params_of(space: sn.SuperModule, arch: dict) -> int:
    return sn.cost.params(space.extract(arch))


class Recording:
    """A cheap evaluator that records every arch it is asked to evaluate."""

    def __init__(self, space: sn.SuperModule) -> None:
        self.space, self.archs = space, []

    def __call__(self, arch: dict) -> dict:
        self.archs.append(dict(arch))
        return {"loss": 3.0 - 0.02 * arch["embed_dim"] - 0.1 * arch["depth"]}


def test_evolution_rejects_over_threshold_candidates_before_evaluation(tmp_path: Path) -> None:
    space = gpt_space()
    small, large = params_of(space, space.min_arch()), params_of(space, space.max_arch())
    bound = small + (large - small) // 4
    ev = Recording(space)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    population = 4
    result = search(space, ev, objectives=["loss", "params"], algorithm="evolution", constraints=f"params <= {bound}",
                    trials=12, population_size=population, seed=0, storage=url, out_dir=tmp_path, progress=False)
    # over-threshold candidates are never evaluated
    assert ev.archs and all(params_of(space, a) <= bound for a in ev.archs)
    assert len({arch_key(space, a) for a in ev.archs}) == len(ev.archs) == result.evaluations
    # ... and every rejection is counted: in the result, pareto.json and the front table's title
    study = optuna.load_study(study_name="search", storage=url)
    pruned = [t for t in study.get_trials() if t.state == TrialState.PRUNED]
    assert result.rejected == len(pruned) > 0
    assert all(t.user_attrs["cheap_metrics"]["params"] > bound and not t.user_attrs["feasible"] for t in pruned)
    assert json.loads((tmp_path / "pareto.json").read_text())["rejected"] == result.rejected
    title = front_table(result.to_json()).title
    assert f"{result.rejected} rejected before evaluation" in str(title)
    # rejected both while the initial population fills and among the mutated children
    complete = sorted(t.number for t in study.get_trials() if t.state == TrialState.COMPLETE)
    filled = complete[population - 1]
    assert any(t.number < filled for t in pruned) and any(t.number > filled for t in pruned)
    members = RegularizedEvolutionSampler(population_size=population, sample_size=2).population(study)
    assert all(t.user_attrs["metrics"]["params"] <= bound for t in members)


def test_a_search_without_a_bound_rejects_nothing() -> None:
    space = gpt_space()
    result = search(space, Recording(space), objectives=["loss"], algorithm="evolution", trials=6,
                    population_size=4, progress=False)
    assert result.rejected == 0 and result.to_json()["rejected"] == 0


def test_the_potential_search_rejects_over_threshold_candidates_too() -> None:
    space = mlp_space()
    narrow = {"width": 4, "act": "relu"}
    bound = params_of(space, narrow) + 1  # width 8 is over it
    ev = Planted(space)
    result = search(space, ev, objectives=["acc", "potential"], constraints=f"params <= {bound}", task=tiny_task(),
                    population_size=4, progress=False, potential={"rounds": 3, "steps": 1, "batch_size": 8})
    evaluated = [json.loads(k) for k in ev.calls]
    assert evaluated and all(a["width"] == 4 for a in evaluated)  # width 8 was never evaluated
    assert result.rejected > 0 and all(e["arch"]["width"] == 4 for e in result.entries)


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ("params <= 0", "no arch can satisfy"),
        ("params <= -5", "no arch can satisfy"),
        ("flops < 0", "no arch can satisfy"),
        ("latency <= 0", "no arch can satisfy"),
        ("params <= 10", "smallest arch"),
        ("params <= lots", "metric op number"),
    ],
)
def test_bad_thresholds_fail_before_any_evaluation(constraint: str, message: str) -> None:
    space = gpt_space()
    ev = Recording(space)
    with pytest.raises(ValueError, match=message):
        search(space, ev, objectives=["loss"], algorithm="evolution", constraints=constraint, trials=4,
               progress=False, example_input=torch.zeros(1, 8, dtype=torch.long))
    assert not ev.archs


def test_an_unknown_objective_fails_before_any_evaluation() -> None:
    space = gpt_space()
    ev = Recording(space)
    with pytest.raises(ValueError, match="parms"):
        search(space, ev, objectives=["loss", "parms"], trials=4, progress=False)
    assert not ev.archs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    cfg = root / "cfg.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=root / "run", search="algorithm: evolution, trials: 5"))
    assert main(["train", str(cfg)]) == 0
    return root / "run"


def test_the_command_line_takes_the_bound_and_reports_rejections(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = load_run(run_dir).space
    small, large = params_of(space, space.min_arch()), params_of(space, space.max_arch())
    bound = (small + large) // 2
    args = ["search", str(run_dir), "--algorithm", "evolution", "--constraint", f"params <= {bound}",
            "--trials", "4", "--population-size", "2", "--seed", "1", "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    pareto = json.loads((run_dir / "search" / "pareto.json").read_text())
    assert pareto["rejected"] > 0 and f"rejected before evaluation (over a params/flops/latency constraint): " \
        f"{pareto['rejected']}" in " ".join(out.split())
    assert all(e["metrics"]["params"] <= bound for e in pareto["front"])
    assert main([*args[:5], "params <= 0", *args[6:], "--study-name", "zero"]) != 0
    assert "no arch can satisfy" in " ".join(capsys.readouterr().err.split())
