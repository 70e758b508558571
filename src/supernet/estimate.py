"""``sn.estimate``: one score per architecture from several signals (supernet accuracy, proxies, FLOPs/params).

A *signal* is any callable ``arch -> float`` where higher means better: a trained supernet's accuracy
(`supernet_signal`), a training-free proxy (`proxy_signal`), or a cost (`cost_signal`: bigger nets of a space tend to
be more accurate, which is why FLOPs alone is a strong baseline). An `Estimator` combines them in one of two modes:

* ``"rank"`` (label-free): the log-rank sum of AZ-NAS / VKDNW (`supernet.proxies.aznas.az_aggregate`),
  ``score(a) = sum_s log(r_s(a) / N)``, where ``r_s(a)`` is the rank (1 = lowest) of the arch's value of signal
  ``s`` among ``N`` reference archs (average ranks for ties). For an arch of the reference set this is exactly the
  log-rank sum over that set; other archs are placed among the reference values by the same formula, so one arch
  at a time can be scored (a search's objective or screen). A NaN value counts as ``-inf``.
* ``"gbdt"`` (few labels): LightGBM on the signal values as features, fitted to ``k`` labelled archs (e.g. from
  ``supernet groundtruth`` or a benchmark table), an ensemble over bagging seeds giving the uncertainty. The arch's
  own encoding (`encoding_signals`: options and operation counts) can join the signals as further features.

An estimator plugs into `supernet.searching.search` as an objective (``evaluator=est.evaluator()``) or as the
pre-filter (``screen=est.objective()``). It saves to JSON (reference values and LightGBM text models, no pickle);
the signal callables are given again when loading.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .files import FileModel, read_json, write_text
from .predictors.base import NotFittedError
from .proxies.aznas import az_aggregate

Signal = Callable[[Mapping[str, Any]], float]
"""``arch -> float``, higher is better (negate a loss)."""

Mode = Literal["rank", "gbdt"]
FORMAT = "supernet-estimator"
VERSION = 1


class EstimatorFile(FileModel):
    """A saved `Estimator`: mode, signal names, reference values (rank) or boosters (gbdt)."""

    format: Literal["supernet-estimator"]
    version: int
    mode: Literal["rank", "gbdt"]
    signals: list[str]
    reference: list[list[float | None]] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    n_models: int = 5
    rounds: int = 300
    seed: int = 0


class Estimator:
    """One score per arch (higher is better) from several signals, label-free or from a few labelled archs.

    Args:
        signals: ``{name: fn(arch) -> float}``, higher is better for every signal.
        mode: ``"rank"`` (log-rank sum over reference archs, no labels) or ``"gbdt"`` (LightGBM on the signal
            values, fitted to labelled archs).
        n_models / rounds / seed: the gbdt ensemble (members differ by bagging seed).

    Signal values are computed once per distinct arch and cached (`values`).
    """

    def __init__(
        self, signals: Mapping[str, Signal], mode: Mode = "rank", n_models: int = 5, rounds: int = 300, seed: int = 0
    ) -> None:
        if not signals:
            raise ValueError("an estimator needs at least one signal")
        if mode not in ("rank", "gbdt"):
            raise ValueError(f"mode must be 'rank' or 'gbdt', got {mode!r}")
        if n_models < 1 or rounds < 1:
            raise ValueError(f"n_models and rounds must be >= 1, got {n_models}, {rounds}")
        self.signals = dict(signals)
        self.mode: Mode = mode
        self.n_models, self.rounds, self.seed = n_models, rounds, seed
        self.reference: np.ndarray | None = None  # (N, S) signal values of the reference archs (rank mode)
        self.models: list[Any] = []  # LightGBM boosters (gbdt mode)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def names(self) -> list[str]:
        """The signal names, in column order."""
        return list(self.signals)

    def values(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The ``(len(archs), signals)`` matrix of signal values (each distinct arch computed once)."""
        rows = []
        for arch in archs:
            key = json.dumps(dict(arch), sort_keys=True, default=str)
            if key not in self._cache:
                self._cache[key] = np.array([float(fn(arch)) for fn in self.signals.values()], dtype=np.float64)
            rows.append(self._cache[key])
        return np.stack(rows) if rows else np.zeros((0, len(self.signals)))

    def fit(self, archs: Sequence[Mapping[str, Any]], labels: Sequence[float] | None = None) -> Estimator:
        """Rank mode: ``archs`` become the reference (no labels). Gbdt mode: fit to ``labels`` (higher is better).

        Raises:
            ValueError: labels missing in gbdt mode or given in rank mode, or lengths that differ.
        """
        if not archs:
            raise ValueError("fit needs at least one arch")
        x = self.values(archs)
        if self.mode == "rank":
            if labels is not None:
                raise ValueError("a rank estimator takes no labels (use mode='gbdt' to learn from labelled archs)")
            self.reference = x
            return self
        if labels is None:
            raise ValueError("a gbdt estimator learns from labelled archs: pass labels (higher is better)")
        y = np.asarray(labels, dtype=np.float64)
        if y.shape != (len(archs),) or not np.isfinite(y).all():
            raise ValueError(f"need one finite label per arch ({len(archs)}), got shape {y.shape}")
        from .predictors.gbdt import DEFAULT_PARAMS, train_booster

        self.models = [train_booster(x, y, DEFAULT_PARAMS, self.rounds, self.seed + k) for k in range(self.n_models)]
        return self

    def predict(
        self, archs: Sequence[Mapping[str, Any]], return_std: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The score of each arch (higher is better); with ``return_std`` also its uncertainty (gbdt: the spread
        of the ensemble; rank: zeros)."""
        x = self.values(archs)
        if self.mode == "rank":
            if self.reference is None:
                raise NotFittedError("fit the estimator on reference archs first (est.fit(archs))")
            score = np.asarray(az_aggregate(
                {n: x[:, j] for j, n in enumerate(self.names)},
                reference={n: self.reference[:, j] for j, n in enumerate(self.names)},
            ))
            return (score, np.zeros(len(x))) if return_std else score
        if not self.models:
            raise NotFittedError("fit the estimator on labelled archs first (est.fit(archs, labels))")
        preds = np.stack([m.predict(x) for m in self.models])  # LightGBM routes NaN values itself
        mean = preds.mean(0)
        return (mean, preds.std(0)) if return_std else mean

    def objective(self) -> Callable[[Mapping[str, Any]], float]:
        """``arch -> score`` for `supernet.searching.search` (``screen=``) or any caller."""

        def fn(arch: Mapping[str, Any]) -> float:
            return float(self.predict([arch])[0])

        fn.__name__ = f"estimate_{self.mode}"
        return fn

    def evaluator(self, name: str = "estimate") -> Callable[[Mapping[str, Any]], dict[str, float]]:
        """``arch -> {name: score}``: an evaluator for `supernet.searching.search` (objective ``"estimate:max"``)."""
        fn = self.objective()
        return lambda arch: {name: fn(arch)}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted estimator (not its signal callables) to ``path`` as JSON, atomically."""
        if self.reference is None and not self.models:
            raise NotFittedError("nothing to save: fit the estimator first")
        state: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "mode": self.mode,
            "signals": self.names,
            "n_models": self.n_models,
            "rounds": self.rounds,
            "seed": self.seed,
        }
        if self.reference is not None:
            state["reference"] = [[None if math.isnan(v) else float(v) for v in row] for row in self.reference]
        state["models"] = [m.model_to_string() for m in self.models]
        path = Path(path)
        write_text(path, json.dumps(state))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], signals: Mapping[str, Signal]) -> Estimator:
        """Read an estimator written by `save`; ``signals`` must have the saved names, in any order.

        Raises:
            ValueError: ``signals`` names other signals than the saved estimator's.
        """
        state = read_json(Path(path), EstimatorFile, "supernet estimator file")
        names = list(state["signals"])
        if set(signals) != set(names):
            raise ValueError(f"the saved estimator uses signals {names}, got {sorted(signals)}")
        est = cls({n: signals[n] for n in names}, state["mode"], state["n_models"], state["rounds"], state["seed"])
        if state.get("reference"):
            est.reference = np.array([[math.nan if v is None else v for v in row] for row in state["reference"]])
        if state.get("models"):
            import lightgbm as lgb

            est.models = [lgb.Booster(model_str=s) for s in state["models"]]
        return est


