"""Predictors and RoBoT on synthetic tables where the answer is planted."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from supernet import proxies as P
from supernet.cli import main
from supernet.predictors import (
    ArchEncoder,
    GBDTPredictor,
    NotFittedError,
    PretrainedGBDTPredictor,
    choices_from_archs,
    kendall_tau,
    load_predictor,
    save_predictor,
)

CHOICES = {f"op{i}": ("conv", "pool", "skip", "none") for i in range(6)} | {"width": (16, 32, 64), "depth": (1, 2, 3)}
rng_effects = np.random.default_rng(0)
EFFECTS = {f"op{i}": dict(zip(CHOICES[f"op{i}"], rng_effects.normal(size=4), strict=True)) for i in range(6)}


def planted(arch):
    """Additive effects per op plus a monotone width/depth term."""
    return sum(EFFECTS[k][arch[k]] for k in EFFECTS) + 0.01 * arch["width"] + 0.3 * arch["depth"]


def archs(n, seed):
    rng = random.Random(seed)
    return [{k: rng.choice(v) for k, v in CHOICES.items()} for _ in range(n)]


def test_encoding_from_choices():
    enc = ArchEncoder(CHOICES)
    assert enc.dim == 6 * 4 + 2
    v = enc.encode({**{f"op{i}": "pool" for i in range(6)}, "width": 32, "depth": 3})
    assert v[:4].tolist() == [0, 1, 0, 0]
    assert v[-2:].tolist() == [(32 - 16) / 48, 1.0]
    assert ArchEncoder(CHOICES, numeric="onehot").dim == 6 * 4 + 3 + 3
    with pytest.raises(ValueError, match="expects a number"):
        enc.encode({**{f"op{i}": "pool" for i in range(6)}, "width": 32, "depth": "deep"})
    with pytest.raises(ValueError, match="does not allow"):
        enc.encode({**{f"op{i}": "big" for i in range(6)}, "width": 32, "depth": 1})
    with pytest.raises(KeyError, match="lacks decision"):
        enc.encode({"op0": "conv"})
    assert choices_from_archs([{"a": 2, "b": "x"}, {"a": 1, "b": "y"}]) == {"a": (1, 2), "b": ("x", "y")}


def test_gbdt_learns_a_planted_additive_table(tmp_path):
    train, test = archs(150, 0), archs(300, 1)
    pred = GBDTPredictor(CHOICES, n_models=3, rounds=200).fit(train, [planted(a) for a in train])
    mean, std = pred.predict(test, return_std=True)
    assert kendall_tau(mean, [planted(a) for a in test]) > 0.75
    assert std.shape == mean.shape and np.all(std >= 0) and std.mean() > 0
    # save / load round trip (JSON + LightGBM text models)
    path = save_predictor(pred, tmp_path / "p.json")
    assert np.allclose(load_predictor(path).predict(test), mean)
    # as a search objective
    assert pred.objective()(test[0]) == pytest.approx(mean[0])
    assert set(pred.evaluator()(test[0])) == {"predicted", "predicted_std"}
    with pytest.raises(NotFittedError):
        GBDTPredictor(CHOICES).predict(test)
    with pytest.raises(ValueError, match="one target per arch"):
        GBDTPredictor(CHOICES).fit(train, [1.0])


@pytest.mark.parametrize("mode", ["boost", "feature"])
def test_pretraining_on_a_free_statistic_helps_with_few_labels(mode, tmp_path):
    # the free statistic is the planted accuracy up to a monotone transform: pretraining on 400 unlabelled archs
    # must beat fitting 12 labels from scratch
    pool, few, test = archs(400, 2), archs(12, 3), archs(300, 4)
    free = [np.exp(planted(a)) for a in pool]
    y_few = [planted(a) for a in few]
    y_test = [planted(a) for a in test]
    plain = GBDTPredictor(CHOICES, n_models=2, rounds=100).fit(few, y_few)
    pre = PretrainedGBDTPredictor(CHOICES, mode=mode, n_models=2, rounds=100, pretrain_rounds=200)
    pre.pretrain(pool, {"free": free}).fit(few, y_few)
    tau_plain, tau_pre = kendall_tau(plain.predict(test), y_test), kendall_tau(pre.predict(test), y_test)
    assert tau_pre > 0.6 and tau_pre > tau_plain + 0.15, (tau_pre, tau_plain)
    assert np.allclose(load_predictor(save_predictor(pre, tmp_path / "pre.json")).predict(test), pre.predict(test))


def test_robot_finds_the_planted_best_combination():
    # accuracy = a - 0.8 b, proxies a, b and a distractor c: a weighted ranking recovers the optimum
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 300))
    acc = a - 0.8 * b
    queried: list[int] = []

    def query(i):
        queried.append(i)
        return float(acc[i])

    res = P.robot({"a": a, "b": b, "c": c}, query, budget=20, seed=0, sampler="tpe")
    assert len(queried) == len(set(queried)) == 20  # the budget, never the same arch twice
    assert res.best_index == int(np.argmax(acc))
    assert res.weights["a"] > 0 > res.weights["b"]
    # exploitation walks the best weights' ranking: the top pick of that ranking was queried
    assert int(P.weighted_ranking({"a": a, "b": b, "c": c}, res.weights)[0]) in queried


def test_robot_gp_sampler_and_bad_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 2))
    res = P.robot(x, lambda i: float(x[i, 0]), budget=6, bo_budget=3, seed=0, sampler="gp")
    assert len(res.queried) == 6 and res.best_value == max(res.values)
    with pytest.raises(ValueError, match="sampler"):
        P.robot(x, lambda i: 0.0, budget=3, sampler="grid")
    with pytest.raises(ValueError, match="bo_budget"):
        P.robot(x, lambda i: 0.0, budget=3, bo_budget=5)


def test_normalise_maps_nonfinite_to_worst():
    out = P.normalise(np.array([[1.0, 5.0], [3.0, -np.inf], [2.0, 5.0]]))
    assert out[:, 0].tolist() == [0.0, 1.0, 0.5]
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0]  # one finite distinct value: constant column


def test_cli_predict_fit_and_eval(tmp_path, capsys):
    rows = {json.dumps(a, sort_keys=True, separators=(",", ":")): {"acc": planted(a)} for a in archs(120, 5)}
    table = tmp_path / "t.json"
    table.write_text(json.dumps({"format": "supernet-table", "version": 1, "space": None, "rows": rows}))
    model = tmp_path / "m.json"
    assert (
        main(
            [
                "predict",
                "fit",
                str(table),
                "--target",
                "acc",
                "--train-size",
                "80",
                "--models",
                "2",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    assert main(["predict", "eval", str(table), "--target", "acc", "--model", str(model), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert out["kendall_tau_mean"] > 0.7
    assert main(["predict", "eval", str(table), "--target", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_cli_proxies_writes_a_table(tmp_path):
    out = tmp_path / "p.csv"
    code = main(
        [
            "proxies",
            "nb201",
            "--archs",
            "2",
            "--space-kwargs",
            '{"C": 2, "N": 1}',
            "--batch-size",
            "4",
            "--proxies",
            "nwot,params",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "arch,nwot,params" and len(lines) == 3 and lines[1].startswith("|")
    assert main(["proxies", "nb201", "--proxies", "nope", "--out", str(out)]) == 2
