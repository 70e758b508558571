"""`sn.estimate`: the label-free log-rank sum, the few-label GBDT mode, JSON round trip, use in a search."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

import supernet as sn
from supernet.estimate import Estimator, cost_signal, encoding_signals, supernet_signal
from supernet.predictors import NotFittedError
from supernet.proxies.aznas import az_aggregate
from supernet.searching import search


def _table_signals(table: dict[int, tuple[float, ...]], names: tuple[str, ...]) -> dict:
    return {n: (lambda arch, j=j: table[arch["i"]][j]) for j, n in enumerate(names)}


def test_log_rank_sum_equals_the_hand_computed_sum() -> None:
    a = [3.0, 1.0, 2.0, 2.0]  # ranks 4, 1, 2.5, 2.5
    b = [0.1, 0.4, math.nan, 0.2]  # ranks 2, 4, NaN = -inf -> 1, 3
    expected = [
        math.log(4 / 4) + math.log(2 / 4),
        math.log(1 / 4) + math.log(4 / 4),
        math.log(2.5 / 4) + math.log(1 / 4),
        math.log(2.5 / 4) + math.log(3 / 4),
    ]
    np.testing.assert_allclose(az_aggregate({"a": a, "b": b}), expected, rtol=0, atol=1e-12)
    # against a reference pool: a value between two reference values, one below all, one tied
    np.testing.assert_allclose(az_aggregate({"a": [1.5, 0.0, 2.0]}, reference={"a": a}),
                               [math.log(1.5 / 4), math.log(0.5 / 4), math.log(2.5 / 4)], atol=1e-12)
    with pytest.raises(ValueError, match="common, non-zero length"):
        az_aggregate({"a": [1.0, 2.0], "b": [1.0]})


def test_rank_estimator_on_its_reference_equals_the_pool_log_rank_sum_and_places_new_archs() -> None:
    rng = np.random.default_rng(0)
    table = {i: tuple(rng.normal(size=3)) for i in range(30)}
    table[30] = (10.0, 10.0, 10.0)  # above every reference value
    names = ("s0", "s1", "s2")
    est = Estimator(_table_signals(table, names))
    ref = [{"i": i} for i in range(30)]
    with pytest.raises(NotFittedError):
        est.predict(ref)
    est.fit(ref)
    pool = az_aggregate({n: [table[i][j] for i in range(30)] for j, n in enumerate(names)})
    np.testing.assert_allclose(est.predict(ref), pool, atol=1e-12)
    top = est.objective()({"i": 30})
    assert top == pytest.approx(3 * math.log(30.5 / 30)) and top > max(pool)
    with pytest.raises(ValueError, match="takes no labels"):
        est.fit(ref, labels=[0.0] * 30)


def test_gbdt_estimator_recovers_a_planted_combination_of_signals() -> None:
    rng = np.random.default_rng(1)
    table = {i: tuple(rng.uniform(size=4)) for i in range(400)}
    names = ("s0", "s1", "noise0", "noise1")
    truth = {i: 2 * v[0] - v[1] for i, v in table.items()}
    est = Estimator(_table_signals(table, names), mode="gbdt", n_models=3, rounds=200)
    train = [{"i": i} for i in range(100)]
    est.fit(train, [truth[i] for i in range(100)])
    test = [{"i": i} for i in range(100, 400)]
    mean, std = est.predict(test, return_std=True)
    tau = scipy.stats.kendalltau(mean, [truth[a["i"]] for a in test]).statistic
    assert tau > 0.75, tau
    assert (std >= 0).all() and std.max() > 0
    # the label-free aggregation of the same signals ranks worse: the noise signals dilute it
    rank = Estimator(_table_signals(table, names)).fit(test)
    assert scipy.stats.kendalltau(rank.predict(test), [truth[a["i"]] for a in test]).statistic < tau
    with pytest.raises(ValueError, match="pass labels"):
        Estimator(_table_signals(table, names), mode="gbdt").fit(train)


@pytest.mark.parametrize("mode", ["rank", "gbdt"])
def test_estimator_round_trips_through_json(tmp_path, mode: str) -> None:
    rng = np.random.default_rng(2)
    table = {i: (float(rng.normal()), math.nan if i == 3 else float(rng.normal())) for i in range(40)}
    signals = _table_signals(table, ("a", "b"))
    archs = [{"i": i} for i in range(40)]
    est = Estimator(signals, mode=mode, n_models=2, rounds=20)
    est.fit(archs, None if mode == "rank" else [table[i][0] for i in range(40)])
    path = est.save(tmp_path / "est.json")
    assert path.read_text().startswith("{")  # JSON, no pickle
    again = Estimator.load(path, signals)
    np.testing.assert_array_equal(again.predict(archs), est.predict(archs))
    with pytest.raises(ValueError, match="uses signals"):
        Estimator.load(path, {"a": signals["a"]})


def test_estimator_screens_a_search_of_a_trained_run(tmp_path) -> None:
    space = sn.spaces.gpt(block_size=8, embed_dims=(8, 16), num_heads=(1, 2), mlp_ratios=(2,), depths=(1, 2),
                          head_dim=4)
    run = sn.train(space, sn.data.shakespeare(), "uniform", {"steps": 3, "batch_size": 4, "progress": False},
                   run_dir=tmp_path / "run", device="cpu")
    signals = {
        "supernet": supernet_signal(run, "loss", device="cpu", max_batches=1, batch_size=4, bn_batches=0),
        "params": cost_signal(space, "params"),
    }
    est = Estimator(signals).fit([space.sample(seed=s) for s in range(6)])
    result = search(run, trials=4, algorithm="random", screen=est.objective(), screen_candidates=3,
                    progress=False, out_dir=tmp_path / "s", eval_batches=1, eval_batch_size=4, bn_batches=0,
                    device="cpu")
    assert result.evaluations == 4
    with pytest.raises(ValueError, match="needs an example_input"):
        cost_signal(space, "flops")


def test_encoding_signals_one_hot_counts_and_values() -> None:
    choices = {"e0": ("conv", "skip", "none"), "e1": ("conv", "skip", "none"), "width": (8, 16, 32), "k": ("a",)}
    enc = encoding_signals(choices)
    arch = {"e0": "conv", "e1": "conv", "width": 16, "k": "a"}
    got = {name: fn(arch) for name, fn in enc.items()}
    assert got == {
        "enc:e0=conv": 1.0, "enc:e0=skip": 0.0, "enc:e0=none": 0.0,
        "enc:e1=conv": 1.0, "enc:e1=skip": 0.0, "enc:e1=none": 0.0,
        "enc:width": 16.0, "enc:k=a": 1.0,
        "enc:count=conv": 2.0, "enc:count=skip": 0.0, "enc:count=none": 0.0,  # 'a' is offered by one decision only
    }
    with pytest.raises(ValueError, match="at least one option"):
        encoding_signals({"e0": ()})


def test_gbdt_learns_an_operation_count_from_the_encoding() -> None:
    choices = {f"e{i}": ("conv", "skip", "pool") for i in range(6)}
    rng = np.random.default_rng(0)
    archs = [{d: str(rng.choice(opts)) for d, opts in choices.items()} for _ in range(300)]
    truth = [sum(a[d] == "conv" for d in choices) - 0.5 * sum(a[d] == "pool" for d in choices) for a in archs]
    est = Estimator(encoding_signals(choices), mode="gbdt", n_models=2, rounds=100).fit(archs[:60], truth[:60])
    tau = scipy.stats.kendalltau(est.predict(archs[60:]), truth[60:]).statistic
    assert tau > 0.8, tau
