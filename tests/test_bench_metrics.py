"""Ranking metrics: agreement with scipy, hand-computed cases, bootstrap intervals, relative improvement."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from supernet.bench import (
    Table,
    bootstrap_ci,
    kendall_tau,
    precision_at_k,
    ranking_report,
    regret,
    relative_improvement,
    relative_improvement_from_table,
    sparse_kendall_tau,
    spearman_rho,
    top_k_overlap,
)
from supernet.bench.metrics import resolve_k


@pytest.fixture
def noisy() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    true = rng.uniform(80, 92, size=60)
    return true + rng.normal(0, 2.0, size=60), true


def test_tau_and_rho_agree_with_scipy(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    pred, true = noisy
    assert kendall_tau(pred, true) == pytest.approx(stats.kendalltau(pred, true).statistic, abs=1e-12)
    assert spearman_rho(pred, true) == pytest.approx(stats.spearmanr(pred, true).statistic, abs=1e-12)
    tied = np.round(pred)  # ties in the prediction: tau-b, as scipy
    assert kendall_tau(tied, true) == pytest.approx(stats.kendalltau(tied, true).statistic, abs=1e-12)
    assert kendall_tau(true, true) == pytest.approx(1.0)
    assert kendall_tau(-true, true) == pytest.approx(-1.0)


def test_sparse_tau_hand_computed() -> None:
    pred = [1.0, 2.0, 3.0, 0.0]
    true = [90.01, 90.04, 91.0, 89.0]  # rounded to 0.1: 90.0, 90.0, 91.0, 89.0 -> the first pair ties
    # 6 pairs: 5 concordant, 0 discordant, 1 tied in the ground truth only; tau-b = 5 / sqrt(6 * 5).
    assert sparse_kendall_tau(pred, true) == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau(pred, true) == pytest.approx(1.0)
    assert sparse_kendall_tau(pred, true, decimals=2) == pytest.approx(1.0)


def test_precision_overlap_and_regret_hand_computed() -> None:
    pred = [5.0, 4.0, 3.0, 2.0, 1.0]
    true = [1.0, 5.0, 4.0, 3.0, 2.0]
    # top-2 by prediction {0, 1}, by truth {1, 2}: one shared.
    assert top_k_overlap(pred, true, 2) == 1
    assert precision_at_k(pred, true, 2) == pytest.approx(0.5)
    assert precision_at_k(pred, true, 0.4) == pytest.approx(0.5)  # 40 % of 5 archs = 2
    assert precision_at_k(pred, true, 4) == pytest.approx(0.75)  # {0,1,2,3} vs {1,2,3,4}
    assert precision_at_k(pred, true, 5) == pytest.approx(1.0)
    assert regret(pred, true) == pytest.approx(4.0)  # picked arch 0 (true 1), best is 5
    assert regret(true, true) == 0.0
    # a tie for first place in the prediction counts the worse arch
    assert regret([2.0, 2.0, 1.0], [10.0, 7.0, 9.0]) == pytest.approx(3.0)


def test_resolve_k_and_bad_input() -> None:
    assert resolve_k(0.1, 100) == 10
    assert resolve_k(0.1, 101) == 11
    assert resolve_k(0.001, 10) == 1
    assert resolve_k(3, 10) == 3
    with pytest.raises(ValueError, match=r"1\.\.10"):
        resolve_k(11, 10)
    with pytest.raises(ValueError, match="fraction"):
        resolve_k(1.5, 10)
    with pytest.raises(ValueError, match="same length"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        spearman_rho([1, 2, float("nan")], [1, 2, 3])


def test_bootstrap_intervals_cover_the_estimate_and_are_seeded(noisy: tuple[np.ndarray, np.ndarray]) -> None:
    pred, true = noisy
    report = ranking_report(pred, true, ks=(0.1, 5), n_resamples=300, seed=3)
    assert set(report) == {
        "kendall_tau",
        "sparse_kendall_tau",
        "spearman_rho",
        "regret",
        "precision@0.1",
        "top0.1_overlap",
        "precision@5",
        "top5_overlap",
    }
    for name, est in report.items():
        assert est.low <= est.value <= est.high, name
        assert est.confidence == 0.95
    assert report["kendall_tau"].high - report["kendall_tau"].low > 0.05  # a real interval, not a point
    again = ranking_report(pred, true, ks=(0.1, 5), n_resamples=300, seed=3)
    assert again["kendall_tau"] == report["kendall_tau"]
    other = bootstrap_ci(kendall_tau, pred, true, n_resamples=300, seed=4)
    assert other.value == report["kendall_tau"].value
    assert (other.low, other.high) != (report["kendall_tau"].low, report["kendall_tau"].high)
    assert str(other).count("[") == 1


def test_relative_improvement() -> None:
    assert relative_improvement(110.0, [100.0, 90.0, 110.0]) == pytest.approx(10.0)
    assert relative_improvement(90.0, [100.0]) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="mean"):
        relative_improvement(1.0, [0.0, 0.0])
    table = Table({"a": {"acc": 90.0}, "b": {"acc": 80.0}, "c": {"acc": 70.0}, "d": {"acc": 60.0}})
    r = relative_improvement_from_table(table, "a", "acc")
    assert r["random_mean"] == pytest.approx(75.0)
    assert r["relative_improvement"] == pytest.approx(20.0)
    r = relative_improvement_from_table(table, "a", "acc", random_archs=["c", "d"])
    assert r["relative_improvement"] == pytest.approx(100 * (90 - 65) / 65)
    r = relative_improvement_from_table(table, "b", "acc", n_random=2, seed=1)
    assert r["random_count"] == 2
