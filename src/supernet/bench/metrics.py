"""Ranking metrics between predicted scores and ground truth, with seeded bootstrap confidence intervals.

All functions take ``predicted`` and ``true`` as equal-length sequences of numbers for the same archs, where
larger is better for both (pass ``-loss`` or ``-error`` as predicted when smaller is better).

- `kendall_tau`: Kendall's tau-b (``scipy.stats.kendalltau``).
- `sparse_kendall_tau`: Kendall's tau-b after rounding the ground truth to ``decimals`` (default 1: 0.1 points
  of accuracy), so archs whose true accuracies differ by less than the benchmark's noise count as ties
  (Yu et al., "How to Train Your Super-Net", 2021).
- `spearman_rho`: Spearman's rank correlation (``scipy.stats.spearmanr``).
- `top_k_overlap`: how many of the ``k`` best archs by prediction are among the ``k`` best by ground truth.
- `precision_at_k`: that overlap divided by ``k`` (``k`` may be a fraction of the archs, e.g. 0.1 = top 10 %).
- `regret`: true metric of the best arch minus that of the arch ranked first by prediction (0 = it picked the
  best). Ties in the prediction are broken by the worst true value (a pessimistic, order-free choice).

`bootstrap_ci` resamples archs with replacement (paired) and returns the percentile interval; `ranking_report`
computes every metric with its interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def _stats() -> ModuleType:
    """``scipy.stats``, imported on first use (it is slow to import and `import supernet` should stay fast)."""
    from scipy import stats

    return stats


def _pair(predicted: ArrayLike, true: ArrayLike, min_len: int = 2) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predicted, dtype=float).ravel()
    t = np.asarray(true, dtype=float).ravel()
    if p.shape != t.shape:
        raise ValueError(f"predicted and true must have the same length, got {p.size} and {t.size}")
    if p.size < min_len:
        raise ValueError(f"need at least {min_len} archs to compare rankings, got {p.size}")
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("predicted and true must be finite numbers (found NaN or inf)")
    return p, t


def _quiet(fn: Callable[[], float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs: scipy warns and returns NaN, which we pass on
        return float(fn())


def kendall_tau(predicted: ArrayLike, true: ArrayLike) -> float:
    """Kendall's tau-b between the two rankings (NaN if either input is constant)."""
    p, t = _pair(predicted, true)
    return _quiet(lambda: _stats().kendalltau(p, t).statistic)


def sparse_kendall_tau(predicted: ArrayLike, true: ArrayLike, decimals: int = 1) -> float:
    """Kendall's tau-b with the ground truth rounded to ``decimals`` places first (1: 0.1-point ties)."""
    p, t = _pair(predicted, true)
    return _quiet(lambda: _stats().kendalltau(p, np.round(t, decimals)).statistic)


def spearman_rho(predicted: ArrayLike, true: ArrayLike) -> float:
    """Spearman's rank correlation (NaN if either input is constant)."""
    p, t = _pair(predicted, true)
    return _quiet(lambda: _stats().spearmanr(p, t).statistic)


def resolve_k(k: int | float, n: int) -> int:
    """``k`` as a count: an int is used as is; a float in (0, 1] is a fraction of ``n`` (rounded up)."""
    if isinstance(k, bool):
        raise ValueError(f"k must be an int >= 1 or a fraction in (0, 1], got {k!r}")
    if isinstance(k, (int, np.integer)):
        if not 1 <= k <= n:
            raise ValueError(f"k={k} must lie in 1..{n} (the number of archs)")
        return int(k)
    if isinstance(k, float) and 0.0 < k <= 1.0:
        return max(1, math.ceil(k * n - 1e-9))
    raise ValueError(f"k must be an int >= 1 or a fraction in (0, 1], got {k!r}")


def _top(values: np.ndarray, k: int) -> np.ndarray:
    # Stable order on -values: ties keep their input order, so the result is deterministic.
    return np.argsort(-values, kind="stable")[:k]


