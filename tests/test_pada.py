"""PA&DA (``pada``): path importance from gradient norms, data importance from logit gradients, exact resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernet as sn
from supernet.training.strategies.pada import (
    DataImportance,
    PathImportance,
    importance_weight,
    logit_gradient_norms,
    mixed_probabilities,
)
from test_train_common import make_context, mlp_space, straight_and_resumed, vector_task
from tiny_spaces import TINY, tiny_space


def test_logit_gradient_norm_is_the_gradient_of_each_examples_loss() -> None:
    torch.manual_seed(0)
    for shape, smoothing in (((5, 7), 0.0), ((3, 4, 6), 0.1)):
        logits = torch.randn(*shape, requires_grad=True)
        y = torch.randint(0, shape[-1], shape[:-1])
        norms = logit_gradient_norms(logits, y, smoothing)
        for i in range(shape[0]):
            # By hand: autograd of example i's summed token losses, one norm per row, averaged over the rows.
            loss = F.cross_entropy(logits[i].reshape(-1, shape[-1]), y[i].reshape(-1), reduction="sum",
                                   label_smoothing=smoothing)
            (grad,) = torch.autograd.grad(loss, logits)
            expected = grad[i].reshape(-1, shape[-1]).norm(dim=-1).mean()
            torch.testing.assert_close(norms[i], expected, rtol=1e-5, atol=1e-6)


def test_mixed_probabilities_stay_within_the_smoothing_bounds() -> None:
    p = mixed_probabilities(torch.tensor([0.0, 1.0, 3.0]), 0.8)
    torch.testing.assert_close(p, torch.tensor([0.2 / 3, 0.2 / 3 + 0.2, 0.2 / 3 + 0.6], dtype=torch.float64))
    assert mixed_probabilities(torch.zeros(4), 0.8).tolist() == [0.25] * 4  # no signal: uniform
    assert importance_weight(0, 100, 0.2) == 0.0
    assert importance_weight(50, 100, 0.2) == 0.5
    assert importance_weight(99, 100, 0.2) == pytest.approx(0.8)  # capped at 1 - smoothing


class _Planted(nn.Module):
    """Op choice: option ``big`` has weights whose gradients are 100x those of option ``small``."""

    def __init__(self) -> None:
        super().__init__()
        self.op = sn.LayerChoice({"small": nn.Linear(4, 4), "big": nn.Linear(4, 4), "id": nn.Identity()}, name="op")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.op(x)
        return h * 100.0 if self.op.choice.current == "big" else h


def test_path_importance_favours_the_option_with_larger_gradients_within_bounds() -> None:
    torch.manual_seed(1)
    space = sn.SuperModule(_Planted())
    paths = PathImportance(space)
    x = torch.randn(8, 4)
    for option in ("small", "big", "id") * 3:
        space.zero_grad(set_to_none=True)
        space.set_arch({"op": option})
        out = space(x)
        if out.requires_grad:  # the identity has no weights to train
            out.square().mean().backward()
        paths.record({"op": option})
    paths.refresh(0.6)
    p = dict(zip(space.decisions["op"].options, paths.probs["op"], strict=True))
    assert p["big"] > p["small"] > p["id"]
    assert p["id"] == pytest.approx(0.4 / 3)  # no weights: only the uniform share
    assert all(0.4 / 3 - 1e-9 <= v <= 0.4 / 3 + 0.6 + 1e-9 for v in p.values())
    assert sum(p.values()) == pytest.approx(1.0)


def test_an_entangled_option_counts_only_the_slice_it_adds() -> None:
    width = sn.Choice([2, 3], name="width")
    layer = sn.Linear(4, width, bias=False)
    space = sn.SuperModule(nn.Sequential(layer))
    paths = PathImportance(space)
    layer.weight.grad = torch.arange(12.0).reshape(3, 4)
    # width 3 adds row 2 only; width 2 (the smallest) owns rows 0-1.
    assert paths.option_norm("width", {"width": 3}) == pytest.approx(float(torch.arange(8.0, 12.0).norm()))
    assert paths.option_norm("width", {"width": 2}) == pytest.approx(float(torch.arange(0.0, 8.0).norm()))
    kernel = sn.Choice([1, 3], name="k")
    conv = sn.Conv2d(1, 1, kernel, bias=False)
    paths = PathImportance(sn.SuperModule(nn.Sequential(conv)))
    conv.weight.grad = torch.ones(1, 1, 3, 3)
    assert paths.option_norm("k", {"k": 3}) == pytest.approx(8**0.5)  # the ring around the centre
    assert paths.option_norm("k", {"k": 1}) == pytest.approx(1.0)


def test_depth_option_counts_the_blocks_beyond_the_next_smaller_depth() -> None:
    blocks = [nn.Linear(2, 2, bias=False) for _ in range(3)]
    rep = sn.Repeat(blocks, sn.Choice([1, 3], name="depth"))
    paths = PathImportance(sn.SuperModule(nn.Sequential(rep)))
    for i, b in enumerate(blocks):
        b.weight.grad = torch.full((2, 2), float(i + 1))
    assert paths.option_norm("depth", {"depth": 3}) == pytest.approx((4 * 4 + 4 * 9) ** 0.5)
    assert paths.option_norm("depth", {"depth": 1}) == pytest.approx(2.0)


def test_data_importance_samples_hard_examples_more() -> None:
    data = DataImportance(4)
    data.record(torch.tensor([0, 1, 1, 2]), torch.tensor([1.0, 3.0, 5.0, 0.0]))
    data.refresh(0.5)
    # example 1: mean 4; unseen example 3 counts as the mean of the seen (1 + 4 + 0) / 3.
    importance = torch.tensor([1.0, 4.0, 0.0, 5.0 / 3])
    torch.testing.assert_close(data.probs, (0.5 * importance / importance.sum() + 0.125).float())


def test_pada_records_the_norms_of_the_examples_it_trained_on() -> None:
    task = vector_task()
    strat, ctx = make_context(mlp_space(), task, "pada", update_every=4)
    batch = strat.next_batch(ctx)
    indices = strat._indices.clone()
    torch.testing.assert_close(batch[0], task.train_x[indices])
    out = strat.step(ctx, batch)
    assert len(out.archs) == 1
    with torch.no_grad():
        ctx.space.set_arch(out.archs[0])
        expected = logit_gradient_norms(ctx.space(batch[0]), batch[1])
    sums = torch.zeros(task.train_size()).index_add_(0, indices, expected)
    torch.testing.assert_close(strat.data.sums, sums, rtol=1e-5, atol=1e-6)


def test_pada_needs_an_indexed_task_for_data_importance() -> None:
    class Stream(sn.training.ClassificationTask):
        def train_size(self) -> None:
            return None

    task = vector_task()
    stream = Stream((task.train_x, task.train_y), (task.val_x, task.val_y))
    with pytest.raises(ValueError, match="data importance needs a task that indexes its examples"):
        make_context(mlp_space(), stream, "pada")
    strat, _ = make_context(mlp_space(), stream, "pada", data_importance=False)
    assert strat.data is None


def _config(n: int) -> dict:
    return {"steps": 2 * n, "batch_size": 8, "lr": 5e-3, "checkpoint_every": n, "log_every": 1, "progress": False,
            "deterministic": True, "seed": 3}


def test_pada_resumes_exactly(tmp_path, monkeypatch) -> None:
    n = 6
    config = {**_config(n), "strategy_options": {"update_every": 4}}  # refreshes at 4 and 8: around the kill at 6
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, "pada", config, kill_at=n)
    sa, sb = straight.strategy, resumed.strategy
    assert sa.paths.probs == sb.paths.probs and sa.paths.mean == sb.paths.mean
    torch.testing.assert_close(sa.data.probs, sb.data.probs, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(TINY))
def test_pada_trains_every_ready_space(name: str) -> None:
    space = tiny_space(name)
    if name == "gpt":
        task = sn.training.make_task(sn.data.char_text("abcdefghij " * 40), block_size=8)
    elif name == "vit":
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(32, 3, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
        task = sn.training.ClassificationTask((x[:24], y[:24]), (x[24:], y[24:]))
    else:
        g = torch.Generator().manual_seed(0)
        size = 8 if name == "nb201" else 16
        x, y = torch.randn(32, 3, size, size, generator=g), torch.randint(0, 10, (32,), generator=g)
        task = sn.training.ClassificationTask((x[:24], y[:24]), (x[24:], y[24:]))
    run = sn.train(space, task, "pada", {"steps": 6, "batch_size": 4, "progress": False,
                                         "strategy_options": {"update_every": 3}}, device="cpu")
    strat = run.strategy
    assert len(run.losses) == 6 and all(torch.isfinite(torch.tensor(run.losses)))
    # after a refresh every decision with weights has seen some signal, and probabilities sum to one
    for name_, probs in strat.paths.probs.items():
        assert sum(probs) == pytest.approx(1.0), name_
    assert strat.data.seen.sum() > 0


def test_pada_state_round_trips_through_a_checkpoint() -> None:
    task = vector_task()
    strat, ctx = make_context(mlp_space(), task, "pada", {"steps": 8}, update_every=2)
    for step in range(5):
        ctx.step = step
        ctx.space.zero_grad(set_to_none=True)
        strat.step(ctx, strat.next_batch(ctx))
    assert strat.refreshed_at == 4 and strat.data.weight == pytest.approx(0.5)
    fresh, _ = make_context(mlp_space(), task, "pada", {"steps": 8}, update_every=2)
    fresh.load_state_dict(strat.state_dict())
    fresh.load_tensor_state(strat.tensor_state())
    torch.testing.assert_close(fresh.data.probs, strat.data.probs, rtol=0, atol=0)
    assert not torch.allclose(fresh.data.probs, torch.full_like(fresh.data.probs, 1 / task.train_size()))
    assert fresh.paths.probs == strat.paths.probs and fresh.paths.sums == strat.paths.sums
    assert fresh.refreshed_at == 4
