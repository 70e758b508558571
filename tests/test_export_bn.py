"""What the user gets is what the search reported: an exported BatchNorm model scores its model card.

For nb201, mobilenet and a user space with BatchNorm: train a tiny supernet, measure an arch as the search does
(BN recalibrated on training batches), export it, load it with `sn.load` and evaluate it as it is: the numbers
must equal the card's, which must equal the search's. Fine-tuning starts from the card's loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.export import load_metadata
from supernet.finetune import finetune
from supernet.training import evaluate, evaluate_model, make_task
from tiny_spaces import tiny_space

EVAL = {"max_batches": 2, "batch_size": 16, "bn_batches": 3}


def synthetic_task(classes: int = 3, n: int = 160, seed: int = 0) -> sn.training.Task:
    """Images whose label is the channel with the largest mean: learnable in a few steps, deterministic."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=gen)
    y = x.mean(dim=(2, 3)).argmax(dim=1) % classes
    return make_task(((x[:112], y[:112]), (x[112:], y[112:])))


def user_space() -> sn.SuperModule:
    width = sn.Choice([4, 8], name="width")
    net = nn.Sequential(
        sn.Conv2d(3, width, sn.Choice([1, 3], name="kernel")),
        sn.BatchNorm2d(width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        sn.Linear(width, 3),
    )
    return sn.SuperModule(net)


SPACES = {
    "nb201": lambda: tiny_space("nb201", num_classes=3),
    "mobilenet": lambda: tiny_space("mobilenet", num_classes=3, image_size=8),
    "user": user_space,
}


@pytest.mark.parametrize("name", list(SPACES))
def test_exported_batchnorm_model_scores_its_card(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    space = SPACES[name]()
    task = synthetic_task()
    run = sn.train(space, task, "uniform", {"steps": 6, "batch_size": 16, "progress": False}, device="cpu")
    arch = space.sample(seed=5)
    searched = evaluate(run.space, arch, task, batch_size=16, max_batches=2, bn_batches=3, device="cpu")

    out = sn.export(run, tmp_path / "m", arch=arch, evaluation=EVAL, latency_device=None)
    meta = load_metadata(out)
    assert meta["evaluation"]["bn_recalibrated"] and meta["evaluation"]["measured_on_export"]
    assert meta["metrics"]["loss"] == pytest.approx(searched["loss"], rel=1e-5, abs=1e-6)
    assert meta["metrics"]["accuracy"] == pytest.approx(searched["accuracy"], abs=1e-9)

    model = sn.load(out, space=SPACES[name]() if name == "user" else None)  # a hand-built space has no spec
    assert not model.training
    as_loaded = evaluate_model(model, task, "val", batch_size=16, max_batches=2, bn_batches=0)
    assert as_loaded["loss"] == pytest.approx(meta["metrics"]["loss"], rel=1e-6, abs=1e-7)
    assert as_loaded["accuracy"] == meta["metrics"]["accuracy"]

    # The old export (the supernet's shared running statistics) scores differently: the test can fail.
    shared = space.extract(arch).eval()
    stale = evaluate_model(shared, task, "val", batch_size=16, max_batches=2, bn_batches=0)
    assert stale["loss"] != pytest.approx(as_loaded["loss"], rel=1e-4)

    spec_less = SPACES[name]() if name == "user" else None
    record = finetune(out, steps=1, batch_size=8, task=task, device="cpu", progress=False, space=spec_less)
    assert record["val_loss_before"] == pytest.approx(meta["metrics"]["loss"], rel=1e-6, abs=1e-7)


def test_export_of_a_batchnorm_subnet_without_data_is_refused(tmp_path: Path) -> None:
    space = user_space()
    with pytest.raises(ValueError, match=r"BatchNorm.*task="):
        sn.export(space, tmp_path / "m", arch=space.max_arch(), latency_device=None)
    assert not (tmp_path / "m").exists()
    out = sn.export(space, tmp_path / "m", arch=space.max_arch(), latency_device=None, evaluation={"bn_batches": 0})
    meta = load_metadata(out)
    assert meta["evaluation"]["bn_recalibrated"] is False and meta["evaluation"]["measured_on_export"] is False


def test_export_rejects_unknown_evaluation_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown evaluation option"):
        sn.export(user_space(), tmp_path / "m", arch={"width": 4, "kernel": 1}, evaluation={"batches": 3})


def test_export_of_the_best_arch_scores_what_the_search_reported(tmp_path: Path) -> None:
    torch.manual_seed(0)
    task = synthetic_task()
    config = {"steps": 6, "batch_size": 16, "progress": False}
    run = sn.train(SPACES["nb201"](), task, "uniform", config, run_dir=tmp_path / "run", device="cpu")
    result = sn.search(run, algorithm="random", trials=4, eval_batches=2, eval_batch_size=16, bn_batches=3,
                       device="cpu", progress=False)
    assert result.extra["evaluation"] == {"max_batches": 2, "batch_size": 16, "bn_batches": 3}
    out = sn.export(run, tmp_path / "m", arch="best", latency_device=None)  # settings read from pareto.json
    meta = load_metadata(out)
    assert meta["arch"] == result.best["arch"]
    assert meta["metrics"]["loss"] == pytest.approx(result.best["metrics"]["loss"], rel=1e-5)
    assert meta["metrics"]["accuracy"] == pytest.approx(result.best["metrics"]["accuracy"], abs=1e-9)
    assert meta["search_metrics"] == result.best["metrics"]
