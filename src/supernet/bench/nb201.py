"""`supernet bench nb201`: how well does a trained NB201 supernet rank architectures against NAS-Bench-201?

Protocol (NAS-Bench-201's ``cifar10-valid``): the supernet trains on one part of the CIFAR-10 *training* images
and ranks archs by accuracy on a held-out part of the *training* images; the test set is never touched. Each
evaluated arch inherits the supernet's weights, gets its BatchNorm statistics recalibrated on training images,
and is scored on the held-out images. The scores are compared with the table's ``val_acc_200`` (the mean final
validation accuracy of 3 stand-alone 200-epoch trainings) with every metric of `supernet.bench.metrics`, next to
the free floors (ranking by FLOPs or by params).

Everything is resumable: training resumes through ``sn.train(resume=True)``; the chosen archs, every finished
evaluation and the accumulated wall time are persisted in the output directory as they happen. Re-running the
same command continues where it stopped.

Output directory::

    bench.json         the settings (a re-run must match them)
    archs.json         the evaluated archs with their roles (sampled / best / worst)
    train/             the sn.train run directory (checkpoints, metrics.jsonl)
    evaluations.json   {arch key: {"accuracy", "loss", "count"}}, updated after every chunk of archs
    timing.json        wall seconds spent training / evaluating (summed over sessions)
    report.json        every figure; scatter.png; summary.md
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..files import FileModel, read_json, write_json
from .cifar import ImageSplits, cifar10_splits
from .metrics import Estimate, bootstrap_ci, kendall_tau, ranking_report, regret, relative_improvement
from .report import PAPER_TAUS, README_FLOPS_TAU_ALL, scatter_plot, write_summary
from .tables import Table, load_nb201, load_table

FORMAT = "supernet-bench"
VERSION = 1


@dataclass
class BenchConfig:
    """Every setting of an NB201 ranking benchmark (a preset fills them; flags override single fields)."""

    preset: str = "cpu"
    strategy: str = "uniform"
    seed: int = 0
    archs: int = 100
    # supernet
    C: int = 16  # the benchmark's names for width and cells per stage
    N: int = 1
    # data
    size: int = 16
    per_class: int | None = None
    holdout_fraction: float = 0.04
    data_seed: int = 0
    padding: int = 2
    # training
    epochs: float = 12.0
    steps: int | None = None  # overrides epochs when set
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    nesterov: bool = True
    warmup_steps: int = 0
    grad_clip: float | None = 5.0
    strategy_options: dict[str, Any] = field(default_factory=dict)
    # evaluation
    bn_batches: int = 16
    bn_batch_size: int = 128
    eval_batch_size: int = 250
    eval_max_batches: int | None = None
    eval_chunk: int = 10
    metric: str = "val_acc_200"
    n_resamples: int = 1000
    device: str = "auto"

    @property
    def bn_images(self) -> int:
        """Training images each arch's BatchNorm statistics are recalibrated on."""
        return self.bn_batches * self.bn_batch_size

    def train_steps(self, train_images: int) -> int:
        """Optimizer steps: ``steps`` if set, else ``ceil(epochs * train_images / batch_size)``."""
        if self.steps is not None:
            return int(self.steps)
        return max(1, math.ceil(self.epochs * train_images / self.batch_size))


