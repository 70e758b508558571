"""A user-defined space end to end: named as 'module:function' (or registered), trained, searched and exported
from the CLI, then loaded in a fresh import of the module."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.cli import main
from supernet.export import load_metadata
from supernet.spaces import SPACES, build_space
from supernet.training import load_run

MODULE = "sn_user_space_e2e"

SOURCE = '''
"""Tiny spaces for the digits (8x8 grey images, 10 classes)."""

from torch import nn

import supernet as sn


def tiny_mlp(hidden: list[int] = (8, 16), classes: int = 10) -> sn.SuperModule:
    width = sn.Choice(hidden, name="width")
    net = nn.Sequential(
        nn.Flatten(),
        sn.Linear(64, width),
        sn.LayerChoice({"relu": nn.ReLU(), "tanh": nn.Tanh()}, name="act"),
        sn.Linear(width, classes),
    )
    return sn.SuperModule(net)


def tiny_cnn(widths: list[int] = (4, 8), classes: int = 10) -> sn.SuperModule:
    width = sn.Choice(widths, name="width")
    net = nn.Sequential(
        sn.Conv2d(1, width, sn.Choice([1, 3], name="kernel")),
        sn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        sn.Linear(width, classes),
    )
    return sn.SuperModule(net)
'''

CONFIG = """
run_dir: {run_dir}
device: cpu
space: {{name: "{space}", kwargs: {kwargs}}}
data: {{name: digits}}
train: {{steps: 4, batch_size: 16, strategy: uniform, progress: false}}
search: {{algorithm: random, trials: 4, eval_batches: 1, eval_batch_size: 32, bn_batches: 0}}
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / f"{MODULE}.py").write_text(SOURCE)
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    return tmp_path


@pytest.mark.parametrize(("function", "kwargs"), [("tiny_mlp", "{hidden: [8, 16]}"), ("tiny_cnn", "{}")])
def test_module_function_space_trains_searches_and_exports_from_the_cli(
    user_module: Path, function: str, kwargs: str
) -> None:
    torch.manual_seed(0)
    name = f"{MODULE}:{function}"
    run_dir, out = user_module / "run", user_module / "model"
    cfg = user_module / "cfg.yaml"
    cfg.write_text(CONFIG.format(run_dir=run_dir, space=name, kwargs=kwargs))

    assert main(["train", str(cfg)]) == 0
    spec = json.loads((run_dir / "run.json").read_text())["space"]
    assert spec["space"] == name and "classes" in spec["kwargs"]
    assert main(["search", str(run_dir), "--trials", "4", "--no-progress", "--device", "cpu"]) == 0
    assert main(["export", str(run_dir), "--out", str(out)]) == 0

    sys.modules.pop(MODULE)  # as in a new process: the module is imported again by name
    model = sn.load(out)
    assert not any(isinstance(m, sn.SuperModule) for m in model.modules())
    arch = load_metadata(out)["arch"]
    supernet = load_run(run_dir).space.eval()
    supernet.set_arch(arch)
    x = sn.data.digits()[1].x[:16]
    with torch.no_grad():
        torch.testing.assert_close(model(x), supernet(x), rtol=0, atol=1e-6)


def test_registered_space_records_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SPACES, "own", SPACES.get("own", None))  # the registration is undone after the test

    @sn.spaces.register_space("own")
    def own(width: int = 4) -> sn.SuperModule:
        return sn.SuperModule(nn.Sequential(sn.Linear(3, sn.Choice([2, width], name="w"))))

    space = own(width=8)
    assert space.spec == {"space": "own", "kwargs": {"width": 8}}
    again = build_space(space.spec["space"], **space.spec["kwargs"])
    assert again.choices == {"w": (2, 8)}
