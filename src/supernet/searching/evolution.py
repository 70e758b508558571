"""Regularized (aging) evolution as an Optuna sampler (Real et al., 2019).

Optuna has no aging evolution, so this is a small custom `BaseSampler`: once ``population_size`` feasible trials
are complete, each new trial copies the tournament winner among ``sample_size`` random members of the population
(the most recent ``population_size`` feasible trials; older ones "age out") and changes one decision to another
option. Before that, archs are drawn uniformly at random. With several objectives the winner is a random
non-dominated member of the tournament.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState


class RegularizedEvolutionSampler(BaseSampler):
    """Aging evolution over categorical params.

    Args:
        population_size: P, how many of the most recent feasible trials form the population.
        sample_size: S, tournament size.
        seed: random seed.
        is_feasible: ``fn(trial) -> bool``; infeasible trials never become parents (default: all feasible).
        mutable: ``fn(params) -> names`` of the params worth mutating (e.g. only active decisions);
            default: every categorical param with more than one option.
    """

    def __init__(
        self,
        population_size: int = 20,
        sample_size: int = 5,
        seed: int | None = None,
        is_feasible: Callable[[FrozenTrial], bool] | None = None,
        mutable: Callable[[dict[str, Any]], Sequence[str]] | None = None,
    ) -> None:
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ValueError(
                f"need population_size >= 2 and 1 <= sample_size <= population_size, "
                f"got population_size={population_size}, sample_size={sample_size}"
            )
        self.population_size = population_size
        self.sample_size = sample_size
        self._rng = np.random.RandomState(seed)
        self._random = RandomSampler(seed=seed)
        self._space = IntersectionSearchSpace()
        self._is_feasible = is_feasible or (lambda t: True)
        self._mutable = mutable

    def reseed_rng(self) -> None:
        self._rng = np.random.RandomState()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {k: d for k, d in self._space.calculate(study).items() if isinstance(d, CategoricalDistribution)}

    def population(self, study: Study) -> list[FrozenTrial]:
        """The current population: the most recent ``population_size`` complete, feasible trials."""
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if self._is_feasible(t)]
        done.sort(key=lambda t: t.number)
        return done[-self.population_size :]

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        population = self.population(study)
        if len(population) < self.population_size:
            return {}
        picks = self._rng.choice(len(population), size=self.sample_size, replace=False)
        tournament = [population[i] for i in picks]
        front = [t for t in tournament if not any(_dominates(study, o, t) for o in tournament if o is not t)]
        parent = front[int(self._rng.randint(len(front)))]
        child = {k: parent.params[k] for k in search_space if k in parent.params}
        if len(child) != len(search_space):
            return {}
        names = list(self._mutable(dict(child)) if self._mutable else child)
        names = [n for n in names if n in search_space and len(search_space[n].choices) > 1]  # type: ignore[attr-defined]
        if not names:
            return child
        name = names[int(self._rng.randint(len(names)))]
        options = [o for o in search_space[name].choices if o != child[name]]  # type: ignore[attr-defined]
        child[name] = options[int(self._rng.randint(len(options)))]
        return child

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def _dominates(study: Study, a: FrozenTrial, b: FrozenTrial) -> bool:
    """Whether trial ``a`` Pareto-dominates ``b`` under the study's directions."""
    signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    va = [s * v for s, v in zip(signs, a.values, strict=True)]
    vb = [s * v for s, v in zip(signs, b.values, strict=True)]
    return all(x <= y for x, y in zip(va, vb, strict=True)) and any(x < y for x, y in zip(va, vb, strict=True))


__all__ = ["RegularizedEvolutionSampler"]
