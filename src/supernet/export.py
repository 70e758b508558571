"""Export a subnet as an ordinary model directory, and load it back without the search code.

A model directory holds::

    model.safetensors   the extracted subnet's weights (state_dict)
    arch.json           the arch dict
    space.json          the space spec ({"space": name, "kwargs": {...}}) it was extracted from
    model.json          metadata: arch, space, metrics, params, FLOPs, latency, how it was found, data, versions
    README.md           a short model card

``sn.load(dir)`` rebuilds the space from the spec, extracts the arch (a plain ``nn.Module`` with no supernet
classes) and loads the weights with strict key and shape checks.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from . import cost
from .files import FileFormatError, FileModel, read_json, read_tensors, write_json, write_tensors, write_text
from .searching.objectives import parse_constraints
from .space import SuperModule
from .training.checkpoint import read_run_json, run_dir_of
from .training.evaluate import batchnorm_modules, evaluate_model

MODEL_FORMAT = "supernet-model"
WEIGHTS = "model.safetensors"
META = "model.json"


class ModelFile(FileModel):
    """``model.json``: what an exported model is (arch, space spec) and what it scored."""

    format: Literal["supernet-model"]
    version: int
    arch: dict[str, Any]
    space: dict[str, Any] | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)
    params: int = 0
    data: dict[str, Any] | None = None
    task: dict[str, Any] | None = None
    finetune: list[dict[str, Any]] = Field(default_factory=list)


def select_arch(
    source: str | os.PathLike[str] | Mapping[str, Any],
    arch: str | int | Mapping[str, Any] = "best",
    constraints: Any = None,
    metric: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pick an arch from a search's Pareto front.

    Args:
        source: a run dir (with ``search/pareto.json``), a pareto.json path, or its loaded dict.
        arch: ``"best"`` (best ``metric`` among front entries meeting ``constraints``), an index into the front
            (``3`` or ``"3"``), an arch as a JSON string or dict, or a path to an arch JSON file.
        constraints: extra constraints for ``best``, e.g. ``"params <= 300k"``.
        metric: the metric ``best`` optimises (default: the search's first objective).

    Returns:
        ``(arch dict, entry)`` where entry is the front entry (with ``metrics``) or ``{}`` for a given arch.
    """
    if isinstance(arch, Mapping):
        return dict(arch), {}
    if not isinstance(arch, (str, int)) or isinstance(arch, bool):
        raise ValueError(f"arch must be 'best', an index, an arch dict or JSON, got {type(arch).__name__}")
    text = str(arch).strip()
    if text[:1] in ("{", "[", '"'):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--arch looks like JSON but does not parse: {err}") from None
        return _arch_object(parsed, "--arch"), {}
    if text.endswith(".json"):
        data = read_json(text, what="arch JSON file")
        if isinstance(data, Mapping) and isinstance(data.get("arch"), Mapping):
            data = data["arch"]
        if not isinstance(data, Mapping):
            kind = type(data).__name__
            raise FileFormatError(text, f"an arch file holds a JSON object {{decision: option}}, not a {kind}")
        return dict(data), {}
    from .searching import load_front

    pareto = dict(source) if isinstance(source, Mapping) else load_front(source)
    front = pareto.get("front", [])
    if not front:
        raise ValueError("the search's Pareto front is empty: no feasible arch was found")
    if text.lstrip("-").isdigit():
        i = int(text)
        if not -len(front) <= i < len(front):
            raise ValueError(f"arch index {i} is out of range: the Pareto front has {len(front)} entries (0..)")
        return dict(front[i]["arch"]), dict(front[i])
    if text != "best":
        raise ValueError(f"--arch must be 'best', an index into the Pareto front, or an arch as JSON; got {text!r}")
    cons = parse_constraints(constraints)
    objectives = pareto.get("objectives") or [{"metric": "loss", "direction": "minimize"}]
    if metric is None:
        metric, direction = objectives[0]["metric"], objectives[0]["direction"]
    else:
        known = {o["metric"]: o["direction"] for o in objectives}
        from .searching.objectives import DIRECTIONS

        direction = known.get(metric) or DIRECTIONS.get(metric)
        if direction is None:
            raise ValueError(f"unknown metric {metric!r} to pick the best arch by")
    ok = [e for e in front if all(c.metric in e["metrics"] and c.satisfied(e["metrics"][c.metric]) for c in cons)]
    if not ok:
        raise ValueError(f"no arch on the Pareto front satisfies {', '.join(map(str, cons))}")
    sign = 1.0 if direction == "minimize" else -1.0
    best = min(ok, key=lambda e: sign * float(e["metrics"][metric]))
    return dict(best["arch"]), dict(best)


