"""benchmarks/ranking_analysis.py: the split of a cell's tau into between- and within-size ranking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from supernet.bench.metrics import kendall_tau

ra = load_benchmark("ranking_analysis")


def _report(seed: int, n: int = 60) -> dict:
    rng = np.random.default_rng(seed)
    archs = []
    for i in range(n):
        convs = int(rng.integers(0, 4))
        key = "|".join(["nor_conv_3x3~0"] * convs + ["skip_connect~0"] * (6 - convs)) + f"#{i}"
        true = 50 + 5 * convs + rng.normal()
        archs.append({"key": key, "sampled": True, "predicted_accuracy": float(rng.normal() + true * 0.1),
                      "true": float(true), "flops": float(10 * convs + rng.uniform())})
    archs.append({"key": "best", "sampled": False, "predicted_accuracy": 0.0, "true": 99.0, "flops": 1.0})
    return {"archs": archs}


def test_analysis_figures_equal_direct_computation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(0)
    got = ra.analyse(report, resamples=50)
    sampled = [a for a in report["archs"] if a["sampled"]]
    pred = [a["predicted_accuracy"] for a in sampled]
    true = [a["true"] for a in sampled]
    assert got["archs"] == 60 and got["tau"] == pytest.approx(kendall_tau(pred, true))
    assert got["flops_tau"] == pytest.approx(kendall_tau([a["flops"] for a in sampled], true))
    convs = [a["key"].count("conv") for a in sampled]
    assert got["tau_true_convs"] == pytest.approx(kendall_tau(true, convs))
    assert got["hybrid_low"] <= got["hybrid"] <= got["hybrid_high"]
    (tmp_path / "cell-s0").mkdir()
    (tmp_path / "cell-s0" / "report.json").write_text(json.dumps(report))
    assert ra.main([str(tmp_path), "--resamples", "20"]) == 0
    assert "| cell-s0 | 60 |" in capsys.readouterr().out
    assert ra.main([str(tmp_path / "nothing")]) == 2
