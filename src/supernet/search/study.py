"""The Optuna study behind a search: storage, samplers, and the objective with its no-duplicate protocol.

Persistence: every trial's arch, canonical key, metrics and constraint violations are Optuna user attrs in the
study's storage (SQLite file by default), so a killed search resumes from the storage with nothing lost.

No arch is evaluated twice, also with several workers on one storage (a "declare, then decide" protocol):
1. A trial samples an arch, computes its canonical key (`keys.arch_key`) and at once *declares* it as its user
   attr ``key`` (visible to every worker). Cheap constraints are checked next; an infeasible arch is pruned
   without being evaluated (every trial with that key is equally infeasible).
2. It then reads the RUNNING and COMPLETE trials. If one with the same key is COMPLETE, its metrics are reused.
   If a RUNNING trial with a lower number has not declared its key yet, it waits (that takes milliseconds).
   Otherwise the owner of the key is the lowest-numbered RUNNING trial with that key: the owner evaluates, the
   others wait until it completes (then reuse its metrics) or fails (then ownership passes to the next one).
Trial numbers are assigned atomically by the storage when a trial is created, and a trial decides only once
every lower-numbered running trial has declared its key, so all trials of one key agree on a single owner.
Trials of a killed process stay RUNNING; with heartbeats (on by default for RDB storages) they are marked
failed after a grace period, so nobody waits on them for ever.
"""

from __future__ import annotations

import functools
import math
import os
import socket
import sqlite3
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState

from ..space import SuperModule
from .costs import CostModel
from .evolution import RegularizedEvolutionSampler
from .keys import active_decisions, arch_key
from .objectives import Constraint, Objective, violations
from .screen import Screen, ScreenedSampler, categorical_distributions

STRATEGIES = ("random", "evolution", "nsga2")
_PRIMITIVE = (type(None), bool, int, float, str)
Evaluator = Callable[[dict[str, Any]], Mapping[str, float] | float]


def make_storage(url: str | None, heartbeat: bool = True) -> BaseStorage:
    """An Optuna storage: in memory for ``None``, else an RDB URL (``sqlite:///path.db``, ``postgresql://...``).

    SQLite files are opened in WAL mode with ``synchronous=NORMAL`` (commits without an fsync each: a trial
    makes ~20 small writes) and wait up to 120 s on a locked database, so several local workers can share one
    file. WAL needs a local disk; across machines use a server database (PostgreSQL) instead.
    """
    if url is None:
        return InMemoryStorage()
    hb = {"heartbeat_interval": 10, "grace_period": 40} if heartbeat else {}
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            engine_kwargs["creator"] = functools.partial(_sqlite_connect, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, **hb)


