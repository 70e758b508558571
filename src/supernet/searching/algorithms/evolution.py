"""Regularized (aging) evolution (Real et al., 2019) with our `RegularizedEvolutionSampler`."""

from __future__ import annotations

from optuna.samplers import BaseSampler

from ..evolution import RegularizedEvolutionSampler
from .base import ALGORITHMS, SamplerRequest

# Default tournament size: a quarter of the population, at least 2 (a tournament of one is random selection).
TOURNAMENT_FRACTION = 4
TOURNAMENT_MIN = 2


@ALGORITHMS.register("evolution")
def evolution(request: SamplerRequest) -> BaseSampler:
    """Regularized (aging) evolution: mutate one active decision of a tournament winner; the oldest archs age out."""
    p = request.population
    s = request.sample_size or max(TOURNAMENT_MIN, min(p, p // TOURNAMENT_FRACTION or 1))
    return RegularizedEvolutionSampler(
        population_size=p,
        sample_size=min(s, p),
        seed=request.seed,
        is_feasible=request.is_feasible,
        mutable=request.mutable,
    )
