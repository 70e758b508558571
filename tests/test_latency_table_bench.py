"""benchmarks/latency_table.py on a tiny setting: the table of results, its files, and its statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats

from benchmark_scripts import load_benchmark

lt = load_benchmark("latency_table")


def test_bootstrap_interval_brackets_the_estimate_and_is_exact_for_a_monotone_pair() -> None:
    x = [float(i) for i in range(30)]
    assert lt.bootstrap_rho(x, [v**3 for v in x]) == pytest.approx((1.0, 1.0))
    y = [v + (7 if i % 3 == 0 else -5) for i, v in enumerate(x)]
    lo, hi = lt.bootstrap_rho(x, y, rounds=300)
    assert lo <= stats.spearmanr(x, y).statistic <= hi < 1.0


def test_end_to_end_writes_the_table_and_the_comparison(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = lt.main(["--spaces", "gpt", "--archs", "4", "--samples", "2", "--repeats", "2", "--warmup", "0",
                    "--no-progress", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(rows)) and len(rows) == 1
    row = rows[0]
    assert row["space"] == "gpt" and row["archs"] == 4 and row["table_samples"] == 2
    assert -1.0 <= row["rho"] <= 1.0 and -1.0 <= row["retest_rho"] <= 1.0 and row["median_rel_error"] >= 0
    assert row["latency_ms"][0] > 0
    assert row["meets_target"] == (row["rho"] >= lt.TARGET_RHO)
    out = capsys.readouterr().out
    assert "| gpt | 4 |" in out and (tmp_path / "table.md").read_text() in out


def test_unknown_space_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        lt.main(["--spaces", "nope"])
    assert "unknown space" in capsys.readouterr().err
