"""Benchmark scripts on tiny settings: they run end to end and write what their tables are made of.

The figures themselves come from full runs (closing notes); these tests keep the scripts working.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
HAVE_CIFAR = (DATA / "images" / "cifar10-train.tar.gz").is_file()
needs_cifar = pytest.mark.skipif(not HAVE_CIFAR, reason=f"needs the CIFAR-10 tarball under {DATA} (shared data)")


def test_two_stage_gpt_compares_found_random_and_the_supernets_ranking(tmp_path: Path) -> None:
    tsg = load_benchmark("two_stage_gpt")
    cache = tmp_path / "standalone.json"
    argv = ["--quick", "--supernet-steps", "3", "--standalone-steps", "2", "--trials", "4", "--randoms", "3",
            "--out", str(tmp_path / "a"), "--standalone-cache", str(cache)]
    first = tsg.main(argv)
    assert len(first["standalone_losses"]) == len(first["supernet_losses"]) == 4  # found + 3 random
    assert -1.0 <= first["supernet_tau"] <= 1.0 and first["train_ms_per_step"] > 0
    assert json.loads((tmp_path / "a" / "two_stage_gpt.json").read_text())["supernet_tau"] == first["supernet_tau"]
    stored = json.loads(cache.read_text())
    assert sorted(stored.values()) == sorted(set(first["standalone_losses"]))
    # another strategy with the same seed reuses the stand-alone results instead of training them again
    cache.write_text(json.dumps({k: 123.0 for k in stored}))
    second = tsg.main([*argv[:-4], "--out", str(tmp_path / "b"), "--standalone-cache", str(cache),
                       "--strategy", "mos", "--strategy-options", '{"experts": 2}'])
    assert set(second["standalone_losses"][1:]) == {123.0}
    assert second["supernet_params"] > first["supernet_params"]  # the experts and the router


@needs_cifar
def test_darts_search_reports_a_genotype_and_its_evaluation_network(tmp_path: Path) -> None:
    ds = load_benchmark("darts_search")
    result = ds.main(["--data-dir", str(DATA), "--out", str(tmp_path), "--C", "2", "--layers", "3", "--subset", "20",
                      "--steps", "2", "--batch", "8", "--no-progress"])
    from supernet.spaces import from_genotype

    assert from_genotype(result["genotype"]) and from_genotype(result["argmax_genotype"])
    assert result["eval_params"] > 1_000_000 and 0.0 <= result["normal_parameter_free_share"] <= 1.0
    assert json.loads((tmp_path / "darts_search.json").read_text())["genotype"] == result["genotype"]


@needs_cifar
def test_proxyless_mobilenet_measures_the_found_arch_against_the_target(tmp_path: Path) -> None:
    pm = load_benchmark("proxyless_mobilenet")
    result = pm.main(["--data-dir", str(DATA), "--out", str(tmp_path), "--size", "16", "--subset", "20",
                      "--steps", "3", "--batch", "8", "--random", "1", "--standalone-steps", "2",
                      "--table-samples", "2", "--table-repeats", "1", "--max-tries", "30", "--no-progress"])
    assert result["found"]["measured_ms"] > 0 and result["target_ms"] > 0
    assert result["rows"][0]["role"] == "found" and len(result["rows"]) <= 2
    assert result["table"]["fit"] == "monotone" and result["table"]["min_entry_ms"] >= 0
    assert (tmp_path / "latency.json").is_file() and "| found |" in (tmp_path / "proxyless.md").read_text()


def test_demo_presets_runs_the_demo_with_overrides_and_refuses_unknown_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from supernet.demo import DemoPreset

    dp = load_benchmark("demo_presets")
    tiny = {**dataclasses.asdict(DemoPreset.tiny()), "strategy": "sandwich", "finetune_steps": 0}
    result = dp.main([str(tmp_path / "run"), json.dumps(tiny)])
    assert list(result["members"]) == ["smallest", "found", "largest"] and result["finetune"] is None
    assert json.loads((tmp_path / "run" / "run.json").read_text())["strategy"]["name"] == "sandwich"
    with pytest.raises(SystemExit):
        dp.main([str(tmp_path / "other"), '{"stepz": 3}'])
    assert "unknown DemoPreset fields ['stepz']" in capsys.readouterr().err


def test_vkdnw_jacobian_modes_agree_on_the_score() -> None:
    vj = load_benchmark("vkdnw_jacobian")
    (row,) = vj.main(["--archs", "1", "--batch", "8", "--C", "4", "--N", "1"])
    assert row["reverse_s"] > 0 and row["forward_s"] > 0
    assert row["reverse_entropy"] == pytest.approx(row["forward_entropy"], rel=1e-6)
