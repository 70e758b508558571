"""benchmarks/convert_pretrained.py on its tiny setting: the table's rows and what they hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark


def test_tiny_run_prints_the_comparison_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark("convert_pretrained")
    rows = bench.main(["--tiny", "--no-progress", "--out", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "width groups" in out and "inherited" in out and "from scratch" in out
    assert [(r["target"], r["sort"]) for r in rows] == [(t, s) for t in (0.5, 0.75) for s in bench.SORTS]
    for r in rows:
        assert r["params"] <= r["target"] * json.loads((tmp_path / "r.json").read_text())["original"]["params"]
        assert all(0 < r[k] < 10 for k in ("inherited", "finetuned", "scratch"))
    # sorting changes which channels a subnet keeps, not the arch or the from-scratch baseline
    for t in (0.5, 0.75):
        same = [r for r in rows if r["target"] == t]
        assert len({json.dumps(r["arch"], sort_keys=True) for r in same}) == 1
        assert len({r["scratch"] for r in same}) == 1
    with pytest.raises(SystemExit):
        bench.parse_args(["--sorts", "random"])
