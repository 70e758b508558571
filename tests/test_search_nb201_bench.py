"""benchmarks/search_nb201.py on a planted cache: the budget sets the pool, the estimator's picks, clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark_scripts import BENCHMARKS, load_benchmark
from supernet.bench.tables import load_nb201

ROOT = Path(__file__).resolve().parents[1]
TABLE_DIR = ROOT.parent / "shared" / "data"
HAVE_TABLE = (TABLE_DIR / "benchmarks" / "nb201" / "nasbench201_cifar10.json").is_file()
pytestmark = pytest.mark.skipif(not HAVE_TABLE, reason=f"needs the NB201 table under {TABLE_DIR}")

sys.path.insert(0, str(BENCHMARKS))  # the script imports its sibling proxies_nb201, as when run from benchmarks/
sb = load_benchmark("search_nb201")


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    return load_nb201(TABLE_DIR / "benchmarks" / "nb201" / "nasbench201_cifar10.json")


def planted_cache(table, folder: Path, n: int = 300, seconds: float = 1.0) -> list[str]:  # type: ignore[no-untyped-def]
    """A proxies_nb201 cache of ``n`` table archs: 'meco' = validation accuracy (a perfect signal), 'flops' = the
    table's FLOPs, each costing ``seconds``."""
    keys = sorted(table.rows)[:: len(table.rows) // n][:n]
    with (folder / "cache.jsonl").open("w", encoding="utf-8") as f:
        for k in keys:
            row = table.rows[k]
            f.write(json.dumps({"kind": "proxy", "arch": k, "seed": 0,
                                "values": {"meco": row["val_acc_200"], "flops": row["flops"]},
                                "seconds": {"meco": seconds, "flops": seconds}}) + "\n")
    return keys


def test_budget_sets_the_pool_and_a_perfect_signal_finds_its_best(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keys = planted_cache(table, tmp_path)
    out = tmp_path / "out"
    assert sb.main(["--signals", "flops,meco", "--budget-minutes", "5", "--seeds", "0,1", "--cache", str(tmp_path),
                    "--data-dir", str(TABLE_DIR), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "NB201 CIFAR-10 search" in (out / "report.md").read_text()
    for entry in report["per_seed"]:
        # 2 s per arch, 300 s: 150 archs, the first 150 of the seed's order of the (sorted) cached archs
        assert entry["pool"] == 150 and entry["cpu_minutes"] == pytest.approx(5.0)
        assert not entry["capped_by_cache"]
        order = np.random.default_rng(entry["seed"]).permutation(len(keys))
        pool = [sorted(keys)[i] for i in order[:150]]
        val = table.values("val_acc_200", pool)
        best = pool[int(np.argmax(val))]
        res = entry["results"]
        top_flops = [pool[i] for i in np.argsort(-table.values("flops", pool), kind="stable")[:20]]
        assert res["flops"]["val"] == pytest.approx(table.values("val_acc_200", top_flops).max())
        # rank+gbdt learns the planted signal: after its label-free warm-up it reaches the pool's best arch
        assert res["rank+gbdt"]["arch"] == best and res["rank+gbdt"]["fits"] == 10
        assert res["rank+gbdt"]["test"] == pytest.approx(table.rows[best]["test_acc_200"])
        assert res["random"]["queries"] == 20
    assert report["summary"]["rank+gbdt"]["mean_test"] >= report["summary"]["random"]["mean_test"]


def test_perfect_signal_alone_ranks_the_pool_exactly(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    keys = planted_cache(table, tmp_path)
    out = tmp_path / "out"
    sb.main(["--signals", "meco", "--budget-minutes", "2.5", "--seeds", "3", "--cache", str(tmp_path),
             "--data-dir", str(TABLE_DIR), "--out", str(out), "--warm", "20"])
    entry = json.loads((out / "report.json").read_text())["per_seed"][0]
    order = np.random.default_rng(3).permutation(len(keys))
    pool = [sorted(keys)[i] for i in order[:150]]  # 1 s per arch, 150 s
    val = table.values("val_acc_200", pool)
    assert entry["results"]["rank"]["val"] == pytest.approx(val.max())
    assert entry["results"]["rank+gbdt"]["val"] == pytest.approx(val.max())  # --warm 20: no fit at all
    assert entry["results"]["rank+gbdt"]["fits"] == 0


def test_a_pool_larger_than_the_cache_is_reported(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    planted_cache(table, tmp_path, n=40)
    out = tmp_path / "out"
    sb.main(["--signals", "meco", "--seeds", "0", "--cache", str(tmp_path), "--data-dir", str(TABLE_DIR),
             "--out", str(out)])
    assert json.loads((out / "report.json").read_text())["per_seed"][0]["capped_by_cache"]
    assert "The pool is every cached arch" in (out / "report.md").read_text()


def test_clear_errors(table, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    planted_cache(table, tmp_path, n=40)
    common = ["--cache", str(tmp_path), "--data-dir", str(TABLE_DIR), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match=r"have every signal of .*zico"):
        sb.main(["--signals", "meco,zico", *common])
    with pytest.raises(SystemExit, match="budget buys only 6 archs"):
        sb.main(["--signals", "meco", "--budget-minutes", "0.1", *common])
    with pytest.raises(SystemExit, match=r"timing\.json is missing"):
        sb.main(["--signals", "meco", "--supernet-run", str(tmp_path / "nowhere"), *common])
    with pytest.raises(SystemExit):
        sb.main(["--signals", "meco", "--warm", "30", *common])
