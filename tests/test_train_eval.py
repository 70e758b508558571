"""Evaluating subnets with inherited weights: BN recalibration, metrics, evaluate_many."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.training import batchnorm_modules, evaluate, evaluate_many, recalibrate_bn
from test_train_common import conv_space, image_task, mlp_space, vector_task


def _bn_input(space: sn.SuperModule, x: torch.Tensor) -> torch.Tensor:
    """What the first BatchNorm sees for input ``x`` (the stem conv's output)."""
    with torch.no_grad():
        return space.net.stem(x)


def test_recalibration_sets_running_stats_to_the_batch_statistics():
    space, task = conv_space(), image_task()
    space.set_arch({"width": 4, "kernel": 3, "op": "relu", "depth": 1})
    bn = space.net.bn
    with torch.no_grad():
        bn.running_mean.fill_(5.0), bn.running_var.fill_(7.0)
    gen = torch.Generator().manual_seed(0)
    x1, x2 = task.train_batch(16, gen)[0], task.train_batch(16, gen)[0]
    assert recalibrate_bn(space, [x1], num_batches=1)
    h = _bn_input(space, x1)
    assert torch.allclose(bn.running_mean[:4], h.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var[:4], h.var((0, 2, 3), unbiased=True), atol=1e-5)
    assert torch.equal(bn.running_mean[4:], torch.zeros(4))  # inactive channels were reset
    assert not space.training and bn.momentum == 0.1  # eval mode, momentum restored
    # two batches: the cumulative average of the per-batch statistics (momentum=None semantics)
    recalibrate_bn(space, [x1, x2], num_batches=2)
    means = (_bn_input(space, x1).mean((0, 2, 3)) + _bn_input(space, x2).mean((0, 2, 3))) / 2
    assert torch.allclose(bn.running_mean[:4], means, atol=1e-5)
    # from a task: reproducible with the same seed
    recalibrate_bn(space, task, num_batches=3, batch_size=8, seed=1)
    first = bn.running_mean.clone()
    recalibrate_bn(space, task, num_batches=3, batch_size=8, seed=1)
    assert torch.equal(first, bn.running_mean)


def test_recalibration_handles_torch_batchnorm_and_bn_free_spaces():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, momentum=None))
    space = sn.SuperModule(net)
    x = torch.randn(8, 1, 6, 6)
    assert recalibrate_bn(space, [x], num_batches=1)
    h = net[0](x).detach()
    assert torch.allclose(net[1].running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert net[1].momentum is None
    assert recalibrate_bn(mlp_space(), vector_task(), num_batches=2) is False
    assert len(batchnorm_modules(conv_space())) == 3


def test_evaluate_matches_the_extracted_subnet():
    space, task = conv_space(), image_task()
    arch = {"width": 8, "kernel": 1, "op": "tanh", "depth": 2}
    res = evaluate(space, arch, task, batch_size=20, bn_batches=4, bn_batch_size=16)
    assert space.arch == space.max_arch() and space.training  # restored
    # by hand: recalibrate, extract, evaluate all of val
    space.set_arch(arch)
    recalibrate_bn(space, task, num_batches=4, batch_size=16, seed=0)
    net = space.extract(arch).eval()
    x, y = task.val_x, task.val_y
    with torch.no_grad():
        logits = net(x)
    assert res["count"] == len(y)
    assert res["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, y)), abs=1e-5)
    assert res["accuracy"] == pytest.approx(float((logits.argmax(1) == y).float().mean()), abs=1e-6)


def test_evaluate_many_equals_single_evaluations_and_restores_state():
    space, task = conv_space(), image_task()
    before = {k: v.clone() for k, v in space.state_dict().items()}
    archs = [space.max_arch(), space.min_arch(), space.sample(seed=3)]
    many = evaluate_many(space, archs, task, batch_size=32, bn_batches=2)
    singles = [evaluate(space, a, task, batch_size=32, bn_batches=2) for a in archs]
    for m, s in zip(many, singles, strict=True):
        assert m["loss"] == pytest.approx(s["loss"], abs=1e-6) and m["accuracy"] == s["accuracy"]
    assert many[0]["loss"] != many[1]["loss"]
    for k, v in space.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN statistics and weights untouched


def test_lm_evaluation_uses_contiguous_val_windows():
    text = sn.data.char_text("hello world, " * 50, val_fraction=0.2)
    space = sn.spaces.gpt(vocab_size=text.vocab_size, block_size=8, embed_dims=(8,), num_heads=(1,), mlp_ratios=(1,),
                          depths=(1,), head_dim=4)
    task = sn.training.LMTask(text, 8)
    batches = list(task.eval_batches("val", batch_size=4))
    x0, y0 = batches[0]
    assert torch.equal(x0[0], text.val[:8]) and torch.equal(y0[0], text.val[1:9]) and torch.equal(x0[1], text.val[8:16])
    res = evaluate(space, None, task, max_batches=2, batch_size=4)
    assert res["count"] == sum(int(y.numel()) for _, y in batches[:2])
    assert 0 <= res["accuracy"] <= 1 and res["loss"] > 0


def test_classification_task_batches_and_augmentation():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    y = torch.tensor([0, 1])
    aug = sn.training.crop_flip(padding=1)
    task = sn.training.ClassificationTask((x, y), (x, y), augment=aug)
    a = task.train_batch(8, torch.Generator().manual_seed(0))[0]
    b = task.train_batch(8, torch.Generator().manual_seed(0))[0]
    assert torch.equal(a, b) and a.shape == (8, 1, 4, 4)  # reproducible from the generator
    # every augmented image is a shifted (and maybe mirrored) copy: its values come from the source image or padding
    for img in a:
        vals = set(img.flatten().tolist()) - {0.0}
        assert vals <= set(x[0].flatten().tolist()) or vals <= set(x[1].flatten().tolist())
    ev = list(task.eval_batches("val", batch_size=1))
    assert len(ev) == 2 and torch.equal(ev[0][0], x[:1])  # evaluation is not augmented


def test_make_task_accepts_the_data_formats():
    from supernet.data import ArrayDataset

    ds = ArrayDataset(torch.randn(40, 3), torch.arange(40) % 4, ["a", "b", "c", "d"])
    t1 = sn.training.make_task(ds, val_fraction=0.25)
    assert isinstance(t1, sn.training.ClassificationTask) and len(t1.val_y) == 8 and t1.num_classes == 4
    t2 = sn.training.make_task((ds, ds))
    assert len(t2.train_y) == 40 and len(t2.val_y) == 40
    t3 = sn.training.make_task(sn.data.char_text("abcd" * 30), block_size=5)
    assert isinstance(t3, sn.training.LMTask) and t3.describe()["block_size"] == 5
    assert sn.training.make_task(t3) is t3
    with pytest.raises(ValueError, match="needs at least 6"):
        sn.training.LMTask(sn.data.char_text("abcd" * 10, val_fraction=0.1), 5)
