"""RoBoT (He et al., ICLR 2024): robust Bayesian optimisation of a weighted combination of training-free proxies.

Given proxy scores for a pool of candidate architectures and a budget of ground-truth queries:

1. Each proxy is min-max normalised over the pool (non-finite scores count as the worst, 0).
2. *Bayesian optimisation* (Optuna's GP sampler, or TPE) searches weights ``w in [-1, 1]^M``; a weight vector is
   scored by querying the ground truth of the pool's top architecture under ``sum_m w_m * proxy_m``. Repeated
   picks cost nothing (answers are cached); this phase stops after ``bo_budget`` distinct queries.
3. *Greedy exploitation*: walk down the ranking of the best weights found and query unseen architectures in
   order until the whole budget is spent.

The answer is the best queried architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna


@dataclass
class RobotResult:
    """What `robot` found: the best queried candidate (an index into the pool), its value and the trace."""

    best_index: int
    best_value: float
    weights: dict[str, float]
    queried: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    bo_trials: int = 0


def normalise(scores: np.ndarray) -> np.ndarray:
    """Min-max normalise each column of ``scores`` (n, M) to [0, 1]; non-finite entries become 0 (worst);
    a constant column becomes all zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros_like(scores)
    for j in range(scores.shape[1]):
        col = scores[:, j]
        ok = np.isfinite(col)
        if not ok.any():
            continue
        lo, hi = col[ok].min(), col[ok].max()
        if hi > lo:
            out[ok, j] = (col[ok] - lo) / (hi - lo)
    return out


def _as_matrix(proxies: Mapping[str, Sequence[float]] | np.ndarray, names: Sequence[str] | None) -> tuple:
    if isinstance(proxies, Mapping):
        names = list(proxies)
        cols = [np.asarray(proxies[n], dtype=np.float64) for n in names]
        if len({len(c) for c in cols}) != 1:
            raise ValueError(f"every proxy needs one score per candidate; lengths: {[len(c) for c in cols]}")
        return np.stack(cols, axis=1), names
    mat = np.asarray(proxies, dtype=np.float64)
    if mat.ndim != 2:
        raise ValueError(f"proxy scores must be a {{name: scores}} dict or an (n, M) array, got shape {mat.shape}")
    return mat, list(names) if names is not None else [f"proxy{j}" for j in range(mat.shape[1])]


def robot(
    proxies: Mapping[str, Sequence[float]] | np.ndarray,
    query: Callable[[int], float],
    budget: int,
    bo_budget: int | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    sampler: str = "gp",
    max_bo_trials: int | None = None,
) -> RobotResult:
    """Run RoBoT on a pool of candidates and return the best one found with at most ``budget`` queries.

    Args:
        proxies: ``{proxy name: scores}`` (one score per candidate) or an ``(n, M)`` array with ``names``.
        query: ground truth of candidate ``i`` (higher is better), e.g. a benchmark lookup or a training run;
            called at most once per candidate and at most ``budget`` times in all.
        budget: ground-truth queries in all.
        bo_budget: distinct queries for the BO phase (default ``budget // 2``); the rest go to exploitation.
        seed: seeds the sampler (the whole run is deterministic for a deterministic ``query``).
        sampler: ``"gp"`` (Optuna's GPSampler) or ``"tpe"``.
        max_bo_trials: cap on BO trials, since repeated picks are free (default ``3 * bo_budget + 10``).
    """
    mat, names = _as_matrix(proxies, names)
    n = mat.shape[0]
    if n < 1 or budget < 1:
        raise ValueError(f"need at least one candidate and a budget >= 1, got {n} candidates, budget {budget}")
    bo_budget = budget // 2 if bo_budget is None else bo_budget
    if not 0 <= bo_budget <= budget:
        raise ValueError(f"bo_budget must lie in 0..budget ({budget}), got {bo_budget}")
    norm = normalise(mat)
    cache: dict[int, float] = {}
    order: list[int] = []

    def ask(i: int) -> float:
        if i not in cache:
            cache[i] = float(query(i))
            order.append(i)
        return cache[i]

    if sampler == "gp":
        bo = optuna.samplers.GPSampler(seed=seed, n_startup_trials=min(5, max(bo_budget, 1)))
    elif sampler == "tpe":
        bo = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, max(bo_budget, 1)))
    else:
        raise ValueError(f"sampler must be 'gp' or 'tpe', got {sampler!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=bo)

    def weights_of(params: Mapping[str, float]) -> np.ndarray:
        return np.array([params[f"w{j}"] for j in range(len(names))])

    trials = 0
    cap = 3 * bo_budget + 10 if max_bo_trials is None else max_bo_trials
    while len(order) < bo_budget and trials < cap:
        trial = study.ask()
        w = np.array([trial.suggest_float(f"w{j}", -1.0, 1.0) for j in range(len(names))])
        top = int(np.argmax(norm @ w))
        study.tell(trial, ask(top))
        trials += 1

    if trials:
        best_w = weights_of(study.best_trial.params)
    else:
        best_w = np.ones(len(names))
    ranking = np.argsort(-(norm @ best_w), kind="stable")
    for i in ranking:
        if len(order) >= min(budget, n):
            break
        ask(int(i))
    best = max(order, key=lambda i: (cache[i], -order.index(i)))
    return RobotResult(
        best_index=best,
        best_value=cache[best],
        weights={name: float(v) for name, v in zip(names, best_w, strict=True)},
        queried=list(order),
        values=[cache[i] for i in order],
        bo_trials=trials,
    )


def weighted_ranking(proxies: Mapping[str, Sequence[float]], weights: Mapping[str, float]) -> np.ndarray:
    """Candidate indices, best first, under ``sum_m weights[m] * normalised proxy_m`` (e.g. RoBoT's weights)."""
    mat, names = _as_matrix({k: proxies[k] for k in weights}, None)
    w = np.array([weights[k] for k in names])
    return np.argsort(-(normalise(mat) @ w), kind="stable")


__all__ = ["RobotResult", "normalise", "robot", "weighted_ranking"]