def proxy_signal(
    space: Any, name: str, batch: Any, seed: int = 0, device: str = "auto", inputs: Literal["paper", "batch"] = "paper"
) -> Signal:
    """A training-free proxy as a signal (`supernet.proxies.objective`; ``inputs="paper"`` scores AZ-NAS and VKDNW
    on Gaussian noise shaped like the batch, as their authors do); NaN where the proxy does not apply."""
    from .proxies import objective

    return objective(space, name, batch, seed=seed, device=device, inputs=inputs)


def encoding_signals(choices: Mapping[str, Sequence[Any]]) -> dict[str, Signal]:
    """The arch itself as features for the few-label mode (``mode="gbdt"``), from a space's ``choices``.

    For a decision with numeric options, its value (``enc:<decision>``); otherwise one 0/1 signal per option
    (``enc:<decision>=<option>``), and for every option that several decisions offer, how many of them take it
    (``enc:count=<option>``: on NAS-Bench-201, how many of the six edges are 3x3 convolutions, skips, ...; the
    operation counts that GRAF, Kadlecova et al. ICML 2024, found most predictive). These are not rankings of
    quality, so they belong in a gbdt estimator beside the proxies, not in a label-free log-rank sum.

    Raises:
        ValueError: ``choices`` is empty or a decision has no options.
    """
    if not choices or any(len(opts) == 0 for opts in choices.values()):
        raise ValueError(f"encoding_signals needs decisions with at least one option each, got {dict(choices)!r}")
    out: dict[str, Signal] = {}
    shared: dict[str, list[str]] = {}
    for dec, opts in choices.items():
        if all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in opts):
            out[f"enc:{dec}"] = lambda arch, d=dec: float(arch[d])
            continue
        for opt in opts:
            out[f"enc:{dec}={opt}"] = lambda arch, d=dec, o=opt: float(arch[d] == o)
            shared.setdefault(str(opt), []).append(dec)
    for opt, decs in shared.items():
        if len(decs) > 1:
            out[f"enc:count={opt}"] = lambda arch, ds=tuple(decs), o=opt: float(sum(str(arch[d]) == o for d in ds))
    return out


