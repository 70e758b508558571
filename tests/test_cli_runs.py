"""`supernet train` runs are reproducible, and a refused run leaves the existing run directory untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supernet.cli import main
from supernet.files import read_jsonl, read_tensors

CONFIG = """
device: cpu
space: {{name: gpt, kwargs: {{block_size: 8, embed_dims: [8, 16], num_heads: [1, 2], mlp_ratios: [2],
        depths: [1, 2], head_dim: 4}}}}
data: {{name: shakespeare, val_fraction: {val}}}
train: {{steps: 3, batch_size: 4, strategy: uniform, progress: false, seed: 3}}
"""


def write_config(tmp_path: Path, name: str = "c.yaml", val: float = 0.1) -> Path:
    path = tmp_path / name
    path.write_text(CONFIG.format(val=val))
    return path


def snapshot(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    files = (p for p in run_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns) for p in files}


def test_same_config_and_seed_give_bit_identical_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for run in ("a", "b"):
        assert main(["train", str(config), "--run-dir", str(tmp_path / run)]) == 0
    a = read_tensors(tmp_path / "a" / "weights.safetensors")
    b = read_tensors(tmp_path / "b" / "weights.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [[(r["step"], r["loss"]) for r in read_jsonl(tmp_path / run / "metrics.jsonl")] for run in ("a", "b")]
    assert logs[0] == logs[1] and logs[0]


def test_refused_run_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    assert main(["train", str(write_config(tmp_path)), "--run-dir", str(run_dir)]) == 0
    before = snapshot(run_dir)
    other = write_config(tmp_path, "other.yaml", val=0.2)
    capsys.readouterr()
    assert main(["train", str(other), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "resume=True" not in err and "Traceback" not in err
    assert snapshot(run_dir) == before  # pipeline.json still holds the old data settings


def test_bad_space_kwargs_are_refused_before_writing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(CONFIG.format(val=0.1).replace("head_dim: 4", "head_dim: 4, bogus_kwarg: 1"))
    assert main(["train", str(config), "--run-dir", str(tmp_path / "run")]) == 2
    assert "bogus_kwarg" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
