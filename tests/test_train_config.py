"""Training configs: unknown keys and bad values give errors that name the key."""

from __future__ import annotations

import pytest

import supernet as sn
from supernet.training import ConfigError, TrainConfig, lr_at
from supernet.training.strategies import get_strategy, make_strategy
from test_train_common import mlp_space, vector_task


def test_unknown_key_is_named_with_the_allowed_keys():
    with pytest.raises(ConfigError, match="unknown key 'lrr'") as err:
        TrainConfig.from_dict({"lrr": 0.1})
    assert "allowed keys" in str(err.value) and "lr" in str(err.value)


def test_wrong_type_names_the_key_and_the_expectation():
    with pytest.raises(ConfigError, match=r"'steps'.*integer"):
        TrainConfig.from_dict({"steps": "ten"})
    with pytest.raises(ConfigError, match=r"'optimizer'.*'adamw' or 'sgd'"):
        TrainConfig.from_dict({"optimizer": "adam"})
    with pytest.raises(ConfigError, match=r"'batch_size'.*greater than 0"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match="min_lr"):
        TrainConfig.from_dict({"lr": 1e-3, "min_lr": 1e-2})


def test_yaml_config(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("steps: 5\nlr: 0.01\nstrategy: sandwich\nstrategy_options:\n  num_random: 1\n")
    cfg = TrainConfig.from_yaml(good)
    assert cfg.steps == 5 and cfg.strategy == "sandwich" and cfg.strategy_options == {"num_random": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 5\nwarmup: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'warmup'"):
        TrainConfig.from_yaml(bad)


def test_strategy_options_are_validated_by_the_strategy():
    with pytest.raises(ConfigError, match="strategy 'sandwich' options: unknown key 'num_randm'"):
        make_strategy("sandwich", {"num_randm": 3})
    with pytest.raises(ConfigError, match="'alpha_min'"):
        make_strategy("alpha", {"alpha_min": -2.0})
    with pytest.raises(ConfigError, match="phases"):
        make_strategy("progressive", {"phases": {"fulll": 1.0}})
    with pytest.raises(ValueError, match=r"unknown strategy 'spos'.*uniform"):
        get_strategy("spos")
    with pytest.raises(ConfigError, match="strategy 'fair' options: unknown key 'x'"):
        sn.train(mlp_space(), vector_task(), config={"steps": 1, "strategy": "fair", "strategy_options": {"x": 1}})


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resume=True needs a run_dir"):
        sn.train(mlp_space(), vector_task(), "uniform", {"steps": 1, "progress": False}, resume=True)
    with pytest.raises(TypeError, match="cannot train on str"):
        sn.train(mlp_space(), "data", "uniform", {"steps": 1, "progress": False})
    with pytest.raises(ValueError, match="block_size"):
        sn.train(mlp_space(), sn.data.char_text("abc" * 50), "uniform", {"steps": 1, "progress": False})


def test_learning_rate_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, min_lr=0.1, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    # segments restart the cosine (progressive shrinking phases)
    seg = TrainConfig(steps=40, lr=1.0, min_lr=0.0)
    assert lr_at(20, seg, [20, 40]) == pytest.approx(1.0) and lr_at(19, seg, [20, 40]) < 0.01
    assert TrainConfig(schedule="constant", lr=0.5).model_dump()["lr"] == 0.5


def test_strategy_argument_conflicting_with_config_is_an_error():
    cfg = {"steps": 1, "progress": False, "strategy": "fair", "strategy_options": {"group": "lcm"}}
    with pytest.raises(ValueError, match="pass one of them"):
        sn.train(mlp_space(), vector_task(), "sandwich", cfg)
    # options without a named strategy go to the strategy passed
    run = sn.train(mlp_space(), vector_task(), "sandwich",
                   {"steps": 1, "progress": False, "strategy_options": {"num_random": 0}}, device="cpu")
    assert run.strategy.options.num_random == 0 and run.config.strategy == "sandwich"


def test_bf16_autocast_eval_logging_and_progress_bar(capsys):
    cfg = {"steps": 4, "batch_size": 8, "precision": "bf16", "eval_every": 2, "eval_batches": 2, "log_every": 2,
           "progress": True}
    run = sn.train(mlp_space(), vector_task(), "sandwich", cfg, device="cpu")
    assert [r["step"] for r in run.history] == [2, 4]
    rec = run.history[-1]
    for key in ("loss", "lr", "samples_per_s", "val_loss_max", "val_loss_min", "loss_max"):
        assert key in rec and rec[key] == rec[key]  # present and not NaN
    assert "samples_s" in capsys.readouterr().err  # the tqdm bar shows loss, lr and samples/s
