"""benchmarks/ranking_matrix.py: the matched-compute rule, the table from report.json files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import supernet as sn
from benchmark_scripts import load_benchmark
from supernet.training import STRATEGIES, Strategy

NB201 = sn.spaces.nb201(C=4, N=1)  # 6 edges x 5 ops


rm = load_benchmark("ranking_matrix")


@pytest.mark.parametrize(
    ("name", "steps", "paths"),
    [("uniform", 4500, 1), ("pada", 4500, 1), ("fair", 900, 5), ("sandwich", 1125, 4), ("alpha", 1125, 4),
     ("progressive", 4500, 1)],
)
def test_matched_steps_equal_path_examples(name: str, steps: int, paths: int) -> None:
    assert rm.matched_steps(name, STRATEGIES.get(name), 4500, NB201) == (steps, paths)


def test_matched_steps_rounds_and_keeps_one_step() -> None:
    assert rm.matched_steps("fair", STRATEGIES.get("fair"), 4, NB201) == (1, 5)  # round(0.8), at least 1
    assert rm.matched_steps("sandwich", STRATEGIES.get("sandwich"), 7652, NB201) == (1913, 4)
    with pytest.raises(ValueError, match=">= 1"):
        rm.matched_steps("uniform", STRATEGIES.get("uniform"), 0, NB201)


def test_fair_follows_the_option_counts() -> None:
    net = nn.Sequential(*(sn.Linear(4, sn.Choice(list(range(4, 4 + k)))) for k in (2, 3, 4)))
    assert rm.paths_per_step("fair", STRATEGIES.get("fair"), sn.SuperModule(net)) == 4  # group="max"


def test_every_registered_strategy_gets_a_count_or_a_reason() -> None:
    for name, cls in STRATEGIES.items():  # a strategy added later: declared, or refused with a message
        try:
            assert rm.paths_per_step(name, cls, NB201) >= 1
        except ValueError as err:
            assert repr(name) in str(err)


def test_gradient_strategies_are_refused() -> None:
    for name in ("darts", "drnas", "gdas"):
        with pytest.raises(ValueError, match="held-out images the archs are ranked on"):
            rm.matched_steps(name, STRATEGIES.get(name), 100, NB201)


def test_a_strategy_declares_its_paths_per_step() -> None:
    class Declared(Strategy):
        def paths_per_step(self, space: sn.SuperModule) -> int | None:
            return 3

    class Silent(Strategy):
        pass

    class Broken(Strategy):
        def paths_per_step(self, space: sn.SuperModule) -> int | None:
            return 0

    assert rm.matched_steps("test_declared", Declared, 4500, NB201) == (1500, 3)
    assert rm.matched_steps("test_silent", Silent, 4500, NB201) == (4500, 1)  # the base class: one path
    with pytest.raises(ValueError, match="must be a positive int, got 0"):
        rm.matched_steps("test_broken", Broken, 4500, NB201)


def test_unknown_strategy_fails_at_once(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown strategy 'nope'; registered strategies: uniform, .*sandwich"):
        rm.load_strategies(["uniform", "nope"])
    assert rm.main(["--strategies", "uniform,nope", "--preset", "tiny", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'nope'" in err and "uniform" in err
    assert not (tmp_path / "m").exists()  # nothing ran


def _report(strategy: str, seed: int, steps: int, tau: float, verdict: str) -> dict[str, Any]:
    """A bench report.json with the keys `supernet.bench.nb201.build_report` writes (values made up)."""

    def est(value: float) -> dict[str, Any]:
        return {"value": value, "low": value - 0.2, "high": value + 0.1, "confidence": 0.95}

    return {
        "format": "supernet-bench",
        "version": 1,
        "benchmark": "nb201",
        "config": {"preset": "tiny", "strategy": strategy, "seed": seed, "steps": steps, "batch_size": 16},
        "data": {"train_images": 100, "holdout_images": 100},
        "sampled_archs": 4,
        "metrics": {
            "kendall_tau": est(tau),
            "sparse_kendall_tau": est(tau - 0.01),
            "spearman_rho": est(tau + 0.05),
            "regret": est(0.5),
            "precision@0.1": est(1.0),
            "top0.1_overlap": est(1.0),
            "precision@0.05": est(0.0 if seed else 1.0),
            "top0.05_overlap": est(0.0),
        },
        "floors": {"readme_flops_tau_all": 0.574, "flops_tau": est(0.5), "params_tau": est(0.45),
                   "flops_tau_all": {"value": 0.53, "low": None, "high": None}},
        "verdict": verdict,
        "top_predicted": {"key": "|a|", "true": 90.0, "regret": 1.5 + seed, "relative_improvement": 1.0},
        "timing": {"train_s": 10.0 + seed, "eval_s": 2.0, "total_s": 15.0, "sessions": 1},
    }


def test_table_from_report_files(tmp_path: Path) -> None:
    from supernet.files import write_json

    uniform, sandwich = STRATEGIES.get("uniform"), STRATEGIES.get("sandwich")
    cells = rm.plan_cells({"uniform": uniform, "sandwich": sandwich}, [0, 1], 8, 16, tmp_path, NB201)
    assert [(c.strategy, c.seed, c.steps, c.path_examples) for c in cells] == [
        ("uniform", 0, 8, 128), ("uniform", 1, 8, 128), ("sandwich", 0, 2, 128), ("sandwich", 1, 2, 128)]
    verdicts = ["above the FLOPs floor (beyond its CI)", "NOT above the FLOPs floor: this ranking adds nothing"]
    for cell, tau in zip(cells, (0.8, 0.6, 0.3, 0.1), strict=True):
        report = _report(cell.strategy, cell.seed, cell.steps, tau, verdicts[tau < 0.5])
        if tau == 0.8:  # a report of before the memory figures has none: n/a
            report["memory"] = {"supernet_params": 1_500_000.0, "supernet_mib": 5.7, "peak_rss_mib": 812.4}
        write_json(cell.out / "report.json", report)
    rows = [rm.cell_row(c, rm.read_report(c)) for c in cells]

    assert rows[0]["tau"] == 0.8 and rows[0]["wall_s"] == 12.0 and rows[0]["regret"] == 1.5
    assert rows[0]["flops_tau"] == 0.5 and rows[0]["params_tau"] == 0.45 and rows[0]["p5"] == 1.0
    assert [r["beats_flops"] for r in rows] == ["yes", "yes", "no", "no"]
    summary = rm.summary_rows(rows)
    assert [s["strategy"] for s in summary] == ["uniform", "sandwich"]
    assert summary[0]["tau"] == pytest.approx(0.7) and summary[0]["wall_s"] == pytest.approx(12.5)
    assert summary[0]["tau_sd"] == pytest.approx(0.1414, abs=1e-3) and summary[1]["p5"] == pytest.approx(0.5)

    settings = {"preset": "tiny", "base_steps": 8, "batch_size": 16, "target_path_examples": 128}
    md = rm.write_matrix(tmp_path, rows, settings, [])
    lines = md.splitlines()
    first = (
        "| uniform | 0 | 8 x 1 | 128 | "
        "0.800 [0.600, 0.900] | 0.790 | 0.850 | 1.00 | 1.50 | 0.500 | 0.450 | yes | 12 | 1.50 | 812 |"
    )
    assert first in lines
    assert any(line.startswith("| uniform | 1 |") and line.endswith("| n/a | n/a |") for line in lines)
    assert any(line.startswith("| **sandwich** | **mean of 2** | **2 x 4** | **128** | **0.200 ± 0.141 (sd)**")
               for line in lines)
    assert (tmp_path / "matrix.md").read_text() == md
    saved = json.loads((tmp_path / "matrix.json").read_text())
    assert len(saved["cells"]) == 4 and saved["summary"][1]["tau"] == pytest.approx(0.2)


def test_finished_cell_with_other_settings_is_not_reused(tmp_path: Path) -> None:
    from supernet.files import write_json

    (cell,) = rm.plan_cells({"sandwich": STRATEGIES.get("sandwich")}, [0], 8, 16, tmp_path, NB201)
    write_json(cell.out / "report.json", _report("sandwich", 0, 8, 0.5, ""))  # 8 steps, the matrix wants 2
    with pytest.raises(ValueError, match="steps: report has 8, matrix wants 2"):
        rm.read_report(cell)


def test_cell_command_passes_flags_through(tmp_path: Path) -> None:
    args = rm.build_parser().parse_args(
        ["--preset", "tiny", "--archs", "7", "--epochs", "2", "--data-dir", "D", "--plugins", "mine"]
    )
    cell = rm.Cell("sandwich", 3, 5, 4, 16, tmp_path / "sandwich-s3")
    cmd = rm.cell_command(cell, args)
    i = cmd.index("bench")
    assert cmd[i:] == ["bench", "nb201", "--preset", "tiny", "--strategy", "sandwich", "--seed", "3", "--steps", "5",
                       "--out", str(cell.out), "--epochs", "2.0", "--archs", "7", "--data-dir", "D", "--threads", "1"]
    assert rm.cell_env(args)["SUPERNET_PLUGINS"].endswith("mine")


def test_a_variant_is_a_strategy_with_options_in_its_own_row(tmp_path: Path) -> None:
    from supernet.files import write_json

    variants = rm.parse_variants(['fewshot-pada=fewshot:{"inner": "pada", "warmup": 0.4}', "plain=uniform"])
    assert variants == {"fewshot-pada": ("fewshot", {"inner": "pada", "warmup": 0.4}), "plain": ("uniform", {})}
    classes = {"fewshot-pada": STRATEGIES.get("fewshot"), "gm": STRATEGIES.get("gm")}
    cells = rm.plan_cells(classes, [0], 100, 16, tmp_path, NB201, variants)
    fs, gm = cells
    assert (fs.name, fs.strategy, fs.out.name, fs.paths_per_step, fs.steps) == ("fewshot-pada", "fewshot",
                                                                                 "fewshot-pada-s0", 1, 100)
    assert (gm.name, gm.options) == ("gm", None)
    args = rm.build_parser().parse_args(["--preset", "tiny"])
    cmd = rm.cell_command(fs, args)
    i = cmd.index("--strategy-options")
    assert cmd[i - 1] == "fewshot" and json.loads(cmd[i + 1]) == {"inner": "pada", "warmup": 0.4}
    report = _report("fewshot", 0, 100, 0.5, "")
    report["config"]["strategy_options"] = {"inner": "uniform"}
    write_json(fs.out / "report.json", report)
    with pytest.raises(ValueError, match="strategy_options: report has"):
        rm.read_report(fs)
    # a fewshot row with a sandwich inner strategy gets sandwich's matched steps
    (sw,) = rm.plan_cells({"fs-sw": STRATEGIES.get("fewshot")}, [1], 100, 16, tmp_path, NB201,
                          {"fs-sw": ("fewshot", {"inner": "sandwich"})})
    assert (sw.steps, sw.paths_per_step) == (25, 4)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("nolabel", "expected LABEL=STRATEGY"), ("a=fewshot:{bad", "not JSON"), ("a=fewshot:[1]", "JSON object")],
)
def test_bad_variants_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rm.parse_variants([text])
    with pytest.raises(ValueError, match="given twice"):
        rm.parse_variants(["a=uniform", "a=fair"])


def test_a_variant_not_in_the_strategies_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert rm.main(["--strategies", "uniform", "--variant", "x=fewshot", "--preset", "tiny"]) == 2
    assert "--variant x not named in --strategies" in capsys.readouterr().err
