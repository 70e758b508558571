"""Run directories: atomic JSON/safetensors writing, checkpoints (weights, optimizer, RNG, strategy state)."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field, StrictInt

from ..files import (
    FileFormatError,
    FileModel,
    read_json,
    read_jsonl,
    read_tensors,
    write_json,
    write_tensors,
    write_text,
)
from ..space import SuperModule

RUN_FORMAT = "supernet-run"
RUN_VERSION = 1
CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
PIPELINE_JSON = "pipeline.json"
FINAL_WEIGHTS = "weights.safetensors"
StrictNonNegInt = Annotated[StrictInt, Field(ge=0)]


class LatestFile(FileModel):
    """``latest.json``: which checkpoint directory is the newest complete one."""

    step: StrictNonNegInt
    path: str


class StateFile(FileModel):
    """``checkpoints/step-N/state.json``: everything but tensors needed to resume exactly."""

    step: StrictNonNegInt
    config: dict[str, Any]
    strategy: dict[str, Any]
    strategy_state: dict[str, Any] = Field(default_factory=dict)
    optimizer: dict[str, Any]
    rng: dict[str, list[Any]]


class RunFile(FileModel):
    """``run.json``: what a run is (space spec, config, strategy, task) and how far it got."""

    format: Literal["supernet-run"]
    version: int
    space: dict[str, Any] | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    strategy: dict[str, Any] = Field(default_factory=dict)
    task: dict[str, Any] | None = None
    step: StrictNonNegInt = 0
    final_arch: dict[str, Any] | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """The validated ``run.json`` of a run directory (``FileNotFoundError`` names a directory that is no run)."""
    path = Path(run_dir) / RUN_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{Path(run_dir)} is not a training run directory (no {RUN_JSON} there)")
    return read_json(path, RunFile, "supernet run.json")


def build_run_space(run_dir: str | Path, meta: Mapping[str, Any] | None = None) -> SuperModule:
    """The space of a run rebuilt from ``run.json``'s spec (untrained weights), with `supernet.spaces.build_space`
    (a ready space, one registered with ``sn.spaces.register_space``, or a ``module:function`` name).

    Raises:
        ValueError: the run was trained on a space built by hand (no spec): pass that space instead.
    """
    meta = read_run_json(run_dir) if meta is None else meta
    spec = meta.get("space")
    if not spec:
        raise ValueError(
            f"{run_dir} was trained on a space built by hand (run.json records no space spec), so it cannot "
            "be rebuilt by name: register the space (@sn.spaces.register_space) or name it as 'module:function' "
            "in the config, or pass the same space (space=...)"
        )
    from ..spaces.registry import build_from_spec

    return build_from_spec(spec)


def run_dir_of(source: Any) -> Path | None:
    """The run directory behind ``source``: a path (which must hold ``run.json``), a training `Run` (its
    ``run_dir``), or None for anything else (a bare `SuperModule`).

    Raises:
        FileNotFoundError: ``source`` is a path but no run directory.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not (path / RUN_JSON).is_file():
            raise FileNotFoundError(f"{path} is not a training run directory (no {RUN_JSON} there)")
        return path
    run_dir = getattr(source, "run_dir", None)
    return None if run_dir is None else Path(run_dir)


def truncate_metrics(path: str | Path, step: int) -> None:
    """Keep only records with ``step <= step`` (a resumed run re-logs the steps after its checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
    write_text(path, "".join(json.dumps(r) + "\n" for r in keep))


# ---------------------------------------------------------------- RNG states as JSON-able data


def python_rng_state(rng: random.Random | None = None) -> list[Any]:
    """``random`` state as nested lists (``rng`` or the global generator)."""
    version, internal, gauss = (rng or random).getstate()  # type: ignore[union-attr]
    return [version, list(internal), gauss]


def set_python_rng_state(state: list[Any], rng: random.Random | None = None) -> None:
    """Restore `python_rng_state` output."""
    (rng or random).setstate((state[0], tuple(state[1]), state[2]))  # type: ignore[union-attr]


def numpy_rng_state() -> list[Any]:
    """The global numpy RNG state as JSON-able data."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def set_numpy_rng_state(state: list[Any]) -> None:
    """Restore `numpy_rng_state` output."""
    np.random.set_state((state[0], np.array(state[1], dtype=np.uint32), state[2], state[3], state[4]))


# ---------------------------------------------------------------- optimizer state


def optimizer_to_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``optim.<param>.<key>``) and JSON data."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{pid}.{key}"] = val
            else:
                scalars.setdefault(str(pid), {})[key] = val
    groups = json.loads(json.dumps(sd["param_groups"], default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_parts(optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], data: Mapping[str, Any]
                         ) -> None:
    """Load `optimizer_to_parts` output into ``optimizer`` (tensors keep their saved dtype)."""
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        if not name.startswith("optim."):
            continue
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = t
    for pid, st in data.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(st)
    groups = []
    for g in data["param_groups"]:
        g = dict(g)
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    if len(groups) != len(optimizer.param_groups):
        raise ValueError(
            f"checkpoint has {len(groups)} optimizer parameter groups, this run has {len(optimizer.param_groups)}"
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------- checkpoint directories


def checkpoint_name(step: int) -> str:
    """Directory name of the checkpoint after ``step`` steps."""
    return f"step-{step:08d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    weights: Mapping[str, torch.Tensor],
    tensors: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``checkpoints/step-N/{weights.safetensors, state.safetensors, state.json}``, then ``latest.json``.

    The checkpoint is written into a temporary directory renamed into place, and ``latest.json`` (written
    atomically last) points to it, so a kill at any moment leaves the previous checkpoint usable.
    Older checkpoints beyond ``keep`` are deleted.
    """
    run_dir = Path(run_dir)
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    for stale in root.glob(".step-*"):  # left by a kill during an earlier save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    try:
        write_tensors(tmp / "weights.safetensors", weights, metadata={"step": str(step)})
        write_tensors(tmp / "state.safetensors", tensors, metadata={"step": str(step)})
        write_json(tmp / "state.json", dict(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    write_json(run_dir / LATEST, {"step": step, "path": f"{CHECKPOINTS}/{final.name}"})
    existing = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in existing[:-keep] if keep > 0 else []:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The directory of the latest complete checkpoint, or None."""
    run_dir = Path(run_dir)
    latest = run_dir / LATEST
    if not latest.exists():
        return None
    info = read_json(latest, LatestFile, "latest.json (pointer to the newest checkpoint)")
    path = run_dir / info["path"]
    if not path.resolve().is_relative_to((run_dir / CHECKPOINTS).resolve()):
        raise FileFormatError(latest, f"points outside {run_dir / CHECKPOINTS}: {info['path']!r}")
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"{latest} points to {path}, which is missing or incomplete")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """``(weights, state tensors, state JSON)`` of one checkpoint directory."""
    path = Path(path)
    weights = read_tensors(path / "weights.safetensors", device, "checkpoint weights file")
    tensors = read_tensors(path / "state.safetensors", "cpu", "checkpoint state file")
    state = read_json(path / "state.json", StateFile, "checkpoint state.json")
    return weights, tensors, state