def top_k_overlap(predicted: ArrayLike, true: ArrayLike, k: int | float) -> int:
    """How many of the top-``k`` archs by prediction are also in the top-``k`` by ground truth."""
    p, t = _pair(predicted, true, min_len=1)
    kk = resolve_k(k, p.size)
    return int(np.intersect1d(_top(p, kk), _top(t, kk)).size)


def precision_at_k(predicted: ArrayLike, true: ArrayLike, k: int | float) -> float:
    """Fraction of the top-``k`` archs by prediction that are in the top-``k`` by ground truth (P@k)."""
    p, _ = _pair(predicted, true, min_len=1)
    return top_k_overlap(predicted, true, k) / resolve_k(k, p.size)


def regret(predicted: ArrayLike, true: ArrayLike) -> float:
    """``max(true) - true[arch ranked first by prediction]`` (>= 0; ties in the prediction: the worst one)."""
    p, t = _pair(predicted, true, min_len=1)
    first = np.flatnonzero(p == p.max())
    return float(t.max() - t[first].min())


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap percentile interval (``low``/``high`` NaN when it could not be formed)."""

    value: float
    low: float
    high: float
    confidence: float

    def to_dict(self) -> dict[str, float]:
        """JSON-able ``{"value", "low", "high", "confidence"}``."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_ci(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    predicted: ArrayLike,
    true: ArrayLike,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Point estimate and paired percentile bootstrap interval of ``statistic(predicted, true)``.

    Archs are resampled with replacement (the same indices for both arrays); resamples where the statistic is
    undefined (NaN, e.g. a constant resample) are dropped. Seeded: the same inputs give the same interval.
    """
    p, t = _pair(predicted, true, min_len=1)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    value = float(statistic(p, t))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, p.size, size=(n_resamples, p.size))
    samples = np.array([statistic(p[i], t[i]) for i in idx], dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return Estimate(value, math.nan, math.nan, confidence)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(samples, [alpha, 1.0 - alpha])
    return Estimate(value, float(low), float(high), confidence)


def _tau_fast(p: np.ndarray, t: np.ndarray) -> float:
    return _quiet(lambda: _stats().kendalltau(p, t).statistic)


def ranking_report(
    predicted: ArrayLike,
    true: ArrayLike,
    ks: Sequence[int | float] = (0.1,),
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    decimals: int = 1,
) -> dict[str, Estimate]:
    """Every ranking metric with its bootstrap interval.

    Keys: ``kendall_tau``, ``sparse_kendall_tau``, ``spearman_rho``, ``regret``, and for each ``k`` in ``ks``
    ``precision@<k>`` and ``top<k>_overlap`` (``k`` written as given, e.g. ``precision@0.1``).
    """
    p, t = _pair(predicted, true)
    fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "kendall_tau": _tau_fast,
        "sparse_kendall_tau": lambda a, b: _tau_fast(a, np.round(b, decimals)),
        "spearman_rho": lambda a, b: _quiet(lambda: _stats().spearmanr(a, b).statistic),
        "regret": regret,
    }
    for k in ks:
        resolve_k(k, p.size)  # fail early on a bad k
        fns[f"precision@{k}"] = lambda a, b, k=k: precision_at_k(a, b, k)
        fns[f"top{k}_overlap"] = lambda a, b, k=k: float(top_k_overlap(a, b, k))
    return {
        name: bootstrap_ci(fn, p, t, n_resamples=n_resamples, confidence=confidence, seed=seed)
        for name, fn in fns.items()
    }


def relative_improvement(found: float, random: ArrayLike) -> float:
    """``100 * (found - mean(random)) / mean(random)`` ("NAS Evaluation is Frustratingly Hard", Yang et al.).

    ``found`` is the metric of the arch a search returned, ``random`` the same metric for randomly drawn archs.
    """
    r = np.asarray(random, dtype=float).ravel()
    if r.size == 0 or not np.isfinite(r).all():
        raise ValueError("relative improvement needs at least one finite metric value of a random arch")
    mean = float(r.mean())
    if mean == 0.0:
        raise ValueError("the mean metric of the random archs is 0; relative improvement is undefined")
    return 100.0 * (float(found) - mean) / mean
