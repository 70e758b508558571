"""benchmarks/proxies_nb201.py end to end on a tiny setting: report files, the FLOPs floor, resuming, the pool."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from supernet.bench.metrics import kendall_tau
from supernet.bench.tables import load_nb201

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TABLE = DATA / "benchmarks" / "nb201"
HAVE_DATA = (TABLE / "nasbench201_cifar10.json").is_file() and (DATA / "images" / "cifar10-train.tar.gz").is_file()
needs_data = pytest.mark.skipif(
    not HAVE_DATA, reason=f"needs the NB201 table and the CIFAR-10 tarball under {DATA} (the project's shared data)"
)


pb = load_benchmark("proxies_nb201")


@pytest.fixture(scope="module", autouse=True)
def decoded_images_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Decoded CIFAR-10 arrays go to a temporary cache shared by this module's tests (not ~/.cache)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SUPERNET_CACHE", str(tmp_path_factory.mktemp("decoded")))
        yield


def _taus(report: dict[str, Any]) -> list[float]:
    rows = list(report["signals"])
    for mode_rows in report["hybrid"]["modes"].values():
        rows += mode_rows
    out = []
    for r in rows:
        for target in ("test", "valid"):
            est = r[target]["tau"]
            out += [v for v in (est["value"], est["low"], est["high"]) if v is not None and math.isfinite(v)]
    return out


def test_finite_fill_ranks_non_finite_lowest() -> None:
    filled = pb.finite_fill(np.array([2.0, math.nan, -math.inf, 5.0, math.inf]))
    assert filled.tolist() == [2.0, 1.0, 1.0, 5.0, 6.0]
    assert pb.finite_fill(np.array([math.nan, math.nan])).tolist() == [0.0, 0.0]


@needs_data
def test_sample_is_disjoint_and_extends() -> None:
    table = load_nb201(TABLE)
    keys, pool = pb.sample_archs(table, 20, 10, seed=3)
    more_keys, more_pool = pb.sample_archs(table, 30, 15, seed=3)
    assert not set(keys) & set(pool) and not set(more_keys) & set(more_pool)
    assert more_keys[:20] == keys and more_pool[:10] == pool  # a larger run keeps what is cached
    with pytest.raises(ValueError, match="--archs"):
        pb.sample_archs(table, 15_000, 1_000, seed=0)


def count_score_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The proxy names the benchmark scores from now on, one entry per computed value (in a list it appends to)."""
    calls: list[str] = []
    real_score = pb.score

    def counting_score(*args: Any, **kwargs: Any) -> dict[str, float]:
        calls.extend(kwargs["names"])
        return real_score(*args, **kwargs)

    monkeypatch.setattr(pb, "score", counting_score)
    return calls


@needs_data
def test_tiny_run_reports_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_score_calls(monkeypatch)
    out = tmp_path / "out"
    proxies = ["nwot", "jacov", "az_expressivity", "az_progressivity", "az_trainability"]
    # 8 labelled archs: LightGBM (min 3 archs per leaf) needs more than 4 to split at all
    argv = ["--archs", "6", "--labels", "8", "--proxies", ",".join(proxies), "--C", "4", "--N", "1", "--size", "8",
            "--batch-size", "8", "--resamples", "20", "--out", str(out), "--data-dir", str(DATA), "--no-progress"]
    assert pb.main(argv) == 0
    assert len(calls) == (6 + 8) * len(proxies)  # every evaluated and pool arch, every proxy, once

    report = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    assert "## Reproduction of the published rows" in md and "FLOPs (table)" in md
    keys, pool = report["evaluated_archs"], report["pool_archs"]
    assert len(keys) == 6 and len(pool) == 8 and not set(keys) & set(pool) and report["sample"]["disjoint"]

    taus = _taus(report)
    assert taus and all(-1.0 <= t <= 1.0 for t in taus)
    table = load_nb201(TABLE)
    flops = next(r for r in report["signals"] if r["signal"] == "table_flops")
    for target, metric in (("test", "test_acc_200"), ("valid", "val_acc_200")):
        expected = kendall_tau(table.values("flops", keys), table.values(metric, keys))
        assert flops[target]["tau"]["value"] == pytest.approx(expected, abs=1e-12)
    check = {r["signal"]: r for r in report["reproduction"]}
    assert check["table_flops"]["verdict"] in ("MET", "NOT MET") and check["table_flops"]["published"] == 0.623
    assert check["nwot"]["verdict"] in ("MET", "NOT MET") and "gap" in check["nwot"]
    assert {r["signal"] for r in report["signals"]} >= {"table_flops", "table_params", *proxies}
    assert {r["signal"]: r["seconds_per_arch"] > 0 for r in report["signals"]}["nwot"]
    modes = report["hybrid"]["modes"]
    assert set(modes) == {"label-free", "gbdt k=8"} and modes["label-free"][0]["row"] == "az_nas"
    assert modes["label-free"][0]["published_tau"] == 0.712
    gbdt_rows = {r["row"]: r for r in modes["gbdt k=8"]}
    assert gbdt_rows["az_nas+encoding"]["signals"][-1] == "encoding"
    assert gbdt_rows["encoding alone"]["seconds_per_arch"] == 0.0
    assert "encoding" not in {r["row"] for r in modes["label-free"]}  # not a ranking: gbdt rows only

    cache_before = (out / "cache.jsonl").read_bytes()
    calls.clear()
    assert pb.main(argv) == 0  # the same command again: everything comes from the cache
    assert calls == []
    again = json.loads((out / "report.json").read_text())
    assert again["computed_this_run"] == {"proxy_values": 0, "supernet_archs": 0}
    assert (out / "cache.jsonl").read_bytes() == cache_before
    assert [r["test"]["tau"]["value"] for r in again["signals"]] == [r["test"]["tau"]["value"]
                                                                    for r in report["signals"]]