PRESETS: dict[str, tuple[BenchConfig, dict[str, str]]] = {
    "cpu": (
        BenchConfig(preset="cpu", archs=500),
        {
            "C=16, N=1": "the benchmark's width but 1 cell per stage instead of 5 (3 cells instead of 15): about 5x "
            "cheaper per step; the cell topology, the thing being ranked, is unchanged",
            "16x16 images": "CIFAR-10 downsampled 2x (area averaging): about 4x fewer FLOPs per image; crop padding "
            "scaled from 4 to 2 pixels",
            "48,000 / 2,000 split": "all 50,000 training images, 2,000 held out (stratified, seed 0) to rank on; "
            "NAS-Bench-201 holds out 25,000, which costs 12x more evaluation time for little ranking precision",
            "12 epochs": "4,500 steps of batch 128, SGD (Nesterov) lr 0.05 cosine, wd 5e-4, grad clip 5: measured "
            "with --threads 1: 16.5 min of training + 4.7 min of evaluation (21 min in all) on a 2-core machine "
            "busy with other jobs, 5.9 + 1.3 min (7.3 min) on a quiet one",
            "500 archs + best + worst": "BN recalibrated on 2,048 training images per arch, scored on the 2,000 "
            "held-out images; 500 uniformly sampled archs make the 95 % CI of tau about +-0.035 (100 archs: +-0.12), "
            "at about 14 min of evaluation on a busy 2-core machine",
        },
    ),
    "gpu": (
        BenchConfig(
            preset="gpu",
            C=16,
            N=5,
            size=32,
            padding=4,
            holdout_fraction=0.5,
            epochs=50,
            batch_size=256,
            lr=0.05,
            archs=100,
            bn_batches=20,
            bn_batch_size=256,
            eval_batch_size=1000,
        ),
        {
            "paper setting": "C=16, N=5, 32x32, crop padding 4, the NB201 cifar10-valid protocol: 25,000 training "
            "images to train the supernet, 25,000 held-out training images to rank on",
            "50 epochs": "batch 256, SGD (Nesterov) lr 0.05 cosine, wd 5e-4",
            "100 archs + best + worst": "BN recalibrated on 5,120 training images per arch",
        },
    ),
    "cpu32": (
        BenchConfig(preset="cpu32", size=32, padding=4, steps=7652),
        {
            "the data README's calibration": "C=16, N=1 at full 32x32 resolution, 7,652 steps of batch 128 (about 20 "
            "epochs), SGD lr 0.05 cosine; the README reports tau 0.50 on 100 archs after 22.5 minutes of training on "
            "2 free CPU cores. Evaluation costs about 4x the cpu preset's, so the total can pass 30 minutes",
            "48,000 / 2,000 split": "as the cpu preset",
        },
    ),
    "tiny": (
        BenchConfig(
            preset="tiny",
            C=4,
            N=1,
            size=8,
            padding=1,
            per_class=20,
            holdout_fraction=0.5,
            steps=4,
            batch_size=16,
            archs=4,
            bn_batches=2,
            bn_batch_size=16,
            eval_batch_size=100,
            eval_chunk=2,
            n_resamples=50,
            lr=0.05,
        ),
        {"tiny": "a few steps and archs on 8x8 images: checks the pipeline end to end, measures nothing"},
    ),
}