def _arch_object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(
            f"{where} must be a JSON object {{decision: option}}, got a JSON {type(data).__name__}"
        )
    return dict(data)


def export(
    source: SuperModule | str | os.PathLike[str] | Any,
    out: str | os.PathLike[str],
    arch: str | int | Mapping[str, Any] = "best",
    constraints: Any = None,
    metric: str | None = None,
    metrics: Mapping[str, float] | None = None,
    found_by: Mapping[str, Any] | None = None,
    example_input: Any = None,
    latency_device: str | None = "cpu",
    data: Mapping[str, Any] | None = None,
    task: Any = None,
    evaluation: Mapping[str, Any] | None = None,
) -> Path:
    """Write subnet ``arch`` of a trained supernet to the model directory ``out``.

    The extracted subnet's BatchNorm statistics are recalibrated for it on training data with the recipe the
    search's evaluation used (same batches, same seed), and its loss and accuracy are then measured on the
    exported model itself: the model card states what `load` gives back.

    Args:
        source: a run directory (arch may then be ``best`` or a front index), a ``Run``, or a `SuperModule`
            (then ``arch`` must be a dict or JSON).
        out: the model directory to write (created; existing files are replaced atomically one by one,
            ``model.json`` last).
        arch / constraints / metric: which arch (see `select_arch`).
        metrics: metrics to record (default: those the search measured); loss/accuracy measured on the exported
            model replace theirs.
        found_by: how it was found (default: read from the run's search and training records).
        example_input: an input batch for FLOPs and latency (runs: one example of the task; else skipped).
        latency_device: where to measure latency (None: skip).
        data: the data config (JSON) to record for ``supernet finetune`` (runs: taken from the run).
        task: the `supernet.training.Task` to calibrate and evaluate on (runs: the run's own task). Without one,
            nothing is measured, and a subnet with BatchNorm is refused unless ``evaluation={"bn_batches": 0}``
            (keep the supernet's shared statistics, which fit no single subnet).
        evaluation: ``max_batches`` / ``batch_size`` / ``bn_batches`` / ``bn_batch_size`` / ``seed`` of the
            measurement (default: those of the run's search config, else the search defaults).

    Returns:
        The model directory.
    """
    run_dir = run_dir_of(source)
    entry: dict[str, Any] = {}
    if run_dir is not None:
        arch_dict, entry = select_arch(run_dir, arch, constraints, metric)
    else:
        if isinstance(arch, str) and (arch == "best" or arch.lstrip("-").isdigit()):
            raise ValueError(f"arch={arch!r} needs a run with a search; pass the arch as a dict or JSON")
        arch_dict, entry = select_arch({}, arch)
    space = _space(source, run_dir)
    arch_dict = space.validate(arch_dict)
    net = space.extract(arch_dict).eval()
    if task is None:
        task = _task_of(source, run_dir)
    if example_input is None:
        example_input = task.example_input(1) if task is not None else _example_input(run_dir)
    opts = _evaluation_options(run_dir, evaluation)
    recorded = dict(metrics if metrics is not None else entry.get("metrics", {}))
    has_bn = bool(batchnorm_modules(net))
    if task is not None:
        measured = evaluate_model(net, task, split="val", **opts)
        recorded.update({"loss": measured["loss"], "accuracy": measured["accuracy"]})
    elif has_bn and opts["bn_batches"] > 0:
        raise ValueError(
            "this subnet has BatchNorm, whose statistics must be recalibrated for it on training data: pass "
            "task= (or evaluation={'bn_batches': 0} to keep the supernet's shared statistics)"
        )
    meta: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "version": 1,
        "arch": arch_dict,
        "space": space.spec,
        "metrics": recorded,
        "search_metrics": dict(entry.get("metrics", {})),
        "evaluation": {
            **opts,
            "split": "val",
            "measured_on_export": task is not None,
            "bn_recalibrated": has_bn and task is not None and opts["bn_batches"] > 0,
        },
        "params": cost.params(net),
        "flops": cost.flops(net, example_input) if example_input is not None else None,
        "latency_s": None,
        "latency_device": latency_device,
        "found_by": dict(found_by) if found_by is not None else _found_by(run_dir, entry),
        "data": dict(data) if data is not None else _data_of(run_dir),
        "task": _task_meta(run_dir),
        "finetune": [],
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    if example_input is not None and latency_device is not None:
        meta["latency_s"] = cost.latency(net, example_input, device=latency_device)
    out_dir = Path(out)
    write_model(out_dir, net, meta)
    return out_dir