def cost_signal(space: Any, metric: Literal["params", "flops"], example_input: Any = None) -> Signal:
    """The params or FLOPs of an arch's subnet as a signal (bigger is assumed better, the free baseline)."""
    from . import cost

    if metric not in ("params", "flops"):
        raise ValueError(f"metric must be 'params' or 'flops', got {metric!r}")
    if metric == "flops" and example_input is None:
        raise ValueError("a flops signal needs an example_input")

    def fn(arch: Mapping[str, Any]) -> float:
        previous = space.arch
        space.set_arch(arch)
        try:
            return float(cost.params(space) if metric == "params" else cost.flops(space, example_input))
        finally:
            space.set_arch(previous)

    return fn


def supernet_signal(run: Any, metric: Literal["accuracy", "loss"] = "accuracy", **options: Any) -> Signal:
    """A trained supernet's evaluation of an arch (inherited weights, BN recalibrated) as a signal: its accuracy,
    or minus its loss. ``run``: a run directory or ``Run``; ``options`` go to `supernet.searching.evaluate.
    RunEvaluator.from_run` (``task``, ``device``, ``eval_batches``, ...)."""
    from .searching.evaluate import RunEvaluator

    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    evaluate = RunEvaluator.from_run(run, **options)
    sign = 1.0 if metric == "accuracy" else -1.0

    def fn(arch: Mapping[str, Any]) -> float:
        result = evaluate(dict(arch))
        if metric not in result:
            raise ValueError(f"the run's evaluator gives {sorted(result)}, not {metric!r}")
        return sign * float(result[metric])

    return fn


__all__ = [
    "Estimator",
    "NotFittedError",
    "Signal",
    "cost_signal",
    "encoding_signals",
    "proxy_signal",
    "supernet_signal",
]
