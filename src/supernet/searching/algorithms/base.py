"""The search-algorithm registry: an algorithm is a function that builds the Optuna sampler proposing archs.

An algorithm takes a `SamplerRequest` (the seed, the budget and population settings of the search, and hooks into
the search space) and returns an Optuna ``BaseSampler``. Its docstring's first line is what ``supernet info`` and
``supernet search --help`` show. To add one, write one file::

    from optuna.samplers import TPESampler
    from supernet.searching import ALGORITHMS

    @ALGORITHMS.register("tpe")
    def tpe(request):
        \"\"\"Tree-structured Parzen estimator (Optuna's TPESampler).\"\"\"
        return TPESampler(seed=request.seed)

Then ``sn.search(..., algorithm="tpe")``, ``supernet search --algorithm tpe`` and ``search: {algorithm: tpe}`` in a
config all work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial

from ...registry import Registry
from ..objectives import Constraint

DEFAULT_ALGORITHM = "nsga2"
# Default evolution / NSGA-II population: a quarter of the trials (so several generations run), at least 4 (a
# tournament needs a few members) and at most 50 (larger populations only slow the search down).
POPULATION_MIN = 4
POPULATION_MAX = 50
POPULATION_FRACTION = 4


def default_population(trials: int) -> int:
    """The default evolution / NSGA-II population for a budget of ``trials`` archs."""
    return max(POPULATION_MIN, min(POPULATION_MAX, trials // POPULATION_FRACTION))


def trial_is_feasible(trial: FrozenTrial) -> bool:
    """Whether a finished trial met every constraint (as recorded by the search; unrecorded counts as feasible)."""
    return bool(trial.user_attrs.get("feasible", True))


@dataclass(frozen=True)
class SamplerRequest:
    """What an algorithm builds its sampler from.

    Attributes:
        seed: the sampler's seed (already shifted per worker and per restart).
        trials: the search's budget of distinct archs.
        population_size / sample_size: what the user asked for (None: the algorithm's default; see `population`).
        constraints: the search's hard constraints (their violations are recorded on every trial).
        screening: whether the sampler will be wrapped to screen several proposals per trial (an algorithm whose
            sampler cannot propose whole archs one at a time should refuse).
        mutable: ``fn(params) -> names`` of the decisions that matter for an arch (mutating others changes nothing).
        is_feasible: ``fn(trial) -> bool`` for finished trials.
    """

    seed: int | None
    trials: int
    population_size: int | None = None
    sample_size: int | None = None
    constraints: Sequence[Constraint] = ()
    screening: bool = False
    mutable: Callable[[Mapping[str, Any]], Sequence[str]] | None = None
    is_feasible: Callable[[FrozenTrial], bool] = trial_is_feasible

    @property
    def population(self) -> int:
        """``population_size``, or `default_population` of the budget."""
        return self.population_size or default_population(self.trials)

    def violations(self, trial: FrozenTrial) -> list[float]:
        """The constraint violations recorded on ``trial`` (zeros where none were recorded)."""
        v = trial.user_attrs.get("violations")
        return list(v) if v is not None else [0.0] * len(self.constraints)


SearchAlgorithm = Callable[[SamplerRequest], BaseSampler]
"""``fn(request) -> sampler``: a search algorithm (see the module docstring)."""

ALGORITHMS: Registry[SearchAlgorithm] = Registry("search algorithm")
"""Every search algorithm by name (``random``, ``evolution``, ``nsga2`` and any registered later)."""
