"""Input validation: space kwargs, data/space fit, arch values and config types give errors naming the culprit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import supernet as sn
from supernet.cli import main
from supernet.config import PipelineConfig
from supernet.data.config import DataConfig
from supernet.spaces import SpaceError, build_space, check_space_kwargs
from supernet.training import ClassificationTask, ConfigError, TrainConfig, make_task
from supernet.training.tasks import check_fits
from tiny_spaces import TINY, tiny_space

# --- space kwargs -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"n_layer": 2}, r"unknown keyword 'n_layer'; accepted keywords: vocab_size, block_size, embed_dims"),
        ({"embed_dims": "abc"}, r"'embed_dims'.*expected Sequence\[int\]"),
        ({"block_size": True}, r"'block_size'.*expected int, not a boolean"),
        ({"head_dim": 2.5}, r"'head_dim'.*expected int.*fractional"),
        ({"embed_dims": [16, "x"]}, r"'embed_dims'\[1\].*expected Sequence\[int\]"),
        ({"mlp_ratios": None}, r"'mlp_ratios'"),
    ],
)
def test_bad_space_kwargs_name_the_keyword(kwargs: dict, pattern: str) -> None:
    with pytest.raises(SpaceError, match=pattern):
        build_space("gpt", **kwargs)
    with pytest.raises(ConfigError, match=r"'space\.kwargs'.*space 'gpt': .*" + pattern):
        PipelineConfig.from_dict({"space": {"name": "gpt", "kwargs": kwargs}})


def test_strings_are_coerced_to_numbers_and_the_spec_records_the_result() -> None:
    space = build_space("gpt", **{**TINY["gpt"], "block_size": "8"})
    assert space.spec["kwargs"]["block_size"] == 8
    assert check_space_kwargs("nb201", {"C": 4}) == {"C": 4}
    assert PipelineConfig.from_dict({"space": {"name": "nb201", "kwargs": {"C": 4, "N": 1}}}).space.kwargs == {
        "C": 4,
        "N": 1,
    }


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"embed_dims": []}, "needs at least one option"),
        ({"vocab_size": -3}, "negative dimension"),
        ({"num_heads": [-1]}, ""),
        ({"depths": [2, 2]}, "repeated"),
    ],
)
def test_bad_values_are_the_librarys_error_naming_the_space(kwargs: dict, pattern: str) -> None:
    with pytest.raises(SpaceError, match=r"space 'gpt' could not be built from \(.*\): .*" + pattern) as err:
        build_space("gpt", **{**TINY["gpt"], **kwargs})
    assert isinstance(err.value, ValueError) and isinstance(err.value, ConfigError)


def test_unknown_space_name_is_a_key_error_and_a_config_error() -> None:
    with pytest.raises(KeyError, match=r"unknown space 'resnet'.*gpt.*module:function") as err:
        build_space("resnet")
    assert isinstance(err.value, SpaceError)
    assert "'unknown" not in str(err.value)  # not quoted like a bare KeyError


def test_bad_space_kwargs_fail_the_cli_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"run_dir: {run_dir}\nspace: {{name: gpt, kwargs: {{embed_dims: abc}}}}\n")
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "'space.kwargs'" in err and "'embed_dims'" in err
    assert not run_dir.exists()


# --- module:function names ----------------------------------------------------------------------------------------

MODULE = """
import supernet as sn
from torch import nn

def good(width: int = 4) -> sn.SuperModule:
    return sn.SuperModule(nn.Sequential(sn.Linear(3, sn.Choice([2, width])), nn.ReLU()))

def unmarked(width=4):
    return sn.SuperModule(nn.Sequential(sn.Linear(3, sn.Choice([2, width]))))

def not_a_space() -> sn.SuperModule:
    return nn.Linear(2, 2)

def broken(width: int = 4) -> sn.SuperModule:
    return sn.SuperModule(nn.Sequential(sn.Linear(3, sn.Choice([width, width]))))

NUMBER = 3
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "sn_validation_user_mod"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, name, raising=False)
    return name


def test_module_function_names_are_checked_clearly(user_module: str) -> None:
    space = build_space(f"{user_module}:good", width=8)
    assert space.spec == {"space": f"{user_module}:good", "kwargs": {"width": 8}}
    assert PipelineConfig.from_dict({"space": {"name": f"{user_module}:good"}}).space.name == f"{user_module}:good"
    cases = {
        "no_such_mod_xyz:fn": r"cannot import module 'no_such_mod_xyz'",
        f"{user_module}:missing": r"has no attribute 'missing'",
        f"{user_module}:NUMBER": r"is a int, not a function",
        f"{user_module}:unmarked": r"not declared as a space factory: annotate",
        "os:system": r"not declared as a space factory",
        "a b:c": r"unknown space",
    }
    for name, pattern in cases.items():
        with pytest.raises(SpaceError, match=pattern):
            build_space(name)
        with pytest.raises(ConfigError, match=r"'space\.name'.*" + pattern):
            PipelineConfig.from_dict({"space": {"name": name}})
    with pytest.raises(SpaceError, match=r"returned a Linear, not a supernet.SuperModule"):
        build_space(f"{user_module}:not_a_space")
    with pytest.raises(SpaceError, match=r"space '.*:broken' could not be built .*repeated"):
        build_space(f"{user_module}:broken")
    with pytest.raises(SpaceError, match=r"'width'.*expected int"):
        build_space(f"{user_module}:good", width="wide")
    with pytest.raises(ConfigError, match=r"unknown keyword 'depth'; accepted keywords: width"):
        PipelineConfig.from_dict({"space": {"name": f"{user_module}:good", "kwargs": {"depth": 2}}})