def memory_figures(space: Any) -> dict[str, float]:
    """The supernet's parameters (every sub-supernet's copy included) and this process's peak memory: resident
    set size in MiB, and CUDA's peak allocation when the space is on a GPU (of this session: a resumed bench
    reports the session that finished it)."""
    import resource

    import torch

    from ..space.partition import memory_report

    mem = memory_report(space)
    out: dict[str, float] = {
        "supernet_params": float(mem["params"]),
        "supernet_mib": mem["bytes"] / 2**20,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
    }
    device = next((p.device for p in space.parameters()), None)
    if device is not None and device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def preset_config(name: str, **overrides: Any) -> BenchConfig:
    """The preset's `BenchConfig` with ``overrides`` (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    base = PRESETS[name][0]
    fields = set(BenchConfig.__dataclass_fields__)
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown bench setting(s) {sorted(unknown)}; allowed: {sorted(fields)}")
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


def find_nb201_table(data_dir: str | Path | None) -> Path:
    """The NB201 CIFAR-10 table under ``data_dir`` (itself, ``nb201/`` or ``benchmarks/nb201/``)."""
    import os

    root = data_dir if data_dir is not None else os.environ.get("SUPERNET_DATA")
    if root is None:
        raise FileNotFoundError("no NB201 table given: pass --table FILE or --data-dir (or set $SUPERNET_DATA)")
    root = Path(root).expanduser()
    for c in (root, root / "nb201", root / "benchmarks" / "nb201"):
        if (c / "nasbench201_cifar10.json").is_file():
            return c
    raise FileNotFoundError(f"nasbench201_cifar10.json not found in {root}, {root}/nb201 or {root}/benchmarks/nb201")


def choose_archs(table: Table, k: int, seed: int, metric: str) -> list[dict[str, Any]]:
    """``k`` table archs drawn uniformly without replacement (seeded), plus the table's best and worst by ``metric``.

    Returns ``[{"key", "role", "sampled"}]``: role ``sampled``, ``best`` or ``worst``; ``sampled`` tells whether
    the arch came from the uniform draw (the ranking metrics use only those, so they estimate the space-wide
    figures without bias; a table best or worst that the draw happened to hit counts as sampled).
    """
    keys = sorted(table.rows)
    if not 1 <= k <= len(keys):
        raise ValueError(f"--archs must lie in 1..{len(keys)} (the table's rows), got {k}")
    rng = np.random.default_rng(seed)
    picked = [keys[i] for i in rng.choice(len(keys), size=k, replace=False)]
    out: list[dict[str, Any]] = [{"key": key, "role": "sampled", "sampled": True} for key in picked]
    for role, key in (("best", table.best(metric)), ("worst", table.worst(metric))):
        if key in picked:
            out[picked.index(key)]["role"] = role
        else:
            out.append({"key": key, "role": role, "sampled": False})
    return out


class _ArchEntry(FileModel):
    key: str
    role: str
    sampled: bool = False


class _Timing(FileModel):
    train_s: float
    eval_s: float
    total_s: float
    sessions: int


_FILES: dict[str, Any] = {
    "bench.json": (dict[str, Any], "benchmark settings"),
    "archs.json": (list[_ArchEntry], "list of benchmarked archs"),
    "timing.json": (_Timing, "benchmark timing record"),
    "evaluations.json": (dict[str, dict[str, float]], "map arch key -> {accuracy, loss, count}"),
}


def _read_json(path: Path, default: Any) -> Any:
    """A benchmark state file, shape-checked (``default`` when it does not exist yet)."""
    if not path.is_file():
        return default
    shape, what = _FILES[path.name]
    return read_json(path, shape, what)


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    path = out / "bench.json"
    saved = _read_json(path, None)
    if saved is None:
        write_json(path, settings)
        return
    diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v and k not in ("device",)}
    if diff:
        detail = "; ".join(f"{k}: was {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{out} holds a benchmark with other settings ({detail}); use another --out to start anew")


def _cost_floors(table: Table, keys: list[str], true: np.ndarray, cfg: BenchConfig) -> dict[str, Any]:
    floors: dict[str, Any] = {"readme_flops_tau_all": README_FLOPS_TAU_ALL}
    for name in ("flops", "params"):
        if name not in table.metrics:
            continue
        vals = table.values(name, keys)
        ok = np.isfinite(vals)
        if ok.sum() >= 2:
            floors[f"{name}_tau"] = bootstrap_ci(
                lambda a, b: kendall_tau(a, b), vals[ok], true[ok], n_resamples=cfg.n_resamples, seed=cfg.seed
            ).to_dict()
        everything = table.values(name)
        target = table.values(cfg.metric)
        good = np.isfinite(everything) & np.isfinite(target)
        floors[f"{name}_tau_all"] = {"value": kendall_tau(everything[good], target[good]), "low": None, "high": None}
    return floors


def _verdict(tau: float, floor: dict[str, Any] | None) -> str:
    if floor is None or floor.get("value") is None or not math.isfinite(tau):
        return "no FLOPs floor to compare with"
    if floor.get("high") is not None and tau > floor["high"]:
        return "above the FLOPs floor (beyond its CI)"
    if tau > floor["value"]:
        return "above the FLOPs floor, but within its CI"
    return "NOT above the FLOPs floor: this ranking adds nothing over counting FLOPs"


def run_nb201_bench(
    cfg: BenchConfig,
    out_dir: str | Path,
    table: Table | str | Path | None = None,
    data: ImageSplits | None = None,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train an NB201 supernet with ``cfg.strategy``, rank archs with it, compare with the table; return the report.

    Args:
        cfg: the settings (see `PRESETS` / `preset_config`).
        out_dir: where everything is written (re-running with the same ``out_dir`` resumes).
        table: a loaded `Table`, a table file / NB201 directory, or None to find it under ``data_dir``.
        data: ready `ImageSplits` (tests); None loads CIFAR-10 from ``data_dir`` with `cifar10_splits`.
        data_dir: folder with the data (``images/cifar10-train.tar.gz``, ``benchmarks/nb201/``).
        cache_dir: decoded-image cache (default ``$SUPERNET_CACHE`` or ``~/.cache/supernet``).
    """
    import torch

    from .. import training as sn_train
    from ..spaces.nb201 import nb201

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    # Ground truth.
    if not isinstance(table, Table):
        path = Path(table) if table is not None else find_nb201_table(data_dir)
        table = load_nb201(path) if path.is_dir() else load_table(path, space="nb201")
    if table.space != "nb201":
        raise ValueError(f"the NB201 benchmark needs a table keyed by NB201 strings, got space {table.space!r}")
    if cfg.metric not in table.metrics:
        raise ValueError(f"metric {cfg.metric!r} is not in the table; available: {', '.join(table.metrics)}")

    # Data (training images only) and the task.
    if data is None:
        data = cifar10_splits(
            data_dir,
            size=None if cfg.size == 32 else cfg.size,
            per_class=cfg.per_class,
            holdout_fraction=cfg.holdout_fraction,
            seed=cfg.data_seed,
            cache_dir=cache_dir,
        )
    task = data.task(augment=True, padding=cfg.padding)
    steps = cfg.train_steps(len(data.train))
    settings = {**asdict(cfg), "resolved_steps": steps, "data": data.info, "table": table.metadata}
    _check_settings(out, settings)

    archs = _read_json(out / "archs.json", None)
    if archs is None:
        archs = choose_archs(table, cfg.archs, cfg.seed, cfg.metric)
        write_json(out / "archs.json", archs)
    timing = _read_json(out / "timing.json", {"train_s": 0.0, "eval_s": 0.0, "total_s": 0.0, "sessions": 0})
    timing["sessions"] += 1

    # Train (resumes from the latest checkpoint in out/train).
    torch.manual_seed(cfg.seed)
    space = nb201(C=cfg.C, N=cfg.N, num_classes=len(data.info.get("classes", range(10))))
    train_cfg = {
        "steps": steps,
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
        "lr": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "nesterov": cfg.nesterov,
        "warmup_steps": cfg.warmup_steps,
        "grad_clip": cfg.grad_clip,
        "seed": cfg.seed,
        "strategy_options": cfg.strategy_options,
        "strategy": cfg.strategy,
        "checkpoint_every": max(1, min(500, steps // 10)),
        "log_every": max(1, min(50, steps)),
        "progress": progress,
    }
    run_dir = out / "train"
    t0 = time.perf_counter()
    log(f"training {cfg.strategy} supernet: {steps} steps of batch {cfg.batch_size} on {len(data.train)} images")
    run = sn_train.train(
        space, task, strategy=cfg.strategy, config=train_cfg, run_dir=run_dir, device=cfg.device, resume=True
    )
    timing["train_s"] += time.perf_counter() - t0
    write_json(out / "timing.json", timing)
    space = run.space

    # Evaluate with inherited weights, persisting every chunk.
    t0 = time.perf_counter()
    evals: dict[str, dict[str, float]] = _read_json(out / "evaluations.json", {})
    todo = [a["key"] for a in archs if a["key"] not in evals]
    log(f"evaluating {len(todo)} of {len(archs)} archs ({len(archs) - len(todo)} already done)")
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(archs), initial=len(archs) - len(todo), desc="evaluate", unit="arch")
    for lo in range(0, len(todo), cfg.eval_chunk):
        chunk = todo[lo : lo + cfg.eval_chunk]
        results = sn_train.evaluate_many(
            space,
            [table.arch(k) for k in chunk],
            task,
            split="val",
            batch_size=cfg.eval_batch_size,
            max_batches=cfg.eval_max_batches,
            bn_batches=cfg.bn_batches,
            bn_batch_size=cfg.bn_batch_size,
            seed=cfg.seed,
            device=None,
        )
        for k, r in zip(chunk, results, strict=True):
            evals[k] = {"accuracy": 100.0 * float(r["accuracy"]), "loss": float(r["loss"]), "count": int(r["count"])}
        write_json(out / "evaluations.json", evals)
        timing["eval_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        write_json(out / "timing.json", timing)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    timing["eval_s"] += time.perf_counter() - t0

    report = build_report(cfg, table, archs, evals, data.info, steps, timing)
    timing["total_s"] += time.perf_counter() - t_start
    report["timing"] = timing
    report["device"] = _device_name(space)
    report["memory"] = memory_figures(space)
    write_json(out / "timing.json", timing)
    write_json(out / "report.json", report)
    keys = [a["key"] for a in archs]
    scatter_plot(
        out / "scatter.png",
        [evals[k]["accuracy"] for k in keys],
        table.values(cfg.metric, keys).tolist(),
        [a["role"] for a in archs],
        title=f"NB201 {cfg.strategy} ({cfg.preset}, seed {cfg.seed}): "
        f"tau {report['metrics']['kendall_tau']['value']:.3f}",
        ylabel=f"NAS-Bench-201 {cfg.metric} (%)",
    )
    write_summary(out / "summary.md", report)
    return report


def _device_name(space: Any) -> str:
    import torch

    dev = next(space.parameters()).device
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def build_report(
    cfg: BenchConfig,
    table: Table,
    archs: list[dict[str, Any]],
    evals: dict[str, dict[str, float]],
    data_info: dict[str, Any],
    steps: int,
    timing: dict[str, Any],
) -> dict[str, Any]:
    """Every figure of a benchmark from its evaluations (pure: no training, no files).

    ``metrics`` and ``floors`` use only the uniformly sampled archs (unbiased estimates for the whole space);
    ``metrics_with_extremes`` adds the table's best and worst; ``extremes`` gives their predicted ranks;
    ``top_predicted`` is the arch a search over all evaluated archs would return, with its regret against the
    table's optimum (which is among them).
    """
    keys = [a["key"] for a in archs]
    pred = np.array([evals[k]["accuracy"] for k in keys])
    true = table.values(cfg.metric, keys)
    sampled = np.array([bool(a.get("sampled", a["role"] == "sampled")) for a in archs])
    if sampled.sum() < 2:
        raise ValueError(f"need at least 2 uniformly sampled archs to compare rankings, got {int(sampled.sum())}")

    def report_of(mask: np.ndarray) -> dict[str, Any]:
        est = ranking_report(pred[mask], true[mask], ks=(0.1, 0.05), n_resamples=cfg.n_resamples, seed=cfg.seed)
        return {name: e.to_dict() for name, e in est.items()}

    metrics = report_of(sampled)
    everything = np.ones_like(sampled)
    floors = _cost_floors(table, [k for k, s in zip(keys, sampled, strict=True) if s], true[sampled], cfg)
    order = np.argsort(-pred, kind="stable")
    predicted_rank = np.empty(len(keys), dtype=int)
    predicted_rank[order] = np.arange(1, len(keys) + 1)
    extremes = {
        a["role"]: {"key": a["key"], "predicted_rank": int(predicted_rank[i]), "of": len(keys), "true": float(true[i])}
        for i, a in enumerate(archs)
        if a["role"] in ("best", "worst")
    }
    top = int(np.argmax(pred))
    rows = []
    for i, a in enumerate(archs):
        row = {
            "key": a["key"],
            "role": a["role"],
            "sampled": bool(sampled[i]),
            "predicted_accuracy": float(pred[i]),
            "predicted_loss": evals[a["key"]]["loss"],
            "true": float(true[i]),
        }
        for extra in ("test_acc_200", "flops", "params"):
            if extra in table.metrics:
                row[extra] = float(table[a["key"]].get(extra, math.nan))
        rows.append(row)
    cfg_dict = {
        **asdict(cfg),
        "steps": steps,
        "bn_images": cfg.bn_images,
        "epochs_done": steps * cfg.batch_size / max(1, data_info.get("train_images", 1)),
    }
    return {
        "format": FORMAT,
        "version": VERSION,
        "benchmark": "nb201",
        "config": cfg_dict,
        "preset_notes": PRESETS[cfg.preset][1] if cfg.preset in PRESETS else {},
        "data": data_info,
        "table": {**table.metadata, "metric": cfg.metric, "rows": len(table)},
        "sampled_archs": int(sampled.sum()),
        "metrics": metrics,
        "metrics_with_extremes": report_of(everything),
        "floors": floors,
        "verdict": _verdict(metrics["kendall_tau"]["value"], floors.get("flops_tau")),
        "paper_taus": PAPER_TAUS,
        "extremes": extremes,
        "top_predicted": {
            "key": keys[top],
            "true": float(true[top]),
            "regret": float(regret(pred, true)),
            "relative_improvement": relative_improvement(float(true[top]), true[sampled]),
        },
        "archs": rows,
        "timing": timing,
    }


def estimate_str(est: dict[str, Any] | Estimate) -> str:
    """``value [low, high]`` of an estimate dict (for printing tables)."""
    d = est.to_dict() if isinstance(est, Estimate) else est
    if d.get("low") is None:
        return f"{d['value']:.3f}"
    return f"{d['value']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"
