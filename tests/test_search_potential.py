"""EMARS potential: the definition, planted rounds (the arch whose accuracy rises fastest has the highest potential),
training between rounds on the population only, exact resume, a run directory end to end, and bad settings."""

from __future__ import annotations

import collections
import hashlib
import json
from pathlib import Path

import optuna
import pytest
import torch
from torch import nn

import supernet as sn
from supernet.cli import main
from supernet.files import tensors_metadata
from supernet.searching import arch_key, load_front, parse_objectives, search
from supernet.searching.potential import (
    PotentialOptions,
    RoundTrainer,
    TrainPopulation,
    nsga2_order,
    potential_of,
)
from supernet.training import make_task
from tiny_spaces import TINY_GPT_RUN_YAML

torch.set_num_threads(1)


def mlp_space() -> sn.SuperModule:
    """4 distinct subnets: width {4, 8} x activation {relu, tanh}."""
    torch.manual_seed(0)
    width = sn.Choice([4, 8], name="width")
    net = nn.Sequential(
        sn.Linear(6, width),
        sn.LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, name="act"),
        sn.Linear(width, 2),
    )
    return sn.SuperModule(net)


def tiny_task() -> sn.training.Task:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    return make_task(((x[:48], y[:48]), (x[48:], y[48:])))


# Planted accuracy per arch: (accuracy in its first round, gain per round it is evaluated in).
PLANTED = {
    (4, "relu"): (0.60, 0.00),  # the most accurate at first, flat
    (8, "relu"): (0.30, 0.10),  # rises fastest
    (4, "tanh"): (0.40, 0.05),
    (8, "tanh"): (0.50, -0.02),  # falls
}


class Planted:
    """Accuracy = base + rate x (how many times this arch was evaluated before): one evaluation per round."""

    def __init__(self, space: sn.SuperModule) -> None:
        self.space = space
        self.calls: collections.Counter[str] = collections.Counter()

    def __call__(self, arch: dict) -> dict:
        key = arch_key(self.space, arch)
        base, rate = PLANTED[(arch["width"], arch["act"])]
        acc = base + rate * self.calls[key]
        self.calls[key] += 1
        return {"accuracy": acc, "loss": 1.0 - acc}


class WeightsEvaluator:
    """An accuracy that depends on the supernet's current weights (so resuming with wrong weights shows)."""

    def __init__(self, space: sn.SuperModule, fail_after: int | None = None) -> None:
        self.space, self.fail_after, self.calls = space, fail_after, 0

    def __call__(self, arch: dict) -> dict:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated kill")
        self.calls += 1
        x = torch.linspace(-1, 1, 12).view(2, 6)
        with torch.no_grad():
            out = self.space.extract(arch).eval()(x)
        return {"accuracy": 0.5 + 0.5 * float(torch.tanh(out.sum()))}


# ---------------------------------------------------------------- the definition


def test_potential_is_the_least_squares_slope_over_the_window() -> None:
    assert potential_of([(0, 0.5)]) == 0.0 and potential_of([]) == 0.0  # one round: no slope yet
    assert potential_of([(0, 0.2), (1, 0.5)]) == pytest.approx(0.3)  # two rounds: acc_t - acc_{t-1}
    assert potential_of({0: 0.2, 2: 0.6}) == pytest.approx(0.2)  # per round, across a gap
    assert potential_of([(0, 0.1), (1, 0.2), (2, 0.3)]) == pytest.approx(0.1)
    # least squares: slope of 0.1, 0.4, 0.3 against 0, 1, 2 is ((-1)(-0.167) + 0 + 1(0.033)) / 2 = 0.1
    assert potential_of([(0, 0.1), (1, 0.4), (2, 0.3)]) == pytest.approx(0.1)
    # only the last `window` rounds count: an early drop is forgotten
    history = [(0, 0.9), (1, 0.1), (2, 0.2), (3, 0.3)]
    assert potential_of(history, window=3) == pytest.approx(0.1)
    assert potential_of(history, window=4) < 0
    with pytest.raises(ValueError, match="at least 2"):
        potential_of(history, window=1)
    with pytest.raises(ValueError, match="twice"):
        potential_of([(1, 0.1), (1, 0.2)])


def test_acc_is_accuracy_and_potential_is_maximised() -> None:
    objs = parse_objectives(["acc", "potential"])
    assert [(o.metric, o.direction) for o in objs] == [("accuracy", "maximize"), ("potential", "maximize")]


def test_nsga2_order_feasible_first_then_rank_then_crowding() -> None:
    objs = parse_objectives(["accuracy", "potential"])
    recs = [
        {"metrics": {"accuracy": 0.5, "potential": 0.0}, "feasible": True},  # dominated by 2
        {"metrics": {"accuracy": 0.9, "potential": 0.9}, "feasible": False, "violation": 1.0},
        {"metrics": {"accuracy": 0.6, "potential": 0.1}, "feasible": True},
        {"metrics": {"accuracy": 0.4, "potential": 0.3}, "feasible": True},
    ]
    order = nsga2_order(recs, objs)
    assert set(order[:2]) == {2, 3} and order[2:] == [0, 1]


