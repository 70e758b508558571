"""Cheap pre-filtering of candidates: draw several, evaluate only the one a cheap score likes best.

A proxy (``sn.proxies.objective``) or a fitted predictor (``predictor.objective()``) scores each candidate arch;
the wrapped sampler proposes ``candidates`` archs per trial and the trial evaluates the best-scoring one on the
supernet. With evolution this is "score children with the predictor, evaluate only the most promising".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial

Screen = Callable[[dict[str, Any]], float]


class ScreenedSampler(BaseSampler):
    """Wraps a sampler that proposes whole archs (random or evolution) and keeps the best of several proposals.

    Args:
        base: the sampler drawing proposals (each call of its sampling methods draws a fresh one).
        distributions: the full categorical search space ``{param: CategoricalDistribution}``.
        decode: Optuna params -> arch dict (what ``screen`` takes).
        screen: ``fn(arch) -> score``; higher is better.
        candidates: proposals per trial (1 = no screening).
    """

    def __init__(
        self,
        base: BaseSampler,
        distributions: Mapping[str, BaseDistribution],
        decode: Callable[[Mapping[str, Any]], dict[str, Any]],
        screen: Screen,
        candidates: int,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"screen_candidates must be >= 1, got {candidates}")
        self.base, self.distributions, self.decode = base, dict(distributions), decode
        self.screen, self.candidates = screen, candidates

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.distributions)

    def _proposal(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        space = self.base.infer_relative_search_space(study, trial)
        params = dict(self.base.sample_relative(study, trial, space)) if space else {}
        for name, dist in self.distributions.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, dist)
        return params

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        proposals = [self._proposal(study, trial) for _ in range(self.candidates)]
        if len(proposals) == 1:
            return proposals[0]
        # A score that is NaN (a proxy that does not apply) ranks last instead of poisoning the comparison.
        scores = [float(self.screen(self.decode(p))) for p in proposals]
        scores = [-math.inf if math.isnan(v) else v for v in scores]
        return proposals[max(range(len(proposals)), key=scores.__getitem__)]

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)


def categorical_distributions(encoded: Mapping[str, tuple[Any, ...]]) -> dict[str, CategoricalDistribution]:
    """``{param: CategoricalDistribution(options)}`` for a search space's encoded options."""
    return {name: CategoricalDistribution(list(options)) for name, options in encoded.items()}
