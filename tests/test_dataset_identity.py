"""The dataset of a run is recorded in run.json, so a run directory rebuilds its data without guessing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import supernet as sn
from supernet.data.config import DataConfig
from supernet.files import FileFormatError
from supernet.training.rundata import build_task, data_config_of_run


def _run_dir(tmp_path: Path, task: dict) -> Path:
    (tmp_path / "run.json").write_text(json.dumps({"format": "supernet-run", "version": 1, "task": task}))
    return tmp_path


def test_named_datasets_record_the_config_that_rebuilds_them() -> None:
    lm = sn.training.make_task(sn.data.shakespeare(0.05), block_size=8)
    assert lm.describe()["dataset"] == {"name": "shakespeare", "val_fraction": 0.05}
    digits = build_task(DataConfig(name="digits", val_fraction=0.3, seed=2))
    assert digits.describe()["dataset"] == {"name": "digits", "val_fraction": 0.3, "seed": 2}
    # Data the library did not load itself has no identity: nothing is guessed.
    other = sn.training.make_task(sn.data.char_text("abcabcabc" * 20), block_size=4)
    assert "dataset" not in other.describe()


def test_a_run_without_pipeline_json_rebuilds_its_recorded_dataset(tmp_path: Path) -> None:
    task = sn.training.make_task(sn.data.shakespeare(0.2), block_size=8).describe()
    assert data_config_of_run(_run_dir(tmp_path, task)) == DataConfig(name="shakespeare", val_fraction=0.2)


def test_a_65_character_corpus_is_not_taken_for_shakespeare(tmp_path: Path) -> None:
    task = {"kind": "lm", "block_size": 8, "vocab_size": 65, "train_tokens": 900, "val_tokens": 100}
    with pytest.raises(ValueError, match="cannot tell which data"):
        data_config_of_run(_run_dir(tmp_path, task))


def test_a_run_written_by_supernet_0_1_is_still_recognised(tmp_path: Path) -> None:
    # 0.1 recorded no dataset; Tiny Shakespeare is known by its exact split sizes.
    task = {"kind": "lm", "block_size": 8, "vocab_size": 65, "train_tokens": 1003854, "val_tokens": 111540}
    assert data_config_of_run(_run_dir(tmp_path, task)) == DataConfig(name="shakespeare", val_fraction=0.1)


def test_a_bad_recorded_dataset_names_the_file_and_key(tmp_path: Path) -> None:
    task = {"kind": "lm", "dataset": {"name": "imagenet"}}
    with pytest.raises(FileFormatError, match=r"run\.json.*task\.dataset"):
        data_config_of_run(_run_dir(tmp_path, task))