# ---------------------------------------------------------------- planted rounds


def test_the_arch_whose_accuracy_rises_fastest_has_the_highest_potential() -> None:
    space = mlp_space()
    ev = Planted(space)
    rounds = 4
    result = search(
        space, ev, objectives=["acc", "potential"], task=tiny_task(), population_size=4, seed=0, progress=False,
        potential={"rounds": rounds, "steps": 2, "batch_size": 8},
    )
    # the population is the whole (4-arch) space, so every arch is evaluated once per round, never more
    assert sorted(ev.calls.values()) == [rounds] * 4
    assert result.algorithm == "emars" and result.evaluations == 4 * rounds and result.rejected == 0
    by_arch = {(e["arch"]["width"], e["arch"]["act"]): e["metrics"] for e in result.entries}
    assert set(by_arch) == set(PLANTED) and {e["round"] for e in result.entries} == {rounds - 1}
    for arch, (base, rate) in PLANTED.items():  # linear accuracy: the slope is the planted rate exactly
        assert by_arch[arch]["potential"] == pytest.approx(rate)
        assert by_arch[arch]["accuracy"] == pytest.approx(base + rate * (rounds - 1))
    fastest = max(by_arch, key=lambda a: by_arch[a]["potential"])
    assert fastest == (8, "relu") == max(PLANTED, key=lambda a: PLANTED[a][1])
    assert fastest in {(e["arch"]["width"], e["arch"]["act"]) for e in result.front}
    assert result.to_json()["potential"]["rounds"] == rounds


def test_round_zero_has_no_potential_and_every_round_is_recorded(tmp_path: Path) -> None:
    space = mlp_space()
    url = f"sqlite:///{tmp_path / 'study.db'}"
    result = search(space, Planted(space), objectives=["acc", "potential"], task=tiny_task(), population_size=4,
                    storage=url, progress=False, potential={"rounds": 1, "steps": 1})
    assert len(result.entries) == 4 and all(e["metrics"]["potential"] == 0.0 for e in result.entries)
    result = search(space, Planted(space), objectives=["acc", "potential"], task=tiny_task(), population_size=4,
                    storage=url, progress=False, potential={"rounds": 2, "steps": 1, "batch_size": 8})
    study = optuna.load_study(study_name="search", storage=url)
    rounds = collections.Counter(t.user_attrs["round"] for t in study.get_trials())
    assert rounds == {0: 4, 1: 4}
    assert study.user_attrs["potential.population.1"] and all("key" in t.user_attrs for t in study.get_trials())


def test_start_archs_open_round_zero() -> None:
    space = mlp_space()
    ev = Planted(space)
    start = [{"width": 8, "act": "tanh"}]
    result = search(space, ev, objectives=["acc", "potential"], task=tiny_task(), population_size=2, seed=0,
                    start_archs=start, progress=False, potential={"rounds": 1, "steps": 1})
    assert arch_key(space, start[0]) in ev.calls and len(ev.calls) == 2 == len(result.entries)


def test_training_between_rounds_trains_only_the_population() -> None:
    space = mlp_space()
    before = {k: v.clone() for k, v in space.state_dict().items()}
    trainer = RoundTrainer(space, tiny_task(), {"weight_decay": 0.0}, PotentialOptions(steps=3, batch_size=8),
                           "cpu", seed=0, weights=None)
    trainer.train([{"width": 4, "act": "tanh"}], 1)
    after = space.state_dict()
    first = next(k for k in before if k.endswith("weight"))
    assert not torch.equal(after[first][:4], before[first][:4])  # the population's rows moved
    assert torch.equal(after[first][4:], before[first][4:])  # rows only width 8 uses did not
    assert trainer.round == 1
    strategy = TrainPopulation(archs=[{"width": 4, "act": "tanh"}])
    assert strategy.describe()["options"]["archs"] == [{"width": 4, "act": "tanh"}]


# ---------------------------------------------------------------- resume


def _search(tmp_path: Path, fail_after: int | None = None, rounds: int = 3):
    space = mlp_space()
    ev = WeightsEvaluator(space, fail_after)
    result = search(
        space, ev, objectives=["accuracy", "potential"], task=tiny_task(), population_size=4, seed=3,
        storage=f"sqlite:///{tmp_path / 'study.db'}", out_dir=tmp_path, progress=False,
        potential={"rounds": rounds, "steps": 2, "batch_size": 8, "lr": 0.05},
    )
    return result, ev


def _summary(result) -> list[tuple[str, float, float]]:
    return sorted((e["key"], e["metrics"]["accuracy"], e["metrics"]["potential"]) for e in result.entries)


