"""NSGA-II (Deb et al., 2002), Optuna's implementation, with constrained domination."""

from __future__ import annotations

from optuna.samplers import BaseSampler, NSGAIISampler
from optuna.trial import Trial

from .base import ALGORITHMS, SamplerRequest


@ALGORITHMS.register("nsga2")
def nsga2(request: SamplerRequest) -> BaseSampler:
    """NSGA-II: non-dominated sorting and crowding distance; a feasible arch always beats an infeasible one."""
    if request.screening:
        raise ValueError(
            "screening (screen=...) works with algorithms that propose one whole arch at a time, such as 'random' "
            "and 'evolution', not 'nsga2' (it breeds each generation from the last)"
        )
    p = request.population
    # Constraint violations are recorded on each trial (Trial.set_constraint, Optuna >= 5), which NSGA-II reads
    # for its constrained domination. Older Optuna reads them through constraints_func.
    if request.constraints and not hasattr(Trial, "set_constraint"):
        return NSGAIISampler(population_size=p, seed=request.seed, constraints_func=request.violations)
    return NSGAIISampler(population_size=p, seed=request.seed)