def _sqlite_connect(path: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=120, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


@dataclass
class SearchSpace:
    """The categorical Optuna view of a supernet's decisions (options outside Optuna's types go by index)."""

    space: SuperModule
    encoded: dict[str, tuple[Any, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.encoded = {}
        for name, options in self.space.choices.items():
            primitive = all(isinstance(o, _PRIMITIVE) for o in options)
            self.encoded[name] = tuple(options) if primitive else tuple(range(len(options)))

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """Sample an arch through ``trial`` (one categorical param per decision)."""
        return self.decode({n: trial.suggest_categorical(n, list(c)) for n, c in self.encoded.items()})

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna params -> arch dict."""
        out = {}
        for name, options in self.space.choices.items():
            value = params[name]
            out[name] = value if self.encoded[name] is options or self.encoded[name] == options else options[value]
        return out

    def active_params(self, params: Mapping[str, Any]) -> list[str]:
        """The params (decisions) that matter under ``params`` (mutating the others changes nothing)."""
        active = active_decisions(self.space, self.decode(params))
        return [n for n in params if n in active]


@dataclass
class SearchSetup:
    """Everything one worker needs to run trials."""

    space: SuperModule
    evaluator: Evaluator | None
    objectives: list[Objective]
    constraints: list[Constraint]
    cost_model: CostModel
    strategy: str = "nsga2"
    population_size: int | None = None
    sample_size: int | None = None
    poll_interval: float = 0.02
    screen: Screen | None = None
    screen_candidates: int = 1

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown search strategy {self.strategy!r}; expected one of {', '.join(STRATEGIES)}")
        self.search_space = SearchSpace(self.space)
        expensive = [o.metric for o in self.objectives if not o.cheap] + [
            c.metric for c in self.constraints if not c.cheap
        ]
        if expensive and self.evaluator is None:
            raise ValueError(f"metrics {sorted(set(expensive))} need an evaluator (or search a training run)")

    @property
    def directions(self) -> list[str]:
        """Optuna directions of the objectives."""
        return [o.direction for o in self.objectives]

    def cheap_metrics(self) -> list[str]:
        """The architecture-only metrics any objective or constraint needs (params always included)."""
        names = (
            ["params"]
            + [o.metric for o in self.objectives if o.cheap]
            + [c.metric for c in self.constraints if c.cheap]
        )
        return list(dict.fromkeys(names))

    def check_feasible_exists(self) -> None:
        """Fail early when even the smallest arch violates a params/FLOPs constraint (those grow with size)."""
        monotone = [c for c in self.constraints if c.metric in ("params", "flops") and c.op in ("<=", "<")]
        if not monotone:
            return
        small = self.space.min_arch()
        metrics = self.cost_model(small, [c.metric for c in monotone])
        for c in monotone:
            if not c.satisfied(metrics[c.metric]):
                raise ValueError(
                    f"no arch can satisfy '{c}': the smallest arch already has {c.metric} = {metrics[c.metric]:,.0f}"
                )

    def make_sampler(self, seed: int | None, trials: int) -> BaseSampler:
        """The Optuna sampler for ``strategy``, screening several proposals per trial when ``screen`` is set."""
        sampler = self._base_sampler(seed, trials)
        if self.screen is None or self.screen_candidates <= 1:
            return sampler
        if self.strategy == "nsga2":
            raise ValueError("screening (screen=...) works with the 'random' and 'evolution' strategies, not 'nsga2'")
        distributions = categorical_distributions(self.search_space.encoded)
        return ScreenedSampler(sampler, distributions, self.search_space.decode, self.screen, self.screen_candidates)

    def _base_sampler(self, seed: int | None, trials: int) -> BaseSampler:
        if self.strategy == "random":
            return RandomSampler(seed=seed)
        if self.strategy == "evolution":
            p = self.population_size or max(4, min(50, trials // 4))
            s = self.sample_size or max(2, min(p, p // 4 or 1))
            return RegularizedEvolutionSampler(
                population_size=p,
                sample_size=min(s, p),
                seed=seed,
                is_feasible=lambda t: bool(t.user_attrs.get("feasible", True)),
                mutable=self.search_space.active_params,
            )
        p = self.population_size or max(4, min(50, trials // 4))
        # Constraint violations are recorded on each trial (Trial.set_constraint, Optuna >= 5), which NSGA-II
        # reads for its constrained domination: a feasible arch always beats an infeasible one.
        if self.constraints and not hasattr(Trial, "set_constraint"):  # older Optuna: constraints_func
            return NSGAIISampler(population_size=p, seed=seed, constraints_func=self._violations_of)
        return NSGAIISampler(population_size=p, seed=seed)

    def _violations_of(self, trial: FrozenTrial) -> list[float]:
        v = trial.user_attrs.get("violations")
        return list(v) if v is not None else [0.0] * len(self.constraints)

    def objective(self, trial: Trial) -> tuple[float, ...] | float:
        """Sample, check cheap constraints, claim-or-reuse, evaluate, record."""
        arch = self.search_space.suggest(trial)
        key = arch_key(self.space, arch)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("key", key)  # the declaration
        cheap = self.cost_model(arch, self.cheap_metrics(), key=key)
        cheap_constraints = [c for c in self.constraints if c.cheap]
        cheap_v = violations(cheap_constraints, cheap)
        if any(v > 0 for v in cheap_v):
            it = iter(cheap_v)
            trial.set_user_attr("violations", [next(it) if c.cheap else 0.0 for c in self.constraints])
            trial.set_user_attr("feasible", False)
            trial.set_user_attr("cheap_metrics", cheap)
            failed = [str(c) for c, v in zip(cheap_constraints, cheap_v, strict=True) if v > 0]
            raise optuna.TrialPruned(f"violates {', '.join(failed)} (not evaluated)")
        reused = self._claim(trial, key)
        if reused is None:
            metrics = self._evaluate(arch)
            metrics.update(cheap)
            trial.set_user_attr("evaluated", f"{socket.gethostname()}:{os.getpid()}")  # which worker
        else:
            metrics, source = reused
            trial.set_user_attr("reused_from", source)
        trial.set_user_attr("metrics", metrics)
        v = violations(self.constraints, metrics)
        trial.set_user_attr("violations", v)
        if hasattr(trial, "set_constraint"):
            for c, x in zip(self.constraints, v, strict=True):
                trial.set_constraint(str(c), x)
        trial.set_user_attr("feasible", not any(x > 0 for x in v))
        values = []
        for o in self.objectives:
            if o.metric not in metrics:
                raise KeyError(
                    f"objective {o.metric!r} is not among the evaluator's metrics ({', '.join(sorted(metrics))})"
                )
            values.append(float(metrics[o.metric]))
        return tuple(values) if len(values) > 1 else values[0]

    def _evaluate(self, arch: dict[str, Any]) -> dict[str, float]:
        if self.evaluator is None:
            return {}
        result = self.evaluator(dict(arch))
        if isinstance(result, Mapping):
            out = {str(k): float(v) for k, v in result.items() if isinstance(v, (int, float))}
        else:
            names = [o.metric for o in self.objectives if not o.cheap]
            if len(names) != 1:
                raise TypeError("the evaluator returned one number but several metrics are needed; return a dict")
            out = {names[0]: float(result)}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"the evaluator returned non-finite {bad} for arch {arch}")
        return out

    def _claim(self, trial: Trial, key: str) -> tuple[dict[str, float], int] | None:
        """None when this trial owns ``key`` and must evaluate; else (metrics, trial number) to reuse."""
        study = trial.study
        while True:
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            same = [t for t in trials if t.user_attrs.get("key") == key]
            done = [t for t in same if t.state == TrialState.COMPLETE and "metrics" in t.user_attrs]
            if done:
                src = min(done, key=lambda t: t.number)
                return dict(src.user_attrs["metrics"]), src.number
            undeclared = [
                t
                for t in trials
                if t.state == TrialState.RUNNING and t.number < trial.number and "key" not in t.user_attrs
            ]
            running = [t.number for t in same if t.state == TrialState.RUNNING]
            if not undeclared and min(running, default=trial.number) == trial.number:
                return None
            time.sleep(self.poll_interval)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)  # a no-op without heartbeats


def budget_status(study: optuna.Study) -> tuple[int, int, int]:
    """(distinct archs with results, trials actually evaluated, all trials) in the study."""
    trials = study.get_trials(deepcopy=False)
    keys = {t.user_attrs.get("key") for t in trials if t.state == TrialState.COMPLETE}
    evaluated = sum(1 for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("evaluated"))
    return len(keys), evaluated, len(trials)


class BudgetCallback:
    """Stops the study once ``trials`` distinct archs have results (or ``max_total`` trials were made)."""

    def __init__(self, trials: int, max_total: int, on_trial: Callable[[int], None] | None = None) -> None:
        self.trials, self.max_total, self.on_trial = trials, max_total, on_trial

    def done(self, study: optuna.Study) -> bool:
        """Whether the budget is spent."""
        distinct, _, total = budget_status(study)
        if self.on_trial is not None:
            self.on_trial(distinct)
        return distinct >= self.trials or total >= self.max_total

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.done(study):
            study.stop()


def open_study(
    storage: BaseStorage,
    study_name: str,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    sampler: BaseSampler | None = None,
) -> optuna.Study:
    """Create or load the study; a loaded study must have been made with the same objectives and constraints."""
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        sampler=sampler,
        directions=[o.direction for o in objectives],
        load_if_exists=True,
    )
    signature = {
        "objectives": [f"{o.metric}:{o.direction}" for o in objectives],
        "constraints": [str(c) for c in constraints],
    }
    recorded = study.user_attrs.get("signature")
    if recorded is None:
        study.set_user_attr("signature", signature)
    elif recorded != signature:
        raise ValueError(
            f"study {study_name!r} was made with {recorded}, not {signature}; "
            "resume with the same objectives and constraints or choose another study name"
        )
    return study