@needs_data
def test_other_settings_need_another_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    base = ["--archs", "4", "--labels", "", "--proxies", "nwot", "--C", "4", "--N", "1", "--size", "8",
            "--batch-size", "4", "--resamples", "5", "--out", str(out), "--data-dir", str(DATA), "--no-progress"]
    assert pb.main(base) == 0
    assert pb.main([*base, "--size", "16"]) == 2
    assert "size: was 8, now 16" in capsys.readouterr().err
    assert pb.main([*base, "--proxies", "nope"]) == 2


@needs_data
def test_shards_split_the_archs_and_together_equal_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--archs", "5", "--labels", "", "--proxies", "nwot", "--C", "4", "--N", "1", "--size", "8",
            "--batch-size", "4", "--resamples", "5", "--data-dir", str(DATA), "--no-progress"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert pb.main([*base, "--out", str(whole)]) == 0
    scored: list[str] = []
    real_score = pb.score

    def recording_score(space: Any, batch: Any, arch: Any, **kwargs: Any) -> dict[str, float]:
        scored.append(json.dumps(arch, sort_keys=True))
        return real_score(space, batch, arch=arch, **kwargs)

    monkeypatch.setattr(pb, "score", recording_score)
    assert pb.main([*base, "--out", str(split), "--shard", "1/2"]) == 0
    assert len(scored) == 2  # archs 1 and 3 of 5
    assert pb.main([*base, "--out", str(split), "--shard", "0/2"]) == 0
    assert len(scored) == 5 and len(set(scored)) == 5  # archs 0, 2, 4: every arch once
    assert pb.main([*base, "--out", str(split), "--report-only"]) == 0
    one = json.loads((whole / "report.json").read_text())
    two = json.loads((split / "report.json").read_text())
    assert [(r["signal"], r["test"]["tau"]["value"]) for r in one["signals"]] == \
        [(r["signal"], r["test"]["tau"]["value"]) for r in two["signals"]]
    for bad in ("2/2", "1", "a/b"):
        assert pb.main([*base, "--out", str(split), "--shard", bad]) == 2
        assert "--shard" in capsys.readouterr().err


@needs_data
def test_noise_and_cifar_inputs_share_one_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_score_calls(monkeypatch)
    out = tmp_path / "out"
    base = ["--archs", "4", "--labels", "", "--proxies", "nwot,meco", "--C", "4", "--N", "1", "--size", "8",
            "--batch-size", "4", "--resamples", "5", "--out", str(out), "--data-dir", str(DATA), "--no-progress"]
    assert pb.main([*base, "--inputs", "cifar"]) == 0
    assert sorted(calls) == ["meco"] * 4 + ["nwot"] * 4
    calls.clear()
    assert pb.main([*base, "--inputs", "table"]) == 0
    assert calls == ["nwot"] * 4  # meco sees CIFAR-10 images either way: shared; nwot on noise is its own value
    cache = pb.Cache(out / "cache.jsonl")
    per_arch = list(cache.proxy.values())
    assert len(per_arch) == 4 and all(set(v) == {"nwot", "nwot@noise", "meco"} for v in per_arch)
    assert any(v["nwot"] != v["nwot@noise"] for v in per_arch)
    report = json.loads((out / "report.json").read_text())
    labels = {r["signal"]: r["label"] for r in report["signals"]}
    assert labels["nwot"] == "nwot (noise)" and labels["meco"] == "meco"
    assert report["settings"]["inputs"] == "table"
    assert pb.cache_name("vkdnw_single", "table") == "vkdnw_single@noise" and pb.cache_name("zico", "table") == "zico"


def test_one_supernet_run_per_seed_gives_one_row_each(tmp_path: Path) -> None:
    cache = pb.Cache(tmp_path / "cache.jsonl")
    runs = [tmp_path / "s0", tmp_path / "s1"]
    for r, run in enumerate(runs):
        for i, arch in enumerate(["a", "b", "c"]):
            cache.append({"kind": "supernet", "run": str(run.resolve()), "arch": arch,
                          "result": {"accuracy": 10.0 * r + i, "loss": 1.0, "seconds": 0.5 + r}})
    sig = pb.Signals(None, pb.Cache(cache.path), [0, 1], [], [str(r) for r in runs])
    assert "supernet" in sig.names()
    assert sig.values("supernet", ["c", "a"]).tolist() == [[2.0, 0.0], [12.0, 10.0]]
    assert sig.seconds("supernet", ["a", "b", "c"]) == pytest.approx(1.0)
    assert sig.complete("supernet", ["a", "b", "c"]) and not sig.complete("supernet", ["a", "d"])
    one = pb.Signals(None, cache, [0, 1], [], str(runs[1]))  # one run serves every seed
    assert one.values("supernet", ["b"]).tolist() == [[11.0]]


def test_supernet_runs_must_match_the_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = ",".join(str(tmp_path / f"s{i}") for i in range(3))
    assert pb.main(["--seeds", "0,1", "--supernet-run", runs, "--out", str(tmp_path / "out"),
                    "--data-dir", str(DATA)]) == 2
    assert "names 3 runs for 2 seeds" in capsys.readouterr().err
