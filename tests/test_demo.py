"""The demo's own stages beyond the tiny CLI run (tests/test_cli.py): the members table and the fine-tuning stage."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from supernet.demo import DemoPreset, run_demo
from supernet.export import load_metadata


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    out = tmp_path_factory.mktemp("demo-ft")
    preset = DemoPreset.tiny()
    preset.finetune_steps = 3
    buffer = io.StringIO()
    summary = run_demo(out, device="cpu", preset=preset, console=Console(file=buffer, width=120))
    return out, summary, buffer.getvalue()


def test_the_found_arch_is_shown_between_the_smallest_and_largest_members(tuned: tuple[Path, dict, str]) -> None:
    _, summary, printed = tuned
    members = summary["members"]
    assert list(members) == ["smallest", "found", "largest"]
    assert members["smallest"]["params"] <= members["found"]["params"] <= members["largest"]["params"]
    assert members["found"]["params"] == summary["exported"]["params"]
    # the found arch's val loss is measured as the export measured it (same batches, inherited weights)
    assert members["found"]["val_loss"] == pytest.approx(summary["exported"]["metrics"]["loss"], abs=1e-6)
    assert "what the search bought" in printed and "smallest" in printed and "largest" in printed


def test_the_fine_tuning_stage_trains_the_exported_model_and_records_it(tuned: tuple[Path, dict, str]) -> None:
    out, summary, printed = tuned
    record = summary["finetune"]
    assert record["steps"] == 3 and record["val_loss_before"] == pytest.approx(summary["members"]["found"]["val_loss"])
    meta = load_metadata(out / "model")
    assert meta["finetune"][-1]["val_loss_after"] == pytest.approx(record["val_loss_after"])
    assert meta["metrics"]["finetuned_val_loss"] == pytest.approx(record["val_loss_after"])
    assert "5/5 sample" in printed and "4/5 fine-tune" in printed
    assert json.loads((out / "demo.json").read_text())["finetune"]["steps"] == 3
    assert "finetune_s" in summary["timings"]


def test_without_fine_tuning_the_demo_has_four_stages(tmp_path: Path) -> None:
    buffer = io.StringIO()
    summary = run_demo(tmp_path, device="cpu", preset=DemoPreset.tiny(), console=Console(file=buffer, width=120))
    assert summary["finetune"] is None and "4/4 sample" in buffer.getvalue()
