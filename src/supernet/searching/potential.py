"""EMARS potential: a search that interleaves supernet training with evolutionary selection.

An arch's supernet accuracy changes as the supernet trains. EMARS-style search (evolutionary multi-objective
architecture search with a supernet) rewards archs whose accuracy *rises* while the supernet trains on the
population, not only those that are accurate now. ``sn.search(run_dir, objectives=["acc", "potential"])`` runs it.

The search runs in rounds ``r = 0 .. rounds - 1`` over a population of ``P`` archs (``population_size``):

1. Round 0: the population is ``start_archs`` and then random archs; it is evaluated with the run's weights.
2. Round ``r >= 1``: the population is made from round ``r - 1``'s results: the best half survives (NSGA-II order:
   feasible first, then non-dominated rank, then crowding distance), and children, each a survivor (the better of
   two drawn at random) with one active decision changed, fill it up to ``P`` distinct archs. The supernet is then
   trained for ``steps`` steps, each on one arch drawn uniformly from this population (`TrainPopulation`, run by
   ``supernet.training.train``: the run's optimizer and loss, at a constant learning rate), and every member of the
   population is evaluated again, survivors included, on the new weights.
3. After the last round, the result's entries are the last round's population (all measured on the same weights).

**Potential.** With ``(r_1, a_1), ..., (r_n, a_n)`` the rounds in which an arch was evaluated and its supernet
accuracies there (the last ``window`` of them, up to the current round), its potential is the least-squares slope
of accuracy against round index::

    potential = sum_i (r_i - mean(r)) * (a_i - mean(a)) / sum_i (r_i - mean(r))^2

in accuracy per round; with two points it is ``(a_2 - a_1) / (r_2 - r_1)``, and an arch evaluated in one round
only (every arch in round 0, every new child) has potential 0. It is maximised by default.

**Early exit** (EEEA): a candidate that violates a params/FLOPs/latency constraint is rejected before it enters a
population, so it is never trained on or evaluated; each rejection is a PRUNED trial, counted in
``SearchResult.rejected`` like in every other search.

**Record and resume.** The Optuna study is the record: every evaluation is one COMPLETE trial with the user attrs
``round``, ``arch``, ``key`` and ``metrics`` (written whole, in one call), each rejection a PRUNED trial, and each
round's population a study user attr, written once the population is made. The weights trained in round ``r``
are written atomically to ``OUT_DIR/STUDY.potential.safetensors`` (``RUN_DIR/search`` for runs) before any arch
of the round is evaluated. A rerun resumes at the first unfinished round: it loads that file, skips training when
the file already holds that round's weights, and evaluates only the members without a result. The run's own
checkpoints are never changed: ``supernet export`` extracts subnets with the run's weights, not these. Without an
output directory (a `SuperModule` searched with no ``out_dir``) the trained weights are only in that module.
The optimizer starts afresh each round (its moments are not kept); every round's training is seeded from the
search's seed and the round, so a resumed round trains exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import random
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState, create_trial
from pydantic import ConfigDict, Field, PositiveInt

from ..files import read_tensors, tensors_metadata, write_tensors
from ..seeding import restart_seed
from ..space import SuperModule
from ..training import StepOutput, Strategy, StrategyOptions, TrainConfig, TrainContext, train
from ..validation import NoBoolNumbers
from .keys import arch_key
from .objectives import Constraint, Objective, violations
from .pareto import dominates
from .screen import categorical_distributions
from .study import WORKER_ATTR, SearchSetup, worker_identity

WEIGHTS_FORMAT = "supernet-search-weights"
# Study user attrs: the population of each round (``potential.population.R``) and a token that ties a weights file
# to the study that trained it.
POPULATION_ATTR = "potential.population"
TOKEN_ATTR = "potential.token"
# The fraction of a round's population that survives into the next round (the rest are children).
SURVIVOR_FRACTION = 0.5
# Proposals per missing population member before giving up (a small space may have fewer archs than P).
ATTEMPTS_PER_MEMBER = 50


class PotentialOptions(NoBoolNumbers):
    """Settings of a search with the ``potential`` objective (``sn.search(..., potential={...})``).

    Attributes:
        rounds: rounds of (train on the population, evaluate it, select); round 0 evaluates without training.
        steps: supernet training steps before each round after the first.
        window: how many of an arch's latest rounds its potential is fitted over (at least 2).
        lr: the constant learning rate of the training between rounds (None: the training run's ``lr``).
        batch_size: its batch size (None: the training run's).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    rounds: PositiveInt = 5
    steps: PositiveInt = 100
    window: int = Field(3, ge=2)
    lr: float | None = Field(None, gt=0)
    batch_size: PositiveInt | None = None


def potential_of(history: Sequence[tuple[int, float]] | Mapping[int, float], window: int = 3) -> float:
    """EMARS potential: the least-squares slope of accuracy against round over the latest ``window`` rounds.

    Args:
        history: ``(round, accuracy)`` pairs (or ``{round: accuracy}``) of one arch; each round at most once.
        window: how many of the latest rounds to fit (>= 2).

    Returns:
        Accuracy gained per round; 0.0 when the arch was evaluated in fewer than two rounds.

    Raises:
        ValueError: ``window < 2`` or a round given twice.
    """
    if window < 2:
        raise ValueError(f"the potential's window must be at least 2 rounds, got {window}")
    pairs = sorted(history.items() if isinstance(history, Mapping) else history)
    rounds = [r for r, _ in pairs]
    if len(set(rounds)) != len(rounds):
        raise ValueError(f"a round appears twice in the accuracy history {pairs}")
    points = pairs[-window:]
    if len(points) < 2:
        return 0.0
    mx = sum(r for r, _ in points) / len(points)
    my = sum(a for _, a in points) / len(points)
    sxx = sum((r - mx) ** 2 for r, _ in points)
    return sum((r - mx) * (a - my) for r, a in points) / sxx


class PopulationOptions(StrategyOptions):
    """Options of `TrainPopulation`: the archs to train."""

    archs: list[dict[str, Any]] = Field(min_length=1)


class TrainPopulation(Strategy):
    """Each training step trains one arch drawn uniformly from a fixed population (the search's current one).

    Not registered as a training strategy: the interleaved search builds it for each round.
    """

    name = "population"
    Options = PopulationOptions

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        """Forward and backward of one arch of the population, drawn from the shared ``ctx.rng``."""
        x, y = batch
        archs = self.options.archs
        arch = archs[ctx.rng.randrange(len(archs))]
        loss = ctx.loss(ctx.forward(arch, x), y)
        ctx.backward(loss)
        return StepOutput(loss.detach(), [arch])


def round_config(base: TrainConfig | Mapping[str, Any] | None, options: PotentialOptions, seed: int) -> TrainConfig:
    """The `TrainConfig` of one round's training: the run's settings, ``options.steps`` steps at a constant
    learning rate (``options.lr`` or the run's), seeded with ``seed``, logging and writing nothing."""
    data = dict(base.to_json() if isinstance(base, TrainConfig) else base or {})
    data.update(
        steps=options.steps,
        schedule="constant",
        warmup_steps=0,
        lr=options.lr or data.get("lr", TrainConfig().lr),
        min_lr=0.0,
        batch_size=options.batch_size or data.get("batch_size", TrainConfig().batch_size),
        seed=seed,
        strategy="uniform",  # replaced by TrainPopulation; a run's own strategy may not be registered here
        strategy_options={},
        checkpoint_every=0,
        log_every=options.steps,
        eval_every=0,
        progress=False,
        tensorboard=False,
    )
    return TrainConfig.from_dict(data, "the training between search rounds")


class RoundTrainer:
    """Trains the supernet between rounds and keeps the trained weights in a file (written atomically).

    Args:
        space: the supernet (trained in place).
        task: the `supernet.training.Task` to train on.
        config: the training run's config (or None for the defaults); see `round_config`.
        options: the potential settings.
        device: where to train.
        seed: the search's seed (round ``r`` trains with ``restart_seed(seed, 0, r)``).
        weights: the weights file (None: keep the weights only in ``space``).
        token: the study's token, recorded in the file.

    Training goes through ``supernet.training.train`` (no run directory), which seeds the global random generators
    with the round's seed, as every training run does.
    """

    def __init__(
        self,
        space: SuperModule,
        task: Any,
        config: TrainConfig | Mapping[str, Any] | None,
        options: PotentialOptions,
        device: str | torch.device,
        seed: int,
        weights: Path | None,
        token: str = "",
    ) -> None:
        self.space, self.task, self.config, self.options = space, task, config, options
        self.device, self.seed, self.weights, self.token = device, seed, weights, token
        self.round: int | None = None  # the round whose weights the space holds (None: not known yet)

    def train(self, population: Sequence[Mapping[str, Any]], round_: int) -> None:
        """Train on ``population`` for ``options.steps`` steps, then save the weights as those of ``round_``."""
        cfg = round_config(self.config, self.options, restart_seed(self.seed, 0, round_))
        strategy = TrainPopulation(archs=[dict(a) for a in population])
        train(self.space, self.task, strategy, cfg, run_dir=None, device=self.device)
        if self.weights is not None:
            meta = {"format": WEIGHTS_FORMAT, "round": str(round_), "token": self.token}
            write_tensors(self.weights, self.space.state_dict(), metadata=meta)
        self.round = round_

    def saved_round(self) -> int | None:
        """The round of the weights file (None: no file).

        Raises:
            ValueError: the file is not search weights, or belongs to another study.
        """
        if self.weights is None or not self.weights.is_file():
            return None
        meta = tensors_metadata(self.weights)
        if meta.get("format") != WEIGHTS_FORMAT or not str(meta.get("round", "")).isdigit():
            raise ValueError(f"{self.weights} is not a weights file of a search (format {meta.get('format')!r})")
        if meta.get("token") != self.token:
            raise ValueError(
                f"{self.weights} holds weights trained by another search of this name; delete it (or the study) "
                "to start over"
            )
        return int(meta["round"])

    def restore(self) -> int | None:
        """Load the weights file into the space; returns its round (None: no file, nothing loaded)."""
        saved = self.saved_round()
        if saved is None:
            return None
        assert self.weights is not None
        device = next((p.device for p in self.space.parameters()), torch.device("cpu"))
        weights = read_tensors(self.weights, device, "search weights file")
        expected = self.space.state_dict()
        if set(weights) != set(expected) or any(weights[k].shape != v.shape for k, v in expected.items()):
            raise ValueError(f"the weights in {self.weights} do not fit this supernet; delete the file to start over")
        self.space.load_state_dict(weights)
        self.round = saved
        return saved


def nsga2_order(records: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of ``records`` (each with ``metrics``, ``feasible``, ``violation``) best first, as NSGA-II ranks
    survivors: feasible before infeasible (less violation first), then non-dominated rank, then crowding distance
    (larger first), then the order given."""
    feasible = [i for i, r in enumerate(records) if r.get("feasible", True)]
    vecs = {i: [float(records[i]["metrics"][o.metric]) for o in objectives] for i in feasible}
    rank: dict[int, int] = {}
    crowd: dict[int, float] = dict.fromkeys(range(len(records)), 0.0)
    remaining, level = list(feasible), 0
    while remaining:
        front = [i for i in remaining if not any(dominates(vecs[j], vecs[i], objectives) for j in remaining if j != i)]
        for i in front:
            rank[i] = level
        for m in range(len(objectives)):
            ordered = sorted(front, key=lambda i: vecs[i][m])
            lo, hi = vecs[ordered[0]][m], vecs[ordered[-1]][m]
            crowd[ordered[0]] = crowd[ordered[-1]] = math.inf
            for k in range(1, len(ordered) - 1):
                if hi > lo:
                    crowd[ordered[k]] += (vecs[ordered[k + 1]][m] - vecs[ordered[k - 1]][m]) / (hi - lo)
        remaining = [i for i in remaining if i not in rank]
        level += 1

    def key(i: int) -> tuple[int, float, int, float, int]:
        if i in rank:
            return (0, 0.0, rank[i], -crowd[i], i)
        return (1, float(records[i].get("violation", 0.0)), 0, 0.0, i)

    return sorted(range(len(records)), key=key)


class InterleavedSearch:
    """The rounds of an EMARS-style search on one study (see the module docstring).

    Args:
        setup: the trial machinery of this process (space, evaluator, cost model, objectives, constraints).
        study: the study holding the record.
        trainer: trains the supernet between rounds.
        options: the potential settings.
        population_size: P.
        seed: seeds the populations (round ``r`` draws from ``restart_seed(seed, 0, r)``).
        start_archs: archs put first into round 0's population.
    """

    def __init__(
        self,
        setup: SearchSetup,
        study: optuna.Study,
        trainer: RoundTrainer,
        options: PotentialOptions,
        population_size: int,
        seed: int,
        start_archs: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        if population_size < 2:
            raise ValueError(f"the potential search needs a population of at least 2 archs, got {population_size}")
        self.setup, self.study, self.trainer, self.options = setup, study, trainer, options
        self.population_size, self.seed = population_size, seed
        self.start_archs = [dict(a) for a in start_archs]
        self.view = setup.search_space
        self.distributions = categorical_distributions(self.view.encoded)
        self.cheap_constraints: list[Constraint] = [c for c in setup.constraints if c.cheap]
        self.records: dict[tuple[int, str], dict[str, Any]] = {}  # (round, key) -> metrics
        self.rejected: dict[int, int] = {}  # round -> rejections recorded in the study
        self._read_study()

    # ------------------------------------------------------------ the record

    @staticmethod
    def study_token(study: optuna.Study) -> str:
        """The study's token (made and recorded on first use): it ties a weights file to the study."""
        token = study.user_attrs.get(TOKEN_ATTR)
        if not token:
            token = uuid.uuid4().hex
            study.set_user_attr(TOKEN_ATTR, token)
        return str(token)

    def _read_study(self) -> None:
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            r = t.user_attrs.get("round")
            if r is None:
                continue
            if t.state == TrialState.COMPLETE and "metrics" in t.user_attrs:
                self.records[(int(r), t.user_attrs["key"])] = dict(t.user_attrs["metrics"])
            elif t.state == TrialState.PRUNED:
                self.rejected[int(r)] = self.rejected.get(int(r), 0) + 1

    def population(self, round_: int) -> list[dict[str, Any]] | None:
        """Round ``round_``'s population as recorded (None: not made yet)."""
        recorded = self.study.user_attrs.get(f"{POPULATION_ATTR}.{round_}")
        return None if recorded is None else [dict(a) for a in recorded]

    def _complete(self, round_: int) -> bool:
        pop = self.population(round_)
        return pop is not None and all((round_, self.key(a)) in self.records for a in pop)

    def key(self, arch: Mapping[str, Any]) -> str:
        """The arch's canonical key."""
        return arch_key(self.setup.space, arch)

    # ------------------------------------------------------------ the rounds

    def run(self, progress: bool = False) -> None:
        """Run (or resume) every round up to ``options.rounds``."""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            total = self.options.rounds * self.population_size
            done = sum(1 for (r, _) in self.records if r < self.options.rounds)
            bar = tqdm(total=total, initial=min(done, total), desc="search (potential)", unit="eval",
                       dynamic_ncols=True)
        try:
            for r in range(self.options.rounds):
                if self._complete(r):
                    continue
                pop = self.population(r)
                if pop is None:
                    pop = self._make_population(r)
                self._weights_for(r, pop)
                for arch in pop:
                    if (r, self.key(arch)) not in self.records:
                        self._evaluate_in(arch, r)
                        if bar is not None:
                            bar.update()
        finally:
            if bar is not None:
                bar.close()

    def _weights_for(self, round_: int, population: Sequence[Mapping[str, Any]]) -> None:
        """Make the space hold round ``round_``'s weights: loaded from the file, or trained from the last round's."""
        if round_ == 0:
            return
        if self.trainer.round is None:  # the first round this call works on: restore the file
            saved = self.trainer.restore()
            if saved == round_:
                return
            started = any(r == round_ for r, _ in self.records)
            if saved is None and self.trainer.weights is None and started:
                self.trainer.round = round_  # no file kept: the space was trained for this round in this process
                return
            if saved is None and round_ > 1:
                where = self.trainer.weights or "no weights file (pass out_dir=)"
                raise ValueError(
                    f"the study has finished round {round_ - 1} but the weights trained for it are missing "
                    f"({where}); start a new study to search again"
                )
            if saved is not None and saved != round_ - 1:
                raise ValueError(
                    f"{self.trainer.weights} holds the weights of round {saved}, but the study needs those of round "
                    f"{round_ - 1}; delete the file and the study to start over"
                )
        elif self.trainer.round != round_ - 1:
            raise RuntimeError(f"round {round_} needs the weights of round {round_ - 1}, not {self.trainer.round}")
        self.trainer.train(population, round_)

    def _make_population(self, round_: int) -> list[dict[str, Any]]:
        """Make and record round ``round_``'s population (rejections recorded on the way, once)."""
        rng = random.Random(restart_seed(self.seed, 0, round_))
        replayed = self.rejected.get(round_, 0)  # rejections of an earlier, interrupted making of this population
        made: list[dict[str, Any]] = []
        keys: set[str] = set()
        count = 0

        def admit(arch: Mapping[str, Any]) -> None:
            nonlocal count
            arch = self.setup.space.validate(arch)
            key = self.key(arch)
            if key in keys:
                return
            cheap = self.setup.cost_model(arch, self.setup.cheap_metrics(), key=key)
            v = violations(self.cheap_constraints, cheap)
            if any(x > 0 for x in v):
                count += 1
                if count > replayed:
                    self._reject(arch, key, round_, cheap, v)
                return
            keys.add(key)
            made.append(dict(arch))

        if round_ == 0:
            for arch in self.start_archs:
                if len(made) < self.population_size:
                    admit(arch)
            candidates = self._random(rng)
        else:
            survivors = self._survivors(round_ - 1)
            for arch in survivors:
                admit(arch)
            candidates = self._children(survivors, rng)
        for _ in range(ATTEMPTS_PER_MEMBER * self.population_size):
            if len(made) >= self.population_size:
                break
            admit(next(candidates))
        if not made:
            raise ValueError(
                "no arch of the space meets the params/FLOPs/latency constraints "
                f"({', '.join(str(c) for c in self.cheap_constraints)}): every candidate was rejected"
            )
        self.study.set_user_attr(f"{POPULATION_ATTR}.{round_}", made)
        return made

    def _random(self, rng: random.Random) -> Iterator[dict[str, Any]]:
        while True:
            yield self.setup.space.sample(rng=rng)

    def _children(self, parents: Sequence[Mapping[str, Any]], rng: random.Random) -> Iterator[dict[str, Any]]:
        """Mutants of the parents (given best first): the better of two drawn at random, one active decision
        changed; random archs once mutation has long found nothing new (a small space)."""
        tries = 0
        while True:
            tries += 1
            if tries > ATTEMPTS_PER_MEMBER * self.population_size // 2:
                yield self.setup.space.sample(rng=rng)
                continue
            i, j = rng.randrange(len(parents)), rng.randrange(len(parents))
            params = self.view.encode(parents[min(i, j)])
            names = [n for n in self.view.active_params(params) if len(self.view.encoded[n]) > 1]
            if not names:
                yield self.setup.space.sample(rng=rng)
                continue
            name = names[rng.randrange(len(names))]
            params[name] = rng.choice([o for o in self.view.encoded[name] if o != params[name]])
            yield self.view.decode(params)

    def _survivors(self, round_: int) -> list[dict[str, Any]]:
        """The best `SURVIVOR_FRACTION` of round ``round_``'s population, best first."""
        pop = self.population(round_) or []
        recs = []
        for arch in pop:
            metrics = self.records[(round_, self.key(arch))]
            v = violations(self.setup.constraints, metrics)
            recs.append({"metrics": metrics, "feasible": not any(x > 0 for x in v), "violation": sum(v)})
        order = nsga2_order(recs, self.setup.objectives)
        keep = max(1, round(SURVIVOR_FRACTION * self.population_size))
        return [pop[i] for i in order[:keep]]

    def _reject(
        self, arch: Mapping[str, Any], key: str, round_: int, cheap: Mapping[str, float], v: Sequence[float]
    ) -> None:
        failed = [str(c) for c, x in zip(self.cheap_constraints, v, strict=True) if x > 0]
        it = iter(v)
        self.study.add_trial(
            create_trial(
                state=TrialState.PRUNED,
                params=self.view.encode(arch),
                distributions=self.distributions,
                user_attrs={
                    "round": round_,
                    "arch": dict(arch),
                    "key": key,
                    "feasible": False,
                    "cheap_metrics": dict(cheap),
                    "violations": [next(it) if c.cheap else 0.0 for c in self.setup.constraints],
                    "rejected": f"violates {', '.join(failed)} (not evaluated)",
                },
            )
        )
        self.rejected[round_] = self.rejected.get(round_, 0) + 1

    def _evaluate_in(self, arch: Mapping[str, Any], round_: int) -> None:
        """Evaluate ``arch`` on the current weights; record it (metrics with potential) as one COMPLETE trial."""
        key = self.key(arch)
        metrics = self.setup.evaluate(dict(arch))
        if "accuracy" not in metrics:
            raise KeyError(
                f"the potential needs an 'accuracy' from the evaluator, which returned only {', '.join(metrics)}"
            )
        metrics.update(self.setup.cost_model(arch, self.setup.cheap_metrics(), key=key))
        history = {r: m["accuracy"] for (r, k), m in self.records.items() if k == key and r < round_}
        history[round_] = metrics["accuracy"]
        metrics["potential"] = potential_of(history, self.options.window)
        v = violations(self.setup.constraints, metrics)
        values = []
        for o in self.setup.objectives:
            if o.metric not in metrics:
                raise KeyError(f"objective {o.metric!r} is not among the metrics ({', '.join(sorted(metrics))})")
            values.append(float(metrics[o.metric]))
        self.study.add_trial(
            create_trial(
                values=values,
                params=self.view.encode(arch),
                distributions=self.distributions,
                user_attrs={
                    "round": round_,
                    "arch": dict(arch),
                    "key": key,
                    "metrics": metrics,
                    "violations": v,
                    "feasible": not any(x > 0 for x in v),
                    "evaluated": f"{socket.gethostname()}:{os.getpid()}",
                    WORKER_ATTR: worker_identity(),
                },
            )
        )
        self.records[(round_, key)] = metrics

    # ------------------------------------------------------------ what it found

    def entries(self) -> list[dict[str, Any]]:
        """The last finished round's feasible population as result entries ``{"trial", "arch", "key",
        "metrics", "round"}`` (every one measured on the same weights), by trial number."""
        done = [r for r in range(self.options.rounds) if self._complete(r)]
        if not done:
            return []
        last = done[-1]
        out = []
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            a = t.user_attrs
            if a.get("round") == last and a.get("feasible", False) and "metrics" in a:
                out.append({"trial": t.number, "arch": a["arch"], "key": a["key"], "metrics": a["metrics"],
                            "round": last})
        return sorted(out, key=lambda e: e["trial"])


__all__ = [
    "InterleavedSearch",
    "PotentialOptions",
    "RoundTrainer",
    "TrainPopulation",
    "nsga2_order",
    "potential_of",
    "round_config",
]
