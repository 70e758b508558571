"""Export a subnet as an ordinary model directory, and load it back without the search code.

A model directory holds::

    model.safetensors   the extracted subnet's weights (state_dict)
    arch.json           the arch dict
    space.json          the space spec ({"space": name, "kwargs": {...}}) it was extracted from
    model.json          metadata: arch, space, metrics, params, FLOPs, latency, how it was found, data, versions
    README.md           a short model card
    model.onnx          with ``format="onnx"``: the same net as an ONNX graph (batch dimension dynamic), checked
                        against PyTorch with onnxruntime when it is installed (``pip install 'supernet[onnx]'``)

``sn.load(dir)`` rebuilds the space from the spec, extracts the arch (a plain ``nn.Module`` with no supernet
classes) and loads the weights with strict key and shape checks.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import platform
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from . import cost
from .files import FileFormatError, FileModel, read_json, read_tensors, write_json, write_tensors, write_text
from .searching.objectives import parse_constraints, resolve_constraints
from .space import SuperModule
from .training.checkpoint import read_run_json, run_dir_of
from .training.evaluate import batchnorm_modules, evaluate_model

MODEL_FORMAT = "supernet-model"
WEIGHTS = "model.safetensors"
META = "model.json"
ONNX_FILE = "model.onnx"
# What `export` can write: the model directory always; "onnx" adds model.onnx.
FORMATS = ("safetensors", "onnx")
# Largest |onnxruntime - PyTorch| output difference an ONNX export may show on its check inputs.
ONNX_TOLERANCE = 1e-4
ONNX_EXTRA = "pip install 'supernet[onnx]'"
# Above this many bytes of weights the ONNX graph keeps them in model.onnx.data (protobuf files stop at 2 GiB).
ONNX_EXTERNAL_DATA_BYTES = 1 << 30


class MissingExtraError(ImportError):
    """An optional dependency (a ``supernet[...]`` extra) that this feature needs is not installed."""


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
    reference: Callable[[list[str]], Mapping[str, float]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pick an arch from a search's Pareto front.

    Args:
        source: a run dir (with ``search/pareto.json``), a pareto.json path, or its loaded dict.
        arch: ``"best"`` (best ``metric`` among front entries meeting ``constraints``), an index into the front
            (``3`` or ``"3"``), an arch as a JSON string or dict, or a path to an arch JSON file.
        constraints: extra constraints for ``best``, e.g. ``"params <= 300k"``.
        metric: the metric ``best`` optimises (default: the search's first objective).
        reference: ``fn(metrics) -> {metric: value of the largest arch}`` for relative constraints
            (``params <= 50%``); without it a relative constraint is an error.

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
    if reference is not None:
        cons = resolve_constraints(cons, reference)
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
    format: str = "safetensors",
    onnx_opset: int | None = None,
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
        format: ``"safetensors"`` (the model directory) or ``"onnx"`` (the model directory plus ``model.onnx``,
            see `export_onnx`; needs an example input and ``pip install 'supernet[onnx]'``).
        onnx_opset: the ONNX opset to write (default: the exporter's default, recorded in ``model.json``).

    Returns:
        The model directory.

    Raises:
        MissingExtraError: ``format="onnx"`` without the packages torch's ONNX exporter needs.
    """
    check_format(format)
    if format == "onnx":
        require_onnx_exporter()
    run_dir = run_dir_of(source)
    entry: dict[str, Any] = {}
    loaded: dict[str, Any] = {}  # the space and task, loaded once (early only for relative constraints)

    def space_and_task() -> tuple[SuperModule, Any]:
        if not loaded:
            loaded["space"] = _space(source, run_dir)
            loaded["task"] = task if task is not None else _task_of(source, run_dir)
        return loaded["space"], loaded["task"]

    if run_dir is not None:
        arch_dict, entry = select_arch(run_dir, arch, constraints, metric,
                                       _largest_arch_cost(space_and_task, example_input, run_dir))
    else:
        if isinstance(arch, str) and (arch == "best" or arch.lstrip("-").isdigit()):
            raise ValueError(f"arch={arch!r} needs a run with a search; pass the arch as a dict or JSON")
        arch_dict, entry = select_arch({}, arch)
    space, task = space_and_task()
    arch_dict = space.validate(arch_dict)
    net = space.extract(arch_dict).eval()
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
    if format == "onnx":
        if example_input is None:
            raise ValueError(
                "format='onnx' needs an example input to trace the model with: pass example_input= (a run whose "
                "task can be rebuilt gives one)"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        meta["onnx"] = export_onnx(net, example_input, out_dir / ONNX_FILE, opset=onnx_opset)
    write_model(out_dir, net, meta, refresh_onnx=False)
    return out_dir


def _largest_arch_cost(
    space_and_task: Callable[[], tuple[SuperModule, Any]], example_input: Any, run_dir: Path | None
) -> Callable[[list[str]], Mapping[str, float]]:
    """What relative constraints refer to: params / FLOPs of the space's largest arch (for a converted model:
    the original)."""

    def reference(metrics: list[str]) -> Mapping[str, float]:
        space, task = space_and_task()
        net = space.extract(space.max_arch()).eval()
        x = example_input
        if x is None and "flops" in metrics:
            x = task.example_input(1) if task is not None else _example_input(run_dir)
        out: dict[str, float] = {}
        for m in metrics:
            if m == "params":
                out[m] = float(cost.params(net))
            elif m == "flops" and x is not None:
                out[m] = float(cost.flops(net, x))
            else:
                raise ValueError(
                    f"a relative {m} constraint needs the largest arch's {m}, which export cannot measure here: "
                    "give an absolute bound"
                )
        return out

    return reference


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


def write_model(out_dir: Path, net: nn.Module, meta: dict[str, Any], refresh_onnx: bool = True) -> None:
    """Write weights, arch.json, space.json, README.md and (last) model.json, each atomically.

    ``model.onnx`` follows the weights: with ``refresh_onnx`` (new weights for a model whose ``meta`` records an
    ONNX export, e.g. after ``supernet finetune``) it is exported again on inputs of the recorded shapes, or removed
    with a warning when the ONNX packages are missing; a model without an ``onnx`` record loses any stale
    ``model.onnx`` left in ``out_dir`` by an earlier export.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    write_tensors(out_dir / WEIGHTS, net.state_dict(), metadata={"format": MODEL_FORMAT})
    if refresh_onnx and meta.get("onnx"):
        try:
            meta["onnx"] = export_onnx(
                net, _recorded_inputs(meta["onnx"]), out_dir / ONNX_FILE, opset=meta["onnx"].get("opset")
            )
        except MissingExtraError as err:
            warnings.warn(f"{out_dir / ONNX_FILE} no longer matches the weights and was removed: {err}", stacklevel=2)
            meta.pop("onnx")
    if not meta.get("onnx"):
        _remove_onnx(out_dir)
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
    if meta.get("onnx"):
        lines.append(f"ONNX: {onnx_summary(meta['onnx'])}  ")
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


# ---------------------------------------------------------------- ONNX


def check_format(format: str) -> None:
    """Raise a ValueError naming the known formats unless ``format`` is one of `FORMATS`."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")


