"""A run directory written by supernet 0.1 (tests/data/run_v1: train, search, export) still loads, searches and
exports with the current code, from Python and from the command line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

import supernet as sn
from supernet.cli import main
from supernet.export import load_metadata

RUN_V1 = Path(__file__).parent / "data" / "run_v1"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return Path(shutil.copytree(RUN_V1, tmp_path / "run_v1"))


def test_old_run_loads_and_its_model_matches_the_supernet(run_dir: Path) -> None:
    run = sn.training.load_run(run_dir)
    assert run.step == 4 and run.config.strategy == "sandwich"
    meta = load_metadata(run_dir / "model")
    model = sn.load(run_dir / "model")
    run.space.set_arch(meta["arch"])
    run.space.eval()
    x = torch.randint(0, 65, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(model(x), run.space(x), rtol=0, atol=1e-6)


def test_old_run_resumes_its_search_and_exports_from_the_cli(run_dir: Path) -> None:
    before = load_metadata(run_dir / "model")
    assert main(["search", str(run_dir), "--trials", "6", "--no-progress", "--device", "cpu"]) == 0
    assert main(["export", str(run_dir), "--out", str(run_dir / "model2"), "--latency-device", "cpu"]) == 0
    after = load_metadata(run_dir / "model2")
    assert after["space"] == before["space"]
    sn.load(run_dir / "model2")
