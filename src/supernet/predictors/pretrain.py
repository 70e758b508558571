"""Predictor pretraining on free statistics before fitting on a few accuracies (the FBNetV3 idea).

FBNetV3 (Dai et al. 2021) pretrains its accuracy predictor on architecture statistics that cost nothing to
compute (FLOPs, parameters) and then fine-tunes it on the few measured accuracies. With gradient-boosted trees:

1. `pretrain`: one booster per free statistic (params, FLOPs, proxy scores, ...), trained on *many* unlabelled
   archs to predict that statistic (z-scored) from the arch encoding. These boosters learn which decisions
   drive size and trainability.
2. `fit` on the few labelled archs, in one of two modes:

   - ``"boost"`` (default): a ridge regression of the accuracy on the pretrained predictions gives a prior
     ``a + b . s(arch)``; LightGBM then *continues boosting* from that prior (it is passed as ``init_score``),
     learning only the residual; how many rounds (0 = the prior alone) is chosen by k-fold cross-validation on
     the labelled archs, since a few labels overfit quickly. This is continued boosting from the pretrained model,
     rescaled to the accuracy's units (plain ``init_model`` continuation would keep the statistic's scale).
   - ``"feature"``: the pretrained predictions are appended to the encoding as extra features and the ensemble
     is trained from scratch on them.

``predict`` needs only the arch: the free statistics are *predicted*, so unseen candidates need no proxy run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import as_targets, register_predictor
from .gbdt import GBDTPredictor, train_booster

if TYPE_CHECKING:
    import lightgbm as lgb


def _rankdata(values: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata  # scipy.stats is slow to import: only when pretraining

    return np.asarray(rankdata(values), dtype=np.float64)


@register_predictor("pretrained_gbdt")
class PretrainedGBDTPredictor(GBDTPredictor):
    """GBDT pretrained on free statistics (params, FLOPs, proxy scores) before fitting the labels (FBNetV3 idea).

    A `GBDTPredictor` pretrained on free statistics (see the module docstring for the two modes).

    Args:
        choices: ``space.choices``.
        mode: ``"boost"`` (prior from pretrained predictions, then continued boosting) or ``"feature"``.
        pretrain_rounds: boosting rounds of each statistic's booster.
        finetune_rounds: the most residual rounds per ensemble member in ``"boost"`` mode; the number used is
            picked from ``0, 10, 30, 100, ..., finetune_rounds`` by cross-validation (``rounds`` in ``"feature"`` mode).
        ridge: L2 penalty of the prior's regression (``"boost"`` mode), on z-scored predictions.
        Other arguments as in `GBDTPredictor`.
    """

    def __init__(
        self,
        choices: Mapping[str, Sequence[Any]],
        mode: str = "boost",
        n_models: int = 5,
        rounds: int = 300,
        pretrain_rounds: int = 300,
        finetune_rounds: int = 100,
        ridge: float = 1.0,
        params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(choices, n_models=n_models, rounds=rounds, params=params, seed=seed)
        if mode not in ("boost", "feature"):
            raise ValueError(f"mode must be 'boost' or 'feature', got {mode!r}")
        self.mode, self.pretrain_rounds, self.finetune_rounds, self.ridge = (
            mode,
            pretrain_rounds,
            finetune_rounds,
            ridge,
        )
        self.stat_names: list[str] = []
        self.stat_models: list[lgb.Booster] = []
        self.prior: np.ndarray | None = None
        self.rounds_used = finetune_rounds

    def pretrain(
        self, archs: Sequence[Mapping[str, Any]], stats: Mapping[str, Sequence[float]]
    ) -> PretrainedGBDTPredictor:
        """Learn to predict each free statistic in ``stats`` (``{name: one value per arch}``) from the encoding.

        Non-finite values (e.g. a proxy's ``-inf`` for a disconnected arch) are replaced by the statistic's
        smallest finite value. Each statistic is rank-transformed and scaled to zero mean and unit variance first,
        so heavy-tailed statistics (FLOPs, synflow) do not swamp the trees.
        """
        if not stats:
            raise ValueError("pretrain needs at least one free statistic, e.g. {'flops': [...], 'params': [...]}")
        x = self.encoder.encode_many(archs)
        self.stat_names, self.stat_models = [], []
        for name, values in stats.items():
            v = np.asarray(values, dtype=np.float64)
            if len(v) != len(archs):
                raise ValueError(f"statistic {name!r} has {len(v)} values for {len(archs)} archs")
            ok = np.isfinite(v)
            if ok.sum() < 2:
                raise ValueError(f"statistic {name!r} has fewer than 2 finite values")
            r = _rankdata(np.where(ok, v, v[ok].min()))
            sd = r.std()
            z = (r - r.mean()) / (sd if sd > 0 else 1.0)
            self.stat_models.append(train_booster(x, z, self.params, self.pretrain_rounds, self.seed))
            self.stat_names.append(name)
        return self

    def predicted_stats(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``(n, number of statistics)`` pretrained predictions (z-scored units)."""
        if not self.stat_models:
            raise RuntimeError("call pretrain(archs, stats) before fit/predict")
        x = self.encoder.encode_many(archs)
        return np.stack([m.predict(x) for m in self.stat_models], axis=1)

    def features(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        x = self.encoder.encode_many(archs)
        return np.concatenate([x, self.predicted_stats(archs)], axis=1) if self.mode == "feature" else x

    def _prior(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        s = self.predicted_stats(archs)
        return self.prior[0] + s @ self.prior[1:]

    def fit(self, archs: Sequence[Mapping[str, Any]], y: Sequence[float]) -> PretrainedGBDTPredictor:
        y_arr = as_targets(archs, y)
        if self.mode == "feature":
            return super().fit(archs, y_arr)
        s = self.predicted_stats(archs)
        self.rounds_used = self._cv_rounds(s, y_arr, archs)
        self.prior = self._fit_prior(s, y_arr)
        init = self._prior(archs)
        x = self.features(archs)
        self.models = [
            train_booster(x, y_arr, self.params, max(self.rounds_used, 1), self.seed + k, init_score=init)
            for k in range(self.n_models)
        ]
        return self

    def _fit_prior(self, s: np.ndarray, y: np.ndarray) -> np.ndarray:
        s_mean = s.mean(0)
        sc = s - s_mean
        coef = np.linalg.solve(sc.T @ sc + self.ridge * np.eye(s.shape[1]), sc.T @ (y - y.mean()))
        return np.concatenate([[y.mean() - s_mean @ coef], coef])

    def _cv_rounds(self, s: np.ndarray, y: np.ndarray, archs: Sequence[Mapping[str, Any]]) -> int:
        """Residual rounds with the lowest k-fold squared error (0 = trust the rescaled pretrained prior)."""
        grid = sorted({0, *(r for r in (10, 30, 100, 300, 1000) if r < self.finetune_rounds), self.finetune_rounds})
        n = len(y)
        folds = min(5, n)
        if n < 6:
            return 0
        x = self.encoder.encode_many(archs)
        order = np.random.default_rng(self.seed).permutation(n)
        errors = np.zeros(len(grid))
        for f in range(folds):
            test = order[f::folds]
            train = np.setdiff1d(order, test)
            prior = self._fit_prior(s[train], y[train])
            base_tr, base_te = prior[0] + s[train] @ prior[1:], prior[0] + s[test] @ prior[1:]
            booster = train_booster(x[train], y[train], self.params, grid[-1], self.seed, init_score=base_tr)
            for g, r in enumerate(grid):
                pred = base_te + (booster.predict(x[test], num_iteration=r) if r > 0 else 0.0)
                errors[g] += float(((pred - y[test]) ** 2).sum())
        return int(grid[int(np.argmin(errors))])

    def predict(
        self, archs: Sequence[Mapping[str, Any]], return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if self.mode == "feature":
            return super().predict(archs, return_std=return_std)
        if self.rounds_used == 0:
            prior = self._prior(archs)
            return (prior, np.zeros_like(prior)) if return_std else prior
        preds = self._member_predictions(archs) + self._prior(archs)[None, :]
        mean = preds.mean(0)
        return (mean, preds.std(0)) if return_std else mean