def require_onnx_exporter() -> None:
    """Raise `MissingExtraError` naming the extra unless the packages ``torch.onnx.export`` needs are installed."""
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(
            f"ONNX export needs the package(s) {', '.join(missing)}, which torch.onnx's exporter uses: {ONNX_EXTRA}"
        )


def export_onnx(
    net: nn.Module,
    example_input: Any,
    path: str | os.PathLike[str],
    opset: int | None = None,
    tolerance: float = ONNX_TOLERANCE,
) -> dict[str, Any]:
    """Write ``net`` (in eval mode) as an ONNX graph at ``path``, atomically, and check it against PyTorch.

    The graph is traced by `torch.onnx.export` (the ``torch.export``-based exporter) on the example input grown to
    a batch of 2, with dim 0 of every input (and so of the outputs) dynamic, named ``batch``; a net that does not
    allow that is exported with the example's exact shapes instead (``dynamic_axes`` is then empty, with a warning).
    With onnxruntime installed the file is run on the example input (and on the batch of 2 when the batch is
    dynamic) and compared with the net: a difference above ``tolerance`` is an error, and ``path`` is left as it
    was. The file is written to a temporary directory beside ``path`` and renamed into place (weights over
    `ONNX_EXTERNAL_DATA_BYTES` go to ``<path>.data``, renamed first).

    Args:
        net: the model (an extracted subnet); it is not changed (its train/eval mode is restored).
        example_input: one input tensor, or a tuple of them, as ``net`` takes them.
        path: the ``.onnx`` file to write.
        opset: the ONNX opset (default: the exporter's).
        tolerance: the largest max-abs output difference the check accepts.

    Returns:
        The record kept in ``model.json`` as ``"onnx"``: ``file``, ``opset``, ``inputs`` (name, shape and dtype of
        the example), ``dynamic_axes`` (``{input or output name: {axis: symbol}}``, read back from the file),
        ``external_data``, ``check`` (what checked it, or why it was skipped), ``max_abs_diff`` (None if skipped),
        ``tolerance``, ``exporter`` and ``versions``.

    Raises:
        MissingExtraError: onnx / onnxscript are not installed.
        ValueError: the example input is not tensors, or onnxruntime's outputs differ from PyTorch's.
    """
    require_onnx_exporter()
    import onnx

    path = Path(path)
    args = _input_tuple(example_input)
    model = net if all(t.device.type == "cpu" for t in [*net.parameters(), *net.buffers()]) else copy.deepcopy(net)
    was_training = net.training
    model = model.cpu().eval()
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        traced = tuple(_batch_of_two(a) for a in args)
        tmp = tmp_dir / path.name
        external = sum(p.numel() * p.element_size() for p in model.parameters()) > ONNX_EXTERNAL_DATA_BYTES
        try:
            program = _onnx_program(model, traced, opset, dynamic=True)
            cases = [args, traced]
        except Exception as err:  # a net whose code fixes the batch size: keep the example's shapes
            warnings.warn(
                f"ONNX export with a dynamic batch dimension failed ({str(err).splitlines()[0][:200]}); exporting "
                "with the example input's fixed shapes",
                stacklevel=2,
            )
            program = _onnx_program(model, args, opset, dynamic=False)
            cases = [args]
        with _quiet_exporter():
            program.save(str(tmp), external_data=external)
        graph = onnx.load(str(tmp), load_external_data=False)
        check, diff = _check_onnx(tmp, model, cases)
        if diff is not None and not diff <= tolerance:
            raise ValueError(
                f"the ONNX graph's outputs differ from PyTorch's by up to {diff:.3g} (tolerance {tolerance:g}) on "
                f"the example input; {path} was not written"
            )
        record = {
            "file": path.name,
            "opset": next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")),
            "inputs": [
                {"name": v.name, "shape": list(a.shape), "dtype": str(a.dtype).removeprefix("torch.")}
                for v, a in zip(graph.graph.input, args, strict=False)
            ],
            "dynamic_axes": _dynamic_axes(graph),
            "external_data": f"{path.name}.data" if external else None,
            "check": check,
            "max_abs_diff": diff,
            "tolerance": tolerance,
            "exporter": "torch.onnx.export(dynamo=True)",
            "versions": {m: _version(m) for m in ("torch", "onnx", "onnxscript", "onnxruntime")},
        }
        for extra in tmp_dir.iterdir():  # external data first: model.onnx must never point at missing data
            if extra.name != path.name:
                os.replace(extra, path.parent / extra.name)
        os.replace(tmp, path)
        stale = path.parent / f"{path.name}.data"
        if not external and stale.exists():
            stale.unlink()
        return record
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        net.train(was_training)


