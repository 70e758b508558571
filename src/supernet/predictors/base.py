"""The common predictor interface: ``fit(archs, y)``, ``predict(archs, return_std=False)``."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..registry import Registry


class NotFittedError(RuntimeError):
    """``predict`` was called before ``fit``."""


def as_targets(archs: Sequence[Mapping[str, Any]], y: Sequence[float]) -> np.ndarray:
    """``y`` as a float array with one finite value per arch, or a clear error."""
    y_arr = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y_arr) != len(archs):
        raise ValueError(f"got {len(archs)} archs but {len(y_arr)} targets; need one target per arch")
    if len(y_arr) < 2:
        raise ValueError(f"need at least 2 labelled archs to fit a predictor, got {len(y_arr)}")
    if not np.all(np.isfinite(y_arr)):
        raise ValueError(f"targets must be finite; {int((~np.isfinite(y_arr)).sum())} are nan or inf")
    return y_arr


class Predictor(ABC):
    """A performance predictor over arch dicts (higher predicted value = better, as in the targets).

    A registered predictor class is built as ``cls(choices, n_models=..., seed=...)`` by ``supernet predict``
    (``choices``: ``{decision: options}``); one that can pretrain on free statistics also has
    ``pretrain(archs, stats) -> self`` and a ``mode`` keyword.
    """

    @abstractmethod
    def fit(self, archs: Sequence[Mapping[str, Any]], y: Sequence[float]) -> Predictor:
        """Fit on labelled archs; returns ``self``."""

    @abstractmethod
    def predict(
        self, archs: Sequence[Mapping[str, Any]], return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Predicted values, and with ``return_std=True`` also a per-arch uncertainty (std; 0 if unavailable)."""

    def check_fitted(self, fitted: bool) -> None:
        """Raise `NotFittedError` unless ``fitted``."""
        if not fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(archs, y) first")

    def objective(self, sign: float = 1.0) -> Callable[[Mapping[str, Any]], float]:
        """A callable ``arch -> sign * predicted value`` for search (objective or pre-filter score)."""

        def fn(arch: Mapping[str, Any]) -> float:
            value = float(np.asarray(self.predict([arch]))[0])
            return sign * value if math.isfinite(value) else math.nan

        fn.__name__ = f"predicted_{type(self).__name__}"
        return fn

    def evaluator(self, name: str = "predicted") -> Callable[[Mapping[str, Any]], dict[str, float]]:
        """An ``sn.search`` evaluator ``arch -> {name: prediction, name + "_std": uncertainty}``.

        Use it with an objective such as ``"predicted:max"``.
        """

        def fn(arch: Mapping[str, Any]) -> dict[str, float]:
            mean, std = self.predict([arch], return_std=True)
            return {name: float(mean[0]), f"{name}_std": float(std[0])}

        return fn


PREDICTORS: Registry[type[Predictor]] = Registry("predictor")
"""Every predictor class by name (``gbdt``, ``pretrained_gbdt``); ``supernet predict --predictor`` and
``supernet info`` read it."""


def register_predictor(name: str) -> Callable[[type[Predictor]], type[Predictor]]:
    """Class decorator: register a `Predictor` subclass under ``name`` (its first docstring line describes it)."""

    def check(cls: type[Predictor]) -> type[Predictor]:
        if not (isinstance(cls, type) and issubclass(cls, Predictor)):
            raise TypeError(f"@register_predictor({name!r}) needs a Predictor subclass, got {cls!r}")
        return PREDICTORS.register(name)(cls)

    return check
