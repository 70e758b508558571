"""benchmarks/latency_table.py on a tiny setting: the table of results, its files, and its statistics."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "latency_table.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("latency_table_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lt = _load()


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
