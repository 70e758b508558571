"""Checkpoints and exact resume: N steps + kill + N resumed steps equal 2N steps in one go."""

from __future__ import annotations

import json

import pytest
import torch

import supernet as sn
from supernet.training import load_run
from supernet.training.tensorboard import available as tensorboard_available
from test_train_common import Killed, conv_space, image_task, kill_at_step, straight_and_resumed


def _config(n: int) -> dict:
    return {"steps": 2 * n, "batch_size": 8, "lr": 5e-3, "checkpoint_every": n, "log_every": 1, "progress": False,
            "deterministic": True, "seed": 3, "warmup_steps": 2, "weight_decay": 0.01}


@pytest.mark.parametrize("strategy", ["sandwich", "progressive"])
def test_resume_continues_exactly(tmp_path, monkeypatch, strategy):
    n = 4
    _, resumed = straight_and_resumed(tmp_path, monkeypatch, strategy, _config(n), kill_at=n)
    assert resumed.step == 2 * n and len(resumed.losses) == n
    # the metrics log has each step once, in order, after the resume
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 2 * n + 1))


def test_run_directory_layout_and_load_run(tmp_path):
    space = sn.spaces.gpt(block_size=16, embed_dims=(8, 16), num_heads=(1, 2), mlp_ratios=(1, 2), depths=(1, 2),
                          head_dim=4)
    text = sn.data.char_text("to be or not to be, that is the question. " * 40)
    cfg = {"steps": 6, "batch_size": 4, "checkpoint_every": 2, "keep_checkpoints": 2, "progress": False}
    run = sn.train(space, text, "uniform", cfg, run_dir=tmp_path, device="cpu")
    names = sorted(p.name for p in tmp_path.iterdir())
    board = ["tensorboard"] if tensorboard_available() else []  # event files beside the record, where installed
    assert names == sorted(["checkpoints", "latest.json", "metrics.jsonl", "run.json", "weights.safetensors", *board])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000004", "step-00000006"]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temp files left
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["status"] == "done" and meta["step"] == 6 and meta["space"]["space"] == "gpt"
    assert meta["strategy"]["name"] == "uniform" and meta["config"]["steps"] == 6

    loaded = load_run(tmp_path)
    assert loaded.step == 6 and loaded.config.steps == 6 and loaded.strategy.name == "uniform"
    for k, v in run.space.state_dict().items():
        assert torch.equal(v, loaded.space.state_dict()[k]), k
    x = torch.randint(0, text.vocab_size, (2, 16))
    arch = space.sample(seed=1)
    run.space.set_arch(arch), loaded.space.set_arch(arch)
    run.space.eval(), loaded.space.eval()
    assert torch.allclose(run.space(x), loaded.space(x))

    with pytest.raises(FileExistsError, match="resume=True"):
        sn.train(space, text, "uniform", cfg, run_dir=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="strategy 'uniform'"):
        sn.train(space, text, "sandwich", cfg, run_dir=tmp_path, device="cpu", resume=True)


def test_load_run_of_a_user_space_needs_the_space(tmp_path):
    sn.train(conv_space(), image_task(), "uniform", {"steps": 2, "batch_size": 4, "progress": False},
             run_dir=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="pass the same space"):
        load_run(tmp_path)
    run = load_run(tmp_path, space=conv_space(5))
    assert run.step == 2


class _TemperatureOptions(sn.training.StrategyOptions):
    lr: float = 0.05


@sn.training.register_strategy("_test_temperature")
class _Temperature(sn.training.Strategy):
    """A strategy with its own parameter and optimizer, stepped on validation batches (like a gradient method)."""

    Options = _TemperatureOptions

    def setup(self, ctx):
        self.log_t = torch.zeros((), device=ctx.device, requires_grad=True)
        self.opt = torch.optim.Adam([self.log_t], lr=self.options.lr)
        self.calls = 0

    def step(self, ctx, batch):
        xv, yv = ctx.val_batch()
        arch = ctx.sample()
        with torch.no_grad():
            logits = ctx.forward(arch, xv)
        self.opt.zero_grad()
        ctx.loss(logits / self.log_t.exp(), yv).backward()
        ctx.all_reduce_grads([self.log_t])
        self.opt.step()
        self.calls += 1
        x, y = batch
        loss = ctx.loss(ctx.forward(arch, x) / self.log_t.detach().exp(), y)
        ctx.backward(loss)
        return sn.training.StepOutput(loss.detach(), [arch], {"log_t": self.log_t.detach()})

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, state):
        self.calls = state["calls"]

    def tensor_state(self):
        st = self.opt.state[self.log_t]
        return {"log_t": self.log_t.detach(), "exp_avg": st["exp_avg"], "exp_avg_sq": st["exp_avg_sq"],
                "step": st["step"]}

    def load_tensor_state(self, tensors):
        with torch.no_grad():
            self.log_t.copy_(tensors["log_t"])
        self.opt.state[self.log_t] = {k: tensors[k].clone() for k in ("exp_avg", "exp_avg_sq", "step")}

    def final_arch(self, ctx):
        return ctx.space.max_arch()


def test_a_strategy_with_its_own_parameters_resumes_exactly(tmp_path, monkeypatch):
    n = 3
    task = image_task()
    straight = sn.train(conv_space(0), task, "_test_temperature", _config(n), run_dir=tmp_path / "a", device="cpu")
    with monkeypatch.context() as m:
        kill_at_step(m, "_test_temperature", n)
        with pytest.raises(Killed):
            sn.train(conv_space(0), task, "_test_temperature", _config(n), run_dir=tmp_path / "b", device="cpu")
    resumed = sn.train(conv_space(2), task, "_test_temperature", _config(n), run_dir=tmp_path / "b", device="cpu",
                       resume=True)
    assert resumed.losses == pytest.approx(straight.losses[n:], abs=1e-6)
    assert resumed.strategy.calls == 2 * n and float(resumed.strategy.log_t.detach()) == pytest.approx(
        float(straight.strategy.log_t.detach()), abs=1e-7)
    assert resumed.final_arch == resumed.space.max_arch()
    assert json.loads((tmp_path / "b" / "run.json").read_text())["final_arch"] == resumed.final_arch
