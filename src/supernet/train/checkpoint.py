"""Run directories: atomic JSON/safetensors writing, checkpoints (weights, optimizer, RNG, strategy state)."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

RUN_FORMAT = "supernet-run"
RUN_VERSION = 1
CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
FINAL_WEIGHTS = "weights.safetensors"


def _tmp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temp file in the same directory, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in any error."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def write_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
                  ) -> None:
    """Write tensors as safetensors atomically (copies of shared storage are made so ties do not fail)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        t = v.detach().contiguous().cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen:
            t = t.clone()
        elif ptr != -1:
            seen.add(ptr)
        out[k] = t
    tmp = _tmp_path(path)
    try:
        save_file(out, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file onto ``device``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return load_file(str(path), device=str(device))


def append_jsonl(path: str | Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line (flushed)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSONL file (a torn last line from a kill is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(path: str | Path, step: int) -> None:
    """Keep only records with ``step <= step`` (a resumed run re-logs the steps after its checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    keep = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
    tmp = _tmp_path(path)
    try:
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
    info = read_json(latest)
    path = run_dir / info["path"]
    if not (path / "state.json").exists():
        raise FileNotFoundError(f"{latest} points to {path}, which is missing or incomplete")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """``(weights, state tensors, state JSON)`` of one checkpoint directory."""
    path = Path(path)
    weights = read_tensors(path / "weights.safetensors", device)
    tensors = read_tensors(path / "state.safetensors", "cpu")
    state = read_json(path / "state.json")
    return weights, tensors, state