@pytest.mark.parametrize("kill", ["evaluating", "training"])
def test_a_killed_search_resumes_exactly(tmp_path: Path, kill: str, monkeypatch: pytest.MonkeyPatch) -> None:
    reference, ref_ev = _search(tmp_path / "ref")
    assert ref_ev.calls == 12
    weights = tmp_path / "ref" / "search.potential.safetensors"
    assert tensors_metadata(weights)["round"] == "2"
    assert any(e["metrics"]["potential"] != 0.0 for e in reference.entries)

    run = tmp_path / "killed"
    if kill == "evaluating":  # killed in round 2 after one evaluation (its weights were saved first)
        with pytest.raises(RuntimeError, match="simulated kill"):
            _search(run, fail_after=9)
        assert tensors_metadata(run / "search.potential.safetensors")["round"] == "2"
    else:  # killed while training round 2: the file still holds round 1's weights
        real_train = RoundTrainer.train

        def train_then_die(self: RoundTrainer, population, round_: int) -> None:
            if round_ == 2:
                raise RuntimeError("simulated kill")
            real_train(self, population, round_)

        monkeypatch.setattr(RoundTrainer, "train", train_then_die)
        with pytest.raises(RuntimeError, match="simulated kill"):
            _search(run)
        monkeypatch.setattr(RoundTrainer, "train", real_train)
        assert tensors_metadata(run / "search.potential.safetensors")["round"] == "1"
    resumed, ev = _search(run)  # a fresh supernet, as in a new process: the weights come from the file
    assert ev.calls == (3 if kill == "evaluating" else 4)  # only the archs without a result
    assert [k for k, *_ in _summary(resumed)] == [k for k, *_ in _summary(reference)]
    got = [v for _, *vs in _summary(resumed) for v in vs]
    assert got == pytest.approx([v for _, *vs in _summary(reference) for v in vs], abs=1e-6)
    assert resumed.evaluations == 12
    # asking for more rounds continues from the last one
    more, ev = _search(run, rounds=4)
    assert ev.calls == 4 and {e["round"] for e in more.entries} == {3}


def test_weights_of_another_study_are_refused(tmp_path: Path) -> None:
    _search(tmp_path / "a", rounds=2)
    with pytest.raises(RuntimeError, match="simulated kill"):
        _search(tmp_path / "b", fail_after=5)  # round 1 started: its weights are saved
    (tmp_path / "b" / "search.potential.safetensors").write_bytes(
        (tmp_path / "a" / "search.potential.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="another search"):
        _search(tmp_path / "b")


# ---------------------------------------------------------------- a training run, from the API and the CLI


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    cfg = root / "cfg.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=root / "run", search="algorithm: nsga2, trials: 5"))
    assert main(["train", str(cfg)]) == 0
    return root / "run"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_directory_end_to_end(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_weights = sorted(p for p in run_dir.rglob("*.safetensors") if "search" not in p.parts)
    before = {p: _digest(p) for p in run_weights}
    args = ["search", str(run_dir), "--objectives", "acc,potential,params", "--rounds", "2", "--round-steps", "2",
            "--population-size", "3", "--study-name", "emars", "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    pareto = json.loads((run_dir / "search" / "pareto.json").read_text())
    assert pareto["algorithm"] == "emars" and pareto["evaluations"] == 6
    assert pareto["potential"]["rounds"] == 2 and pareto["potential"]["steps"] == 2
    weights = run_dir / "search" / "emars.potential.safetensors"
    assert pareto["potential"]["weights"] == str(weights) and tensors_metadata(weights)["round"] == "1"
    assert all("potential" in e["metrics"] and 0 <= e["metrics"]["accuracy"] <= 1 for e in pareto["front"])
    assert {p: _digest(p) for p in run_weights} == before  # the run's own weights are never changed
    assert load_front(run_dir)["front"] == pareto["front"]  # what `supernet export` reads
    # rerunning with one more round evaluates only that round's population
    assert main([*args[:5], "3", *args[6:]]) == 0
    pareto = json.loads((run_dir / "search" / "pareto.json").read_text())
    assert pareto["evaluations"] == 9 and tensors_metadata(weights)["round"] == "2"
    capsys.readouterr()


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objectives": ["acc", "potentail"]}, "potentail"),
        ({"potential": {"rounds": 0}}, "rounds"),
        ({"potential": {"window": 1}}, "window"),
        ({"potential": {"steps": -1}}, "steps"),
        ({"potential": {"roundz": 2}}, "roundz"),
        ({"algorithm": "random"}, "leave algorithm"),
        ({"workers": 2, "storage": "sqlite:///:memory:"}, "workers=1"),
        ({"screen": lambda a: 0.0}, "screen"),
        ({"task": None}, "task="),
        ({"population_size": 1}, "at least 2"),
    ],
)
def test_bad_settings_are_refused_before_any_evaluation(kwargs: dict, message: str) -> None:
    space = mlp_space()
    ev = Planted(space)
    args = {"objectives": ["acc", "potential"], "task": tiny_task(), "progress": False,
            "potential": {"rounds": 2, "steps": 1}, **kwargs}
    with pytest.raises(ValueError, match=message):
        search(space, ev, **args)
    assert not ev.calls


def test_potential_needs_an_accuracy(tmp_path: Path) -> None:
    space = mlp_space()
    with pytest.raises(KeyError, match="accuracy"):
        search(space, lambda a: {"loss": 1.0}, objectives=["loss", "potential"], task=tiny_task(), progress=False,
               potential={"rounds": 1, "steps": 1})
