"""TensorBoard event files: the scalars of metrics.jsonl at the same steps; resume appends; off writes none; search.

Reading events back needs the optional extra ``supernet[tensorboard]``; those tests skip without it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import supernet as sn
from supernet.files import read_jsonl
from supernet.training import tensorboard as tb
from test_train_common import Killed, conv_space, image_task, kill_at_step
from tiny_spaces import tiny_space

HAS_TB = importlib.util.find_spec("tensorboard") is not None
needs_tb = pytest.mark.skipif(
    not HAS_TB, reason="TensorBoard event files need the tensorboard package: pip install 'supernet[tensorboard]'"
)


def events(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of the event files in ``log_dir``, as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_same_as_jsonl(scalars: dict[str, list[tuple[int, float]]], records: list[dict[str, Any]]) -> None:
    """Every numeric value of every record is in ``scalars`` at its step (float32), and nothing else is."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for key, value in r.items():
            if key != "step" and isinstance(value, (int, float)):
                expected.setdefault(key, []).append((r["step"], float(value)))
    assert expected and {k: v for k, v in scalars.items() if not k.startswith("alpha/")}.keys() == expected.keys()
    for key, values in expected.items():
        assert [s for s, _ in scalars[key]] == [s for s, _ in values], key
        assert [v for _, v in scalars[key]] == pytest.approx([v for _, v in values], rel=1e-6, abs=1e-12), key


@needs_tb
def test_training_writes_the_jsonl_scalars_and_alpha_probabilities(tmp_path: Path) -> None:
    cfg = {"steps": 6, "batch_size": 4, "progress": False, "log_every": 2, "eval_every": 4, "eval_batches": 1,
           "strategy_options": {"history_every": 3}}
    sn.train(tiny_space("gpt", vocab_size=65), sn.data.shakespeare(), "gdas", cfg, run_dir=tmp_path, device="cpu")
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert {"loss", "lr", "samples_per_s", "tau", "val_loss", "val_loss_max"} <= set(records[-1])
    scalars = events(tmp_path / "tensorboard")
    assert_same_as_jsonl(scalars, records)
    # the strategy's option probabilities, at the steps its alpha history recorded them
    history = json.loads((tmp_path / "alpha_history.json").read_text())
    for entry in history["history"]:
        for decision, probs in entry["probs"].items():
            options = history["options"][decision]
            for option, p in zip(options, probs, strict=True):
                assert (entry["step"], pytest.approx(p, rel=1e-6)) in scalars[f"alpha/{decision}/{option}"]


@needs_tb
def test_resume_appends_without_duplicate_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = {"steps": 6, "batch_size": 8, "checkpoint_every": 3, "log_every": 1, "progress": False}
    with monkeypatch.context() as m:
        kill_at_step(m, "uniform", 4)  # steps 1..4 logged, checkpoint at 3
        with pytest.raises(Killed):
            sn.train(conv_space(0), image_task(), "uniform", cfg, run_dir=tmp_path, device="cpu")
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]
    sn.train(conv_space(1), image_task(), "uniform", cfg, run_dir=tmp_path, device="cpu", resume=True)
    records = read_jsonl(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 2  # the resume appended a file
    scalars = events(tmp_path / "tensorboard")
    assert [s for s, _ in scalars["loss"]] == [1, 2, 3, 4, 5, 6]  # the killed process's step 4 was purged
    assert_same_as_jsonl(scalars, records)


def test_switched_off_writes_no_event_files(tmp_path: Path) -> None:
    cfg = {"steps": 2, "batch_size": 8, "log_every": 1, "progress": False, "tensorboard": False}
    sn.train(conv_space(0), image_task(), "uniform", cfg, run_dir=tmp_path, device="cpu")
    assert (tmp_path / "metrics.jsonl").is_file()
    assert not (tmp_path / "tensorboard").exists()


def test_without_tensorboard_installed_training_writes_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tb, "summary_writer_class", lambda: None)
    cfg = {"steps": 2, "batch_size": 8, "log_every": 1, "progress": False}
    sn.train(conv_space(0), image_task(), "uniform", cfg, run_dir=tmp_path, device="cpu")
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 2
    assert not (tmp_path / "tensorboard").exists()
    assert tb.write_search_scalars(tmp_path / "tb", [{"trial": 0, "metrics": {"loss": 1.0}}], ["loss"]) is None


@needs_tb
def test_search_objectives_per_trial(tmp_path: Path) -> None:
    space = tiny_space("gpt")
    result = sn.search(space, lambda arch: {"loss": 1.0 + arch["depth"] / 10}, objectives=["loss", "params"],
                       algorithm="random", trials=4, progress=False, device="cpu")
    metrics = [o.metric for o in result.objectives]
    log_dir = tb.search_log_dir(tmp_path)
    for _ in range(2):  # a second (resumed) search rewrites the scalars instead of adding to them
        assert tb.write_search_scalars(log_dir, result.entries, metrics) == log_dir
    assert log_dir == tmp_path / "tensorboard" / "search"
    assert len(list(log_dir.glob("events.out.tfevents.*"))) == 1
    scalars = events(log_dir)
    assert set(scalars) == {"loss", "params"}
    for metric in metrics:
        expected = sorted((e["trial"], float(e["metrics"][metric])) for e in result.entries)
        assert [s for s, _ in scalars[metric]] == [s for s, _ in expected]
        assert [v for _, v in scalars[metric]] == pytest.approx([v for _, v in expected], rel=1e-6)


@needs_tb
def test_search_of_a_trained_run_logs_beside_its_training_curves(tmp_path: Path) -> None:
    cfg = {"steps": 2, "batch_size": 4, "progress": False, "eval_batches": 1}
    sn.train(tiny_space("gpt", vocab_size=65), sn.data.shakespeare(), "uniform", cfg, run_dir=tmp_path, device="cpu")
    result = sn.search(tmp_path, objectives=["loss", "params"], algorithm="random", trials=3, progress=False,
                       device="cpu", eval_batches=1)
    scalars = events(tmp_path / "tensorboard" / "search")
    assert set(scalars) == {"loss", "params"}
    assert sorted(s for s, _ in scalars["loss"]) == sorted(e["trial"] for e in result.entries)
