"""Export + sn.load: a plain module with the supernet's outputs; strict weight checks; picking archs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import supernet as sn
from supernet.export import export, load, load_metadata, select_arch
from supernet.space import Searchable


def space() -> sn.SuperModule:
    torch.manual_seed(0)
    return sn.spaces.gpt(
        block_size=8, embed_dims=(8, 16, 24), num_heads=(1, 2), mlp_ratios=(2, 4), depths=(1, 2, 3), head_dim=4
    )


def test_exported_model_matches_supernet(tmp_path: Path) -> None:
    sp = space().eval()
    arch = sp.sample(seed=3) | {"depth": 2}
    out = export(
        sp, tmp_path / "m", arch=arch, metrics={"loss": 2.5}, example_input=torch.zeros(1, 8, dtype=torch.long)
    )
    for name in ("model.safetensors", "arch.json", "space.json", "model.json", "README.md"):
        assert (out / name).is_file()
    model = load(out)
    assert not any(isinstance(m, (Searchable, sn.SuperModule)) for m in model.modules())
    assert not model.training
    x = torch.randint(0, 65, (3, 8))
    sp.set_arch(arch)
    with torch.no_grad():
        torch.testing.assert_close(model(x), sp(x), rtol=0, atol=1e-6)
    meta = load_metadata(out)
    assert meta["arch"] == arch and meta["params"] == sum(p.numel() for p in model.parameters())
    assert meta["flops"] > 0 and meta["latency_s"] > 0 and meta["space"]["space"] == "gpt"
    assert json.loads((out / "arch.json").read_text()) == arch
    card = (out / "README.md").read_text()
    assert "loss" in card and f"{meta['params']:,}" in card
    gen = model.generate(x[:1, :4], 5, generator=torch.Generator().manual_seed(0))
    assert gen.shape == (1, 9)


def test_load_checks_weights_strictly(tmp_path: Path) -> None:
    sp = space()
    out = export(sp, tmp_path / "m", arch=sp.min_arch(), latency_device=None)
    weights = load_file(str(out / "model.safetensors"))
    name = next(iter(weights))
    broken = {k: v for k, v in weights.items() if k != name}
    save_file(broken, str(out / "model.safetensors"))
    with pytest.raises(ValueError, match="missing keys"):
        load(out)
    weights[name] = torch.zeros(3, 3)
    save_file(weights, str(out / "model.safetensors"))
    with pytest.raises(ValueError, match="wrong shape"):
        load(out)
    with pytest.raises(FileNotFoundError, match="not an exported model"):
        load(tmp_path)


def test_select_arch_best_index_and_json() -> None:
    objectives = [{"metric": "loss", "direction": "minimize"}, {"metric": "params", "direction": "minimize"}]
    front = [
        {"arch": {"a": 1}, "metrics": {"loss": 1.0, "params": 900}},
        {"arch": {"a": 2}, "metrics": {"loss": 1.5, "params": 500}},
        {"arch": {"a": 3}, "metrics": {"loss": 2.0, "params": 100}},
    ]
    pareto = {"objectives": objectives, "front": front}
    assert select_arch(pareto, "best")[0] == {"a": 1}
    assert select_arch(pareto, "best", constraints="params <= 600")[0] == {"a": 2}
    assert select_arch(pareto, "best", metric="params")[0] == {"a": 3}
    assert select_arch(pareto, "2")[0] == {"a": 3}
    assert select_arch(pareto, '{"a": 7}')[0] == {"a": 7}
    with pytest.raises(ValueError, match="out of range"):
        select_arch(pareto, "5")
    with pytest.raises(ValueError, match="satisfies"):
        select_arch(pareto, "best", constraints="params <= 10")
    with pytest.raises(ValueError, match="best"):
        select_arch(pareto, "biggest")


def test_export_from_supernet_needs_an_explicit_arch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a run"):
        export(space(), tmp_path / "m", arch="best")
