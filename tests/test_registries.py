"""One registry per method family: a method of your own is one file outside the package, usable from the Python API,
a YAML config and the command line with no other edit; and the `Registry` class itself."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import supernet as sn
from supernet.cli import main
from supernet.config import PipelineConfig
from supernet.gradient import MIXERS
from supernet.predictors import PREDICTORS
from supernet.proxies import PROXIES
from supernet.registry import Registry, UnknownNameError, load_plugins
from supernet.spaces import SPACES, UnknownSpaceError
from supernet.training import STRATEGIES, ConfigError, TrainConfig
from supernet.training.strategies import make_strategy

MODULE = "toy_methods"

TOY = '''
"""Methods of one user module, each registered with the public decorators."""

import torch
from torch import nn

import supernet as sn


@sn.training.register_strategy("toy_max")
class ToyMax(sn.training.Strategy):
    """Toy strategy: trains only the largest arch."""

    def step(self, ctx, batch):
        x, y = batch
        arch = ctx.space.max_arch()
        loss = ctx.loss(ctx.forward(arch, x), y)
        ctx.backward(loss)
        return sn.training.StepOutput(loss.detach(), [arch])


@sn.proxies.register_proxy("toy_width")
def toy_width(net, batch, seed=0):
    """Toy proxy: the output features of every Linear layer, summed."""
    return float(sum(m.out_features for m in net.modules() if isinstance(m, nn.Linear)))


@sn.spaces.register_space("toy_mlp")
def toy_mlp(widths: list[int] = [4, 8], in_channels: int = 1, image_size: int = 8, classes: int = 10) -> sn.SuperModule:
    """Toy space: an MLP on small images with one width choice."""
    width = sn.Choice(widths, name="width")
    features = in_channels * image_size * image_size
    return sn.SuperModule(
        nn.Sequential(nn.Flatten(), sn.Linear(features, width), nn.ReLU(), sn.Linear(width, classes))
    )
'''

TOY_NAMES = {"toy_max", "toy_width", "toy_mlp"}


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Writes the toy module into a folder on ``sys.path`` (not imported yet); afterwards the registries are as
    before, so other tests see only the built-in methods."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(TOY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    registries = (SPACES, STRATEGIES, PROXIES)
    before = [set(r) for r in registries]
    sys.modules.pop(MODULE, None)
    try:
        yield folder
    finally:
        sys.modules.pop(MODULE, None)
        for registry, names in zip(registries, before, strict=True):
            for name in set(registry) - names:
                registry.remove(name)


def _import_toy():  # type: ignore[no-untyped-def]
    load_plugins([MODULE])
    return sys.modules[MODULE]


# --------------------------------------------------------------------------------------------- a method of your own


def test_toy_methods_from_the_python_api(toy: Path) -> None:
    assert not TOY_NAMES & (set(SPACES) | set(STRATEGIES) | set(PROXIES))
    module = _import_toy()

    space = sn.spaces.build_space("toy_mlp", widths=[4, 16])
    assert space.choices == {"width": (4, 16)}
    assert space.spec == {"space": "toy_mlp", "kwargs": {"widths": [4, 16], "in_channels": 1, "image_size": 8,
                                                         "classes": 10}}

    batch = (torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,)))
    assert sn.proxies.score(space, batch, arch={"width": 16}, names=["toy_width"]) == {"toy_width": 26.0}
    assert "toy_width" in sn.proxies.score(space, batch, arch={"width": 4})  # default: every registered proxy

    run = sn.train(space, sn.data.digits(), strategy="toy_max",
                   config={"steps": 2, "batch_size": 8, "progress": False}, device="cpu")
    assert isinstance(run.strategy, module.ToyMax) and run.strategy.name == "toy_max"
    assert isinstance(make_strategy("toy_max"), module.ToyMax)
    assert TrainConfig.from_dict({"strategy": "toy_max"}).strategy == "toy_max"


def test_toy_methods_from_a_yaml_config(toy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    body = f"""
run_dir: {run_dir}
device: cpu
space: {{name: toy_mlp, kwargs: {{widths: [4, 8]}}}}
data: {{name: digits}}
train: {{steps: 2, batch_size: 8, strategy: toy_max, progress: false}}
"""
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(body, encoding="utf-8")
    assert main(["train", str(cfg)]) == 2  # without the plug-in the names are unknown, and the error says so
    err = capsys.readouterr().err
    assert "unknown space 'toy_mlp'" in err and "gpt" in err

    cfg.write_text(f"plugins: [{MODULE}]\n" + body, encoding="utf-8")
    assert main(["train", str(cfg)]) == 0
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["strategy"]["name"] == "toy_max" and meta["space"]["space"] == "toy_mlp"
    assert json.loads((run_dir / "pipeline.json").read_text())["plugins"] == [MODULE]

    bad = tmp_path / "bad.yaml"
    bad.write_text(body.replace("strategy: toy_max", "strategy: toy_mx").replace(str(run_dir), str(tmp_path / "b")))
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'toy_mx'" in err and "toy_max" in err and "drnas" in err


def test_a_module_function_space_imports_the_module_that_registers_the_rest(toy: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown strategy 'toy_max'.*uniform.*darts"):
        PipelineConfig.from_dict({"train": {"strategy": "toy_max"}})
    cfg = PipelineConfig.from_dict({"space": {"name": f"{MODULE}:toy_mlp"}, "train": {"strategy": "toy_max"}})
    assert cfg.train.strategy == "toy_max" and "toy_width" in PROXIES


def test_toy_methods_on_the_command_line(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUPERNET_PLUGINS", MODULE)
    for command, expected in (
        (["train", "--help"], ["toy_max", "Toy strategy: trains only the largest arch.", "darts", "drnas", "gdas"]),
        (["proxies", "--help"], ["toy_mlp", "toy_width", "Toy proxy: the output features"]),
        (["predict", "fit", "--help"], ["gbdt", "pretrained_gbdt"]),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(command)
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert all(text in out for text in expected), (command, out)

    assert main(["info", "--methods"]) == 0
    out = capsys.readouterr().out
    for family in ("spaces", "training strategies", "gradient mixers", "proxies", "predictors"):
        assert family in out
    for name in (*TOY_NAMES, "Toy space: an MLP", "uniform", "darts", "gumbel", "nwot", "gbdt", "nb201"):
        assert name in out, name

    assert main(["info", "--space", "toy_mlp"]) == 0
    assert "width: [4, 8]" in capsys.readouterr().out

    out_file = tmp_path / "scores.json"
    kwargs = '{"in_channels": 1, "image_size": 8}'
    code = main(["proxies", "toy_mlp", "--proxies", "toy_width,params", "--archs", "2", "--batch-size", "4",
                 "--space-kwargs", kwargs, "--device", "cpu", "--out", str(out_file)])
    assert code == 0, capsys.readouterr().err
    rows = json.loads(out_file.read_text())
    assert sorted(r["toy_width"] for r in rows["rows"].values()) == [14.0, 18.0]


def test_a_plugin_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"'plugins'.*broken_plugin.*RuntimeError: boom"):
        PipelineConfig.from_dict({"plugins": ["broken_plugin"]})
    with pytest.raises(ConfigError, match="not a module name"):
        PipelineConfig.from_dict({"plugins": ["no such module"]})
    monkeypatch.setenv("SUPERNET_PLUGINS", "missing_plugin_module")
    assert main(["info", "--methods"]) == 2
    assert "SUPERNET_PLUGINS: importing plug-in module 'missing_plugin_module' failed" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- the registries


def test_every_family_has_a_registry_with_a_description_for_each_method() -> None:
    expected = {
        "space": (SPACES, {"gpt", "mobilenet", "nb201", "vit"}),
        "strategy": (STRATEGIES, {"uniform", "fair", "sandwich", "alpha", "progressive", "darts", "gdas", "drnas",
                                   "pada", "shiftnas", "fewshot", "gm", "mos", "proxyless"}),
        "mixer": (MIXERS, {"softmax", "dirichlet", "gumbel", "binary"}),
        "proxy": (PROXIES, {"synflow", "snip", "grasp", "fisher", "grad_norm", "plain", "jacov", "nwot", "gradsign",
                            "zen", "l2_norm", "params", "flops", "zico", "meco", "swap", "vkdnw", "az_expressivity",
                            "az_progressivity", "az_trainability"}),
        "predictor": (PREDICTORS, {"gbdt", "pretrained_gbdt"}),
    }
    for family, (registry, names) in expected.items():
        assert isinstance(registry, Registry) and registry.family == family
        assert names <= set(registry), family
        for name, text in registry.describe().items():
            assert len(text) > 15 and "`" not in text, (family, name, text)
    assert sn.proxies.DEFAULT_PROXIES == tuple(PROXIES) and len(set(PROXIES)) == 20
    assert all(STRATEGIES[name].name == name for name in STRATEGIES)
    assert all(MIXERS[name].name == name for name in MIXERS)


def test_unknown_names_list_the_registered_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"unknown strategy 'spos'; expected one of uniform, fair, .*drnas"):
        make_strategy("spos")
    with pytest.raises(ConfigError, match=r"'strategy': unknown strategy 'spos'.*sandwich.*gdas"):
        TrainConfig.from_dict({"strategy": "spos"})
    with pytest.raises(KeyError, match=r"unknown proxies \['nope'\]; available: .*nwot"):
        sn.proxies.score(sn.spaces.nb201(C=4, N=1), (torch.randn(2, 3, 8, 8), torch.tensor([0, 1])), names=["nope"])
    with pytest.raises(UnknownSpaceError, match="unknown space 'nope'") as err:
        sn.spaces.build_space("nope")
    assert isinstance(err.value, UnknownNameError) and isinstance(err.value, KeyError)
    with pytest.raises(UnknownNameError, match="unknown predictor 'svm'; expected one of gbdt, pretrained_gbdt"):
        PREDICTORS.get("svm")


def test_a_recorded_config_may_name_a_strategy_that_is_not_registered_here() -> None:
    from supernet.validation import RECORDED, validate_model

    config = validate_model(TrainConfig, {"strategy": "from_a_plugin"}, "run.json: config", context=RECORDED)
    assert config.strategy == "from_a_plugin"


def test_registry_registers_refuses_duplicates_and_describes() -> None:
    reg: Registry[object] = Registry("widget")

    @reg.register("a")
    class A:
        """An A widget.

        More text that is not part of the summary.
        """

    def b() -> None:
        """The ``b`` widget: a function."""

    assert reg.register("b")(b) is b
    assert reg.register("a")(A) is A  # the same object twice is harmless
    with pytest.raises(ValueError, match=r"widget 'a' is already registered \(.*A\); pick another name"):
        reg.register("a")(b)
    assert reg.register("a", replace=True)(b) is b and reg["a"] is b
    reg.register("a", replace=True)(A)

    assert reg.names() == ["a", "b"] == list(reg) == reg.keys() and len(reg) == 2 and "a" in reg
    assert reg.items() == [("a", A), ("b", b)] and reg.values() == [A, b] and dict(reg) == {"a": A, "b": b}
    assert reg.describe() == {"a": "An A widget.", "b": "The b widget: a function."}
    with pytest.raises(UnknownNameError, match="unknown widget 'c'; expected one of a, b") as err:
        reg.get("c")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    assert str(err.value) == "unknown widget 'c'; expected one of a, b"
    assert reg.get("c", None) is None
    for bad in ("", " a", None):
        with pytest.raises(ValueError, match="non-empty string"):
            reg.register(bad)  # type: ignore[arg-type]

    reg.remove("b")
    assert reg.names() == ["a"]
    with pytest.raises(UnknownNameError):
        reg.remove("b")
    reg["z"] = b  # dict semantics (pytest's monkeypatch.setitem), stored as given
    assert reg["z"] is b
    del reg["z"]
    assert "z" not in reg
    with pytest.raises(UnknownNameError, match=r"unknown x 'y'; expected one of \(none registered\)"):
        Registry("x").get("y")


def test_registry_prepare_hook_checks_and_wraps() -> None:
    def prepare(name: str, obj: object) -> object:
        if not callable(obj):
            raise TypeError(f"{name}: not callable")
        return lambda: (name, obj())

    reg: Registry[object] = Registry("maker", prepare=prepare)
    made = reg.register("one")(lambda: 1)
    assert made() == ("one", 1) and reg["one"] is made
    with pytest.raises(TypeError, match="two: not callable"):
        reg.register("two")(3)
    assert "two" not in reg
    with pytest.raises(TypeError, match="needs a Strategy subclass"):
        sn.training.register_strategy("not_a_strategy")(object)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without ':'"):
        sn.spaces.register_space("a:b")
    assert "not_a_strategy" not in STRATEGIES