# --- data / space fit ---------------------------------------------------------------------------------------------


def _images(channels: int = 3, classes: int = 10, n: int = 20) -> ClassificationTask:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, channels, 8, 8, generator=g)
    y = torch.arange(n) % classes
    return ClassificationTask((x, y), (x, y))


def test_gpt_space_on_digits_is_refused_naming_both() -> None:
    task = make_task(sn.data.digits())
    with pytest.raises(ConfigError, match=r"the classification data \(num_classes=10.*does not fit space 'gpt'"):
        check_fits(tiny_space("gpt"), task)


def test_vocab_too_small_for_shakespeare() -> None:
    task = make_task(sn.data.shakespeare(), block_size=8)
    pattern = r"the lm data \(.*vocab_size=65.*does not fit space 'gpt'.*vocab too small.*vocab_size=65"
    with pytest.raises(ConfigError, match=pattern):
        check_fits(tiny_space("gpt", vocab_size=50), task)
    check_fits(tiny_space("gpt", vocab_size=65), task)
    check_fits(tiny_space("gpt", vocab_size=80), task)  # a larger vocab only wastes a few logits


def test_wrong_number_of_classes_is_refused() -> None:
    space = tiny_space("nb201", num_classes=5)
    with pytest.raises(ConfigError, match=r"space 'nb201'.*outputs 5 classes but the data has 10.*num_classes=10"):
        check_fits(space, _images())
    with pytest.raises(ConfigError, match=r"space 'nb201'.*fails on an example batch: RuntimeError"):
        check_fits(tiny_space("nb201"), _images(channels=1))


def test_check_fits_restores_arch_and_mode_and_train_refuses_before_writing(tmp_path: Path) -> None:
    space = tiny_space("nb201")
    arch = space.sample(seed=3)
    space.set_arch(arch)
    space.train()
    check_fits(space, _images())
    assert space.arch == arch and space.training
    space.eval()
    with pytest.raises(ConfigError):
        check_fits(space, _images(classes=4))
    assert space.arch == arch and not space.training
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="does not fit"):
        sn.train(tiny_space("nb201", num_classes=4), _images(), "uniform", {"steps": 1, "progress": False},
                 run_dir=run_dir)
    assert not (run_dir / "run.json").exists()


def test_hand_built_space_is_named_by_class() -> None:
    net = nn.Sequential(nn.Flatten(), sn.Linear(192, sn.Choice([4, 8])), nn.ReLU(), sn.Linear(sn.Choice([4, 8]), 3))
    with pytest.raises(ConfigError, match=r"space SuperModule\(Sequential\)"):
        check_fits(sn.SuperModule(net), _images())


# --- arch values --------------------------------------------------------------------------------------------------


def test_arch_values_may_be_numpy_or_one_element_tensors() -> None:
    space = tiny_space("gpt")
    arch = space.max_arch()
    for value in (np.int64(16), np.array([16]), np.array(16), torch.tensor(16), torch.tensor([16]), np.float64(16)):
        got = space.validate({**arch, "embed_dim": value})
        assert got["embed_dim"] == 16 and type(got["embed_dim"]) is int
    space.set_arch({**arch, "embed_dim": torch.tensor([16])})
    assert space.arch["embed_dim"] == 16
    for value in (np.array([16, 24]), torch.tensor([16, 24]), np.array([]), torch.zeros(2, 1)):
        with pytest.raises(sn.InvalidOptionError, match="decision 'embed_dim' takes one option"):
            space.set_arch({**arch, "embed_dim": value})
    for value in (np.bool_(True), torch.tensor(True), [16], None, {"a": 1}):
        with pytest.raises(sn.InvalidOptionError, match="decision 'embed_dim' does not allow"):
            space.validate({**arch, "embed_dim": value})


def test_choice_options_are_checked() -> None:
    assert sn.Choice(np.array([2, 3])).options == (2, 3)
    with pytest.raises(TypeError, match="list of options"):
        sn.Choice("abc")
    with pytest.raises(TypeError, match="list of options"):
        sn.Choice(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        sn.Choice([1.0, float("nan")])


# --- config types -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("train", "steps", True),
        ("train", "lr", False),
        ("train", "grad_clip", True),
        ("train", "block_size", True),
        ("train", "betas", [True, 0.9]),
        ("data", "seed", True),
        ("data", "val_fraction", True),
        ("search", "trials", True),
        ("search", "bn_batches", False),
        ("finetune", "lr", True),
    ],
)
def test_booleans_are_not_numbers(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"'{section}\.{key}'.*not a boolean"):
        PipelineConfig.from_dict({section: {key: value}})


def test_train_config_types() -> None:
    with pytest.raises(ConfigError, match=r"'steps'.*not a boolean"):
        TrainConfig.from_dict({"steps": True})
    assert TrainConfig.from_dict({"steps": "3", "lr": "0.01", "nesterov": True}).steps == 3
    with pytest.raises(ConfigError, match=r"'lr'.*finite"):
        TrainConfig.from_dict({"lr": float("inf")})
    with pytest.raises(ConfigError, match=r"'betas'.*\[0, 1\)"):
        TrainConfig.from_dict({"betas": [0.9, 1.5]})
    with pytest.raises(ConfigError, match=r"'seed'.*greater than or equal to 0"):
        TrainConfig.from_dict({"seed": -1})
    with pytest.raises(ConfigError, match=r"'data\.seed'"):
        PipelineConfig.from_dict({"data": {"seed": -1}})
    assert DataConfig(name="digits", seed="2").seed == 2


def test_unknown_nested_key_lists_that_sections_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'search\.trails'\n.*allowed keys in 'search': algorithm"):
        PipelineConfig.from_dict({"search": {"trails": 5}})