def _evaluation_options(run_dir: Path | None, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """How the exported model is measured: as the run's search evaluated archs, unless told otherwise.

    The search records its evaluation settings in pareto.json; older fronts fall back on the run's search config.
    """
    from .config import SearchConfig, read_pipeline
    from .training.checkpoint import PIPELINE_JSON

    search = SearchConfig()
    if run_dir is not None and (run_dir / PIPELINE_JSON).is_file():
        search = read_pipeline(run_dir).search
    opts: dict[str, Any] = {
        "max_batches": search.eval_batches,
        "batch_size": search.eval_batch_size,
        "bn_batches": search.bn_batches,
        "bn_batch_size": None,
        "seed": 0,
    }
    recorded = (_front_or_empty(run_dir).get("evaluation") or {}) if run_dir is not None else {}
    opts.update({k: v for k, v in recorded.items() if k in opts})
    unknown = set(given or {}) - set(opts)
    if unknown:
        raise ValueError(f"unknown evaluation option(s) {sorted(unknown)}; expected some of {sorted(opts)}")
    opts.update(given or {})
    return opts


def _task_of(source: Any, run_dir: Path | None) -> Any:
    task = getattr(source, "task", None)
    if task is not None or run_dir is None:
        return task
    from .training.rundata import task_of_run

    try:
        return task_of_run(run_dir)
    except ValueError:  # trained from Python on data the run directory cannot rebuild
        return None


def write_model(out_dir: Path, net: nn.Module, meta: dict[str, Any]) -> None:
    """Write weights, arch.json, space.json, README.md and (last) model.json, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(out_dir / WEIGHTS, net.state_dict(), metadata={"format": MODEL_FORMAT})
    write_json(out_dir / "arch.json", meta["arch"])
    write_json(out_dir / "space.json", meta["space"])
    write_text(out_dir / "README.md", model_card(meta))
    write_json(out_dir / META, meta)


def load_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``model.json`` of a model directory."""
    p = Path(path) / META
    if not p.is_file():
        raise FileNotFoundError(f"{path} is not an exported model directory (no {META}; see `supernet export`)")
    return read_json(p, ModelFile, "supernet model.json")


def load(
    path: str | os.PathLike[str], space: SuperModule | None = None, device: str | torch.device = "cpu"
) -> nn.Module:
    """Rebuild an exported model as a plain ``nn.Module`` (eval mode) with its weights.

    Args:
        path: the model directory written by `export` / ``supernet export``.
        space: the space it came from, needed only for user-defined spaces (ready spaces are rebuilt by name).
        device: where to put the model.

    Raises:
        ValueError: the weights file does not match the architecture (missing/unexpected keys, wrong shapes).
    """
    meta = load_metadata(path)
    spec = meta.get("space")
    if space is None:
        if not spec:
            raise ValueError(
                f"{path} was exported from a user-defined space (no spec): pass it as sn.load(path, space=...)"
            )
        from .spaces.registry import build_from_spec

        space = build_from_spec(spec)
    net = space.extract(meta["arch"])
    del space
    state = read_tensors(Path(path) / WEIGHTS, what="exported model weights")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path}/{WEIGHTS} does not fit arch {meta['arch']}: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]}"
        )
    wrong = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(f"{path}/{WEIGHTS} has tensors of the wrong shape: {wrong[:8]}")
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def model_card(meta: Mapping[str, Any]) -> str:
    """A short Markdown model card from ``model.json`` metadata."""
    lines = ["# Model exported by supernet", ""]
    spec = meta.get("space") or {}
    lines += [f"Space: `{spec.get('space', 'user-defined')}`  ", f"Parameters: {meta.get('params', 0):,}  "]
    if meta.get("flops") is not None:
        lines.append(f"FLOPs (one example): {meta['flops']:,}  ")
    if meta.get("latency_s") is not None:
        lines.append(f"Latency (batch 1, {meta.get('latency_device')}): {1000 * meta['latency_s']:.2f} ms  ")
    lines.append("")
    metrics = meta.get("metrics") or {}
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
        lines.append("")
    found = meta.get("found_by") or {}
    if found:
        lines += ["## How it was found", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in found.items()]
        lines.append("")
    for ft in meta.get("finetune") or []:
        lines.append(
            f"Fine-tuned {ft.get('steps')} steps: val loss {_fmt(ft.get('val_loss_before'))} -> "
            f"{_fmt(ft.get('val_loss_after'))}."
        )
    lines += [
        "## Architecture",
        "",
        "```json",
        json.dumps(meta.get("arch", {}), indent=2),
        "```",
        "",
        "## Use",
        "",
        "```python",
        "import supernet as sn",
        "model = sn.load('path/to/this/dir')   # a plain torch.nn.Module in eval mode",
        "```",
        "",
    ]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _space(source: Any, run_dir: Path | None) -> SuperModule:
    if isinstance(source, SuperModule):
        return source
    space = getattr(source, "space", None)
    if isinstance(space, SuperModule):
        return space
    from .training import load_run

    return load_run(run_dir).space  # type: ignore[arg-type]


