"""CLI end to end on tiny settings: demo, train, search, export, finetune; config errors; --help examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import supernet as sn
from supernet.cli import COMMANDS, build_parser, main
from supernet.config import PipelineConfig, SearchConfig, load_section
from supernet.export import load, load_metadata
from supernet.training import ConfigError, load_run

TINY_YAML = """
run_dir: {run_dir}
device: cpu
space: {{name: gpt, kwargs: {{block_size: 8, embed_dims: [8, 16], num_heads: [1, 2], mlp_ratios: [2],
        depths: [1, 2], head_dim: 4}}}}
data: {{name: shakespeare}}
train: {{steps: 3, batch_size: 4, strategy: uniform, progress: false}}
search: {{algorithm: random, trials: 5, eval_batches: 1, eval_batch_size: 8, bn_batches: 0}}
"""


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--tiny", "--device", "cpu", "--out", str(out)]) == 0
    return out


def test_demo_tiny_runs_end_to_end(demo_dir: Path) -> None:
    for name in (
        "run.json",
        "pipeline.json",
        "search/pareto.json",
        "search/pareto.csv",
        "search/pareto.png",
        "model/model.safetensors",
        "model/README.md",
        "demo.json",
    ):
        assert (demo_dir / name).is_file(), name
    summary = json.loads((demo_dir / "demo.json").read_text())
    assert summary["exported"]["params"] <= summary["params_budget"]
    assert summary["sample"].startswith("ROMEO:") and len(summary["sample"]) > 20
    model = load(demo_dir / "model")
    space = load_run(demo_dir).space.eval()
    space.set_arch(summary["exported"]["arch"])
    x = torch.randint(0, 65, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(x), space(x), rtol=0, atol=1e-6)


def test_search_export_finetune_commands(demo_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "search",
                str(demo_dir),
                "--algorithm",
                "evolution",
                "--study-name",
                "evo",
                "--trials",
                "5",
                "--population-size",
                "2",
                "--eval-batches",
                "1",
                "--constraint",
                "params <= 12k",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "Pareto front" in capsys.readouterr().out
    pareto = json.loads((demo_dir / "search" / "pareto.json").read_text())
    assert pareto["algorithm"] == "evolution" and all(e["metrics"]["params"] <= 12000 for e in pareto["front"])
    out = demo_dir / "exported"
    assert main(["export", str(demo_dir), "--arch", "0", "--out", str(out)]) == 0
    assert load_metadata(out)["arch"] == pareto["front"][0]["arch"]
    before = load(out).state_dict()
    assert (
        main(
            [
                "finetune",
                str(out),
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--eval-batches",
                "1",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    meta = load_metadata(out)
    assert len(meta["finetune"]) == 1 and "finetuned_val_loss" in meta["metrics"]
    after = load(out).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_train_command_from_yaml(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_YAML.format(run_dir=run_dir))
    assert main(["train", str(cfg)]) == 0
    assert json.loads((run_dir / "run.json").read_text())["step"] == 3
    assert PipelineConfig.from_dict(json.loads((run_dir / "pipeline.json").read_text())).train.steps == 3
    assert main(["search", str(run_dir), "--no-progress", "--device", "cpu"]) == 0  # settings from pipeline.json
    assert json.loads((run_dir / "search" / "pareto.json").read_text())["distinct_archs"] == 5


def test_config_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'search\.trails'"):
        PipelineConfig.from_dict({"search": {"trails": 5}})
    with pytest.raises(ConfigError, match=r"'train\.steps'.*integer"):
        PipelineConfig.from_dict({"train": {"steps": "ten"}})
    with pytest.raises(ConfigError, match=r"'search\.constraints'.*metric op number"):
        PipelineConfig.from_dict({"search": {"constraints": ["params is small"]}})
    with pytest.raises(ConfigError, match=r"'space\.name'.*unknown space"):
        PipelineConfig.from_dict({"space": {"name": "resnet"}})
    with pytest.raises(ConfigError, match=r"'algorithm'.*unknown search algorithm 'bayes'"):
        load_section(SearchConfig, {"algorithm": "bayes"}, "search config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 3\n")
    assert main(["train", str(bad)]) == 2
    assert "unknown key 'train.stepz'" in capsys.readouterr().err


def test_every_command_has_help_with_an_example() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "demo" in a.choices)
    for name in ("demo", "train", "search", "export", "finetune"):
        assert name in COMMANDS
        text = sub.choices[name].format_help()
        assert "example" in text and f"supernet {name}" in text, name


def test_cli_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(tmp_path)]) == 2
    assert "not a training run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert sn.cost is not None


def test_search_starts_from_a_shiftnas_generator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import optuna

    from supernet.searching import arch_key
    from supernet.training.strategies.shiftnas import load_generator

    run_dir = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_YAML.format(run_dir=run_dir).replace("strategy: uniform", "strategy: shiftnas"))
    assert main(["train", str(cfg)]) == 0
    assert main(["search", str(run_dir), "--start-generated", "4", "--no-progress", "--device", "cpu"]) == 0
    start = load_generator(run_dir).spread(4)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{run_dir / 'search' / 'study.db'}")
    space = load_run(run_dir).space
    first = [t.user_attrs["key"] for t in sorted(study.trials, key=lambda t: t.number)[: len(start)]]
    assert first == [arch_key(space, a) for a in start]

    uniform_dir = tmp_path / "uniform"
    cfg.write_text(TINY_YAML.format(run_dir=uniform_dir))
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["search", str(uniform_dir), "--start-generated", "4", "--no-progress", "--device", "cpu"]) == 2
    assert "trained with uniform, not shiftnas" in capsys.readouterr().err


def test_search_screens_with_a_label_free_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(TINY_YAML.format(run_dir=run_dir))
    assert main(["train", str(cfg)]) == 0
    args = ["search", str(run_dir), "--no-progress", "--device", "cpu", "--trials", "3"]
    assert main([*args, "--screen", "params,nwot", "--screen-reference", "4", "--screen-candidates", "3"]) == 0
    assert json.loads((run_dir / "search" / "pareto.json").read_text())["distinct_archs"] == 3
    # screening by params alone among many proposals: the first arch evaluated is the largest
    assert main([*args, "--study-name", "big", "--trials", "1", "--screen", "params", "--screen-candidates", "32"]) == 0
    import optuna

    study = optuna.load_study(study_name="big", storage=f"sqlite:///{run_dir / 'search' / 'study.db'}")
    space = load_run(run_dir).space
    first = min(study.trials, key=lambda t: t.number).user_attrs["arch"]
    assert sn.cost.params(space.extract(first)) == sn.cost.params(space.extract(space.max_arch()))
    capsys.readouterr()
    assert main([*args, "--study-name", "other", "--screen", "params,bogus"]) == 2
    assert "--screen: unknown signals ['bogus']" in capsys.readouterr().err
