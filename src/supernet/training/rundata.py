"""The data of a run directory: rebuilt from ``pipeline.json`` or from the dataset recorded in ``run.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.config import DataConfig, build_data
from ..data.text import SHAKESPEARE_CHARS
from ..files import FileFormatError, read_json
from ..validation import ConfigError, validate_model
from .checkpoint import PIPELINE_JSON, RUN_JSON, read_run_json
from .tasks import Task, make_task


def build_task(cfg: DataConfig, block_size: int | None = None, seed: int = 0) -> Task:
    """The `Task` of a `DataConfig` (``block_size`` for text)."""
    task = make_task(build_data(cfg), block_size=block_size, val_fraction=cfg.val_fraction or 0.1, seed=seed)
    task.dataset = cfg.model_dump(mode="json", exclude_defaults=True) | {"name": cfg.name}
    return task


def data_config_of_run(run_dir: str | Path) -> DataConfig:
    """How a run's data can be rebuilt: its ``pipeline.json``, else the dataset recorded in ``run.json``.

    Raises:
        ValueError: the run was trained from Python on data this cannot rebuild (pass ``task=`` then).
        FileFormatError: the recorded dataset is not a valid ``data:`` config.
    """
    run_dir = Path(run_dir)
    pipe = run_dir / PIPELINE_JSON
    if pipe.is_file():
        section = read_json(pipe, what="pipeline config (pipeline.json)").get("data")
        try:
            return validate_model(DataConfig, section, "pipeline.json: data")
        except ConfigError as err:
            raise FileFormatError(pipe, f"not a valid data config: {err}") from None
    meta = read_run_json(run_dir)
    task = meta.get("task") or {}
    recorded = task.get("dataset")
    if recorded is not None:
        try:
            return validate_model(DataConfig, recorded, "run.json: task.dataset")
        except ConfigError as err:
            raise FileFormatError(run_dir / RUN_JSON, f"task.dataset is not a valid data config: {err}") from None
    legacy = _shakespeare_of_v1_run(task)
    if legacy is not None:
        return legacy
    raise ValueError(
        f"cannot tell which data {run_dir} was trained on (no {PIPELINE_JSON}; trained from Python?): "
        "pass the task, e.g. sn.search(run_dir, task=supernet.training.make_task(data, block_size))"
    )


def _shakespeare_of_v1_run(task: dict[str, Any]) -> DataConfig | None:
    """Tiny Shakespeare recognised by its exact split sizes: runs written by supernet 0.1 recorded no dataset."""
    n_train, n_val = task.get("train_tokens"), task.get("val_tokens")
    if task.get("kind") != "lm" or not n_train or not n_val or n_train + n_val != SHAKESPEARE_CHARS:
        return None
    for frac in (0.1, 0.05, 0.2, 0.15, 0.25):  # the common val fractions of char_text
        if n_train == int(SHAKESPEARE_CHARS * (1.0 - frac)):
            return DataConfig(name="shakespeare", val_fraction=frac)
    return None


def task_of_run(run_dir: str | Path) -> Task:
    """Rebuild the `Task` of a run directory (see `data_config_of_run`)."""
    run_dir = Path(run_dir)
    cfg = data_config_of_run(run_dir)
    meta = read_run_json(run_dir)
    task_meta = meta.get("task") or {}
    seed = int((meta.get("config") or {}).get("seed", 0))
    return build_task(cfg, block_size=task_meta.get("block_size"), seed=seed)