def _front_or_empty(run_dir: Path) -> dict[str, Any]:
    from .searching import load_front

    try:
        return load_front(run_dir)
    except FileNotFoundError:
        return {}


def _found_by(run_dir: Path | None, entry: Mapping[str, Any]) -> dict[str, Any]:
    if run_dir is None:
        return {"how": "exported directly from a supernet"}
    run = read_run_json(run_dir)
    pareto = _front_or_empty(run_dir)
    out: dict[str, Any] = {
        "run_dir": str(run_dir),
        "supernet training": f"{(run.get('strategy') or {}).get('name')} for {run.get('step')} steps",
    }
    if pareto:
        out["search"] = (
            f"{pareto.get('algorithm')} over {', '.join(o['metric'] for o in pareto.get('objectives', []))}, "
            f"{pareto.get('distinct_archs')} archs evaluated with inherited weights"
        )
        if pareto.get("constraints"):
            out["constraints"] = ", ".join(pareto["constraints"])
    if entry.get("trial") is not None:
        out["trial"] = entry["trial"]
    return out


def _data_of(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None:
        return None
    from .training.rundata import data_config_of_run

    try:
        return data_config_of_run(run_dir).model_dump(mode="json")
    except ValueError:
        return None


def _task_meta(run_dir: Path | None) -> dict[str, Any] | None:
    if run_dir is None:
        return None
    return read_run_json(run_dir).get("task")


def _example_input(run_dir: Path | None) -> Any:
    """One input of a language-model run, known from run.json alone (other tasks need their data)."""
    task = _task_meta(run_dir) or {}
    if task.get("kind") == "lm" and task.get("block_size"):
        return torch.zeros(1, int(task["block_size"]), dtype=torch.long)
    return None
