"""Rank correlations used to score predictors and proxies (non-finite pairs are dropped)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _clean(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"need two equally long score lists, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists over the pairs where both are finite (nan if < 2 remain)."""
    from scipy import stats  # slow to import: only when a correlation is computed

    x, y = _clean(a, b)
    return float(stats.kendalltau(x, y).statistic) if len(x) >= 2 else float("nan")


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho between two score lists over the pairs where both are finite (nan if < 2 remain)."""
    from scipy import stats

    x, y = _clean(a, b)
    return float(stats.spearmanr(x, y).statistic) if len(x) >= 2 else float("nan")