def onnx_summary(record: Mapping[str, Any]) -> str:
    """One line about an ONNX export record: file, opset, what is dynamic, the check."""
    axes = sorted({s for dims in (record.get("dynamic_axes") or {}).values() for s in dims.values()})
    dynamic = f"dynamic {', '.join(axes)}" if axes else "fixed shapes"
    diff = record.get("max_abs_diff")
    check = f"onnxruntime max abs diff {diff:.2g}" if diff is not None else str(record.get("check"))
    return f"{record.get('file')} (opset {record.get('opset')}, {dynamic}; {check})"


def _input_tuple(example_input: Any) -> tuple[torch.Tensor, ...]:
    args = tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise ValueError("ONNX export needs the example input as a tensor or a tuple of tensors")
    return tuple(a.detach().cpu() for a in args)


def _batch_of_two(a: torch.Tensor) -> torch.Tensor:
    """``a`` grown to 2 rows (a batch of 1 would make the exporter fix the batch size to 1)."""
    if a.dim() == 0 or a.shape[0] >= 2:
        return a
    if a.is_floating_point():
        other = a + torch.randn(a.shape, generator=torch.Generator().manual_seed(0), dtype=a.dtype)
    else:
        other = a.flip(-1)
    return torch.cat([a, other])


def _onnx_program(model: nn.Module, args: tuple[torch.Tensor, ...], opset: int | None, dynamic: bool) -> Any:
    with torch.no_grad():
        out = model(*args)
    n_out = 1 if isinstance(out, torch.Tensor) else len(out) if isinstance(out, (tuple, list)) else 0
    kwargs: dict[str, Any] = {
        "dynamo": True,
        "opset_version": opset,
        "input_names": ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))],
        "output_names": ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)],
    }
    if dynamic:
        batch = torch.export.Dim("batch", min=1)
        kwargs["dynamic_shapes"] = tuple({0: batch} if a.dim() else None for a in args)
    with _quiet_exporter():
        return torch.onnx.export(model, args, **kwargs)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's progress lines, warnings and log messages (its errors still raise)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _check_onnx(path: Path, model: nn.Module, cases: list[tuple[torch.Tensor, ...]]) -> tuple[str, float | None]:
    """``(what checked it, max abs output difference)`` of onnxruntime vs PyTorch; ``(why skipped, None)``."""
    try:
        import onnxruntime as ort
    except ImportError:
        return f"skipped: onnxruntime is not installed ({ONNX_EXTRA})", None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst = 0.0
    for case in cases:
        with torch.no_grad():
            out = model(*case)
        expected = [out] if isinstance(out, torch.Tensor) else list(out)
        got = session.run(None, {n: a.numpy() for n, a in zip(names, case, strict=True)})
        if len(got) != len(expected):
            raise ValueError(f"the ONNX graph has {len(got)} outputs, the model {len(expected)}")
        for e, g in zip(expected, got, strict=True):
            e64, g64 = e.detach().double().numpy(), np.asarray(g, dtype=np.float64)
            if e64.shape != g64.shape:
                raise ValueError(f"the ONNX graph's output has shape {g64.shape}, the model's {e64.shape}")
            diff = np.where(np.isnan(e64) & np.isnan(g64), 0.0, np.abs(e64 - g64))
            worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max(initial=0.0)))
    return f"onnxruntime {ort.__version__} (CPU) vs PyTorch on the example input", worst


def _dynamic_axes(graph: Any) -> dict[str, dict[str, str]]:
    axes: dict[str, dict[str, str]] = {}
    for value in [*graph.graph.input, *graph.graph.output]:
        dims = {str(i): d.dim_param for i, d in enumerate(value.type.tensor_type.shape.dim) if d.dim_param}
        if dims:
            axes[value.name] = dims
    return axes


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _recorded_inputs(record: Mapping[str, Any]) -> Any:
    """Zero inputs of the shapes and dtypes an ONNX record lists (to export new weights of the same model)."""
    inputs = tuple(torch.zeros(i["shape"], dtype=getattr(torch, i["dtype"])) for i in record.get("inputs") or ())
    if not inputs:
        raise ValueError("the model's ONNX record lists no inputs to export it again with")
    return inputs[0] if len(inputs) == 1 else inputs


def _remove_onnx(out_dir: Path) -> None:
    for name in (ONNX_FILE, f"{ONNX_FILE}.data"):
        (out_dir / name).unlink(missing_ok=True)
