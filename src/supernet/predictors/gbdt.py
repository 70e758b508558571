"""Gradient-boosted trees on arch encodings (GBDT-NAS, Luo et al. 2020) with an ensemble for uncertainty."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Predictor, as_targets, register_predictor
from .encoding import ArchEncoder

if TYPE_CHECKING:  # LightGBM is slow to import: only when a booster is trained or loaded
    import lightgbm as lgb

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 3,
    "min_data_in_bin": 1,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbosity": -1,
    "num_threads": 1,
    "deterministic": True,
    "force_row_wise": True,
}


def train_booster(
    x: np.ndarray,
    y: np.ndarray,
    params: Mapping[str, Any],
    rounds: int,
    seed: int,
    init_score: np.ndarray | None = None,
) -> lgb.Booster:
    """One LightGBM booster on ``(x, y)`` (``init_score``: a starting prediction to boost from)."""
    import lightgbm as lgb

    p = dict(params)
    p.update(seed=seed, bagging_seed=seed, feature_fraction_seed=seed, data_random_seed=seed)
    data = lgb.Dataset(x, label=y, init_score=init_score, params={"min_data_in_bin": 1, "verbosity": -1})
    return lgb.train(p, data, num_boost_round=rounds)


@register_predictor("gbdt")
class GBDTPredictor(Predictor):
    """GBDT-NAS: LightGBM on the arch encoding; an ensemble over bagging seeds gives the uncertainty.

    LightGBM regression on `ArchEncoder` features; an ensemble of ``n_models`` boosters with different
    bagging seeds gives the mean prediction and its spread (std across members) as the uncertainty.

    Args:
        choices: ``space.choices`` (or any ``{decision: options}``) to derive the encoding from.
        n_models: ensemble size (1 gives no uncertainty: std 0).
        rounds: boosting rounds per member.
        params: LightGBM parameters overriding `DEFAULT_PARAMS` (small-data friendly: few samples per leaf).
        seed: base seed; member ``k`` uses ``seed + k``.
    """

    def __init__(
        self,
        choices: Mapping[str, Sequence[Any]],
        n_models: int = 5,
        rounds: int = 300,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if n_models < 1 or rounds < 1:
            raise ValueError(f"n_models and rounds must be >= 1, got {n_models}, {rounds}")
        self.encoder = ArchEncoder(choices)
        self.n_models, self.rounds, self.seed = n_models, rounds, seed
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.models: list[lgb.Booster] = []

    def features(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The feature matrix of ``archs`` (the encoding; subclasses add columns)."""
        return self.encoder.encode_many(archs)

    def fit(self, archs: Sequence[Mapping[str, Any]], y: Sequence[float]) -> GBDTPredictor:
        y_arr = as_targets(archs, y)
        x = self.features(archs)
        self.models = [train_booster(x, y_arr, self.params, self.rounds, self.seed + k) for k in range(self.n_models)]
        return self

    def _member_predictions(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        self.check_fitted(bool(self.models))
        x = self.features(archs)
        return np.stack([m.predict(x) for m in self.models])

    def predict(
        self, archs: Sequence[Mapping[str, Any]], return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        preds = self._member_predictions(archs)
        mean = preds.mean(0)
        return (mean, preds.std(0)) if return_std else mean
