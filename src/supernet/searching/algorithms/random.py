"""Random search: the baseline every other algorithm must beat."""

from __future__ import annotations

from optuna.samplers import BaseSampler, RandomSampler

from .base import ALGORITHMS, SamplerRequest


@ALGORITHMS.register("random")
def random_search(request: SamplerRequest) -> BaseSampler:
    """Random search: every decision drawn uniformly and independently per trial."""
    return RandomSampler(seed=request.seed)
