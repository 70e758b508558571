"""DARTS / GDAS / DrNAS through the training loop: final arch, alpha history, temperature, resume, selection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.training import load_run, train
from tiny_spaces import tiny_space


def _gpt() -> sn.SuperModule:
    return tiny_space("gpt", vocab_size=65)


def _text() -> object:
    return sn.data.shakespeare()


def _cfg(steps: int, **kw: object) -> dict:
    return {"steps": steps, "batch_size": 4, "progress": False, "log_every": 1, "seed": 3, **kw}


@pytest.mark.parametrize("strategy", ["darts", "gdas", "drnas"])
def test_strategies_train_and_return_an_arch_with_history(strategy: str, tmp_path: Path) -> None:
    space = _gpt()
    run = train(space, _text(), strategy=strategy, config=_cfg(6), run_dir=tmp_path / strategy)
    assert run.final_arch is not None and space.validate(run.final_arch) == run.final_arch
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in run.history)
    assert "val_loss" in run.history[0]
    hist = run.strategy.history
    assert hist[-1]["step"] == 6 and set(hist[-1]["probs"]) == set(space.choices)
    for probs in hist[-1]["probs"].values():
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    # the alpha history and alphas are saved with the checkpoint
    latest = json.loads((tmp_path / strategy / "latest.json").read_text())
    state = json.loads((tmp_path / strategy / latest["path"] / "state.json").read_text())
    assert json.dumps(hist) in json.dumps(state)
    assert json.loads((tmp_path / strategy / "run.json").read_text())["final_arch"] == run.final_arch
    report = json.loads((tmp_path / strategy / "alpha_history.json").read_text())
    assert report["final_arch"] == run.final_arch and report["history"] == hist
    assert (tmp_path / strategy / "alpha_history.png").read_bytes()[:4] == b"\x89PNG"


def test_gdas_temperature_follows_the_config() -> None:
    opts = {"tau_max": 4.0, "tau_min": 0.5}
    run = train(_gpt(), _text(), strategy="gdas", config=_cfg(5, strategy="gdas", strategy_options=opts))
    taus = [h["tau"] for h in run.history]
    assert taus == pytest.approx([4.0 - 3.5 * s / 4 for s in range(5)])


def test_gradient_run_resumes_exactly(tmp_path: Path) -> None:
    opts = {"kl_reg_scale": 0.1}
    cfg = _cfg(4, checkpoint_every=2, deterministic=True, strategy="drnas", strategy_options=opts)
    full = train(_gpt(), _text(), strategy="drnas", config=cfg, run_dir=tmp_path / "full")
    # simulate a kill after step 2: a copy of the run whose latest checkpoint is step 2
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    latest = json.loads((tmp_path / "resumed" / "latest.json").read_text())
    latest_2 = {"step": 2, "path": latest["path"].replace("4", "2")}
    assert (tmp_path / "resumed" / latest_2["path"]).is_dir()
    (tmp_path / "resumed" / "latest.json").write_text(json.dumps(latest_2))
    resumed = train(_gpt(), _text(), strategy="drnas", config=cfg, run_dir=tmp_path / "resumed", resume=True)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
    for n, a in full.strategy.alphas.alpha.items():
        torch.testing.assert_close(resumed.strategy.alphas.alpha[n], a, atol=1e-7, rtol=0)
    for (k, v), (_, w) in zip(full.space.state_dict().items(), resumed.space.state_dict().items(), strict=True):
        torch.testing.assert_close(v, w, atol=1e-6, rtol=0, msg=k)
    assert resumed.strategy.history == full.strategy.history
    assert load_run(tmp_path / "resumed").final_arch == full.final_arch


def test_perturbation_selection_inside_training_settles_every_decision(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    data = ((x[:192], y[:192]), (x[192:], y[192:]))
    width = sn.Choice([1, 16], name="width")
    net = nn.Sequential(
        sn.Linear(6, width),
        nn.ReLU(),
        sn.LayerChoice({"zero": sn.blocks.Zero(), "id": nn.Identity()}, name="op"),
        sn.Linear(width, 2),
    )
    space = sn.SuperModule(net)
    opts = {"selection": "perturbation", "selection_interval": 10, "selection_batches": 2, "selection_metric": "loss"}
    cfg = _cfg(40, batch_size=32, lr=0.05, strategy="darts", strategy_options=opts)
    run = train(space, data, strategy="darts", config=cfg, run_dir=tmp_path / "pt")
    log = run.strategy.selection_log
    assert [e["decision"] for e in log] == ["width", "op"]
    assert [e["step"] for e in log] == [20, 30]
    assert run.final_arch == {"width": 16, "op": "id"}  # 'zero' cuts the signal; one unit is too narrow


def test_second_order_darts_runs_on_a_cell_space() -> None:
    space = sn.spaces.nb201(C=2, N=1, num_classes=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 3, 8, 8, generator=g), torch.randint(0, 3, (48,), generator=g)
    data = ((x[:32], y[:32]), (x[32:], y[32:]))
    run = train(
        space, data, strategy="darts", config=_cfg(2, strategy="darts", strategy_options={"second_order": True})
    )
    assert run.final_arch is not None
    assert all(a.grad is not None and torch.isfinite(a.grad).all() for a in run.strategy.alphas.parameters())


def test_alpha_history_plot_is_written(tmp_path: Path) -> None:
    from supernet.gradient import plot_alpha_history

    history = [{"step": s, "probs": {"d": [1 - s / 10, s / 10], "e": [0.5, 0.5]}} for s in (1, 5, 10)]
    path = plot_alpha_history(history, {"d": (1, 2), "e": ("a", "b")}, tmp_path / "plots" / "alpha.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="empty"):
        plot_alpha_history([], {}, tmp_path / "x.png")
