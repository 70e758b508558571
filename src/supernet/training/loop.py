"""`train`: the supernet training loop (optimizer, schedule, mixed precision, logging, checkpoints, DDP)."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import files
from ..device import resolve_device
from ..seeding import restart_seed, seed_everything
from ..space import SuperModule
from ..validation import validate_model
from ..version import __version__
from . import checkpoint as ck
from .config import TrainConfig
from .context import TouchAll, TrainContext
from .distributed import DistInfo, barrier, setup_distributed
from .evaluate import evaluate_many
from .kinds import decision_kinds
from .strategies import StepOutput, Strategy, make_strategy
from .tasks import Task, check_fits, make_task
from .tensorboard import TrainBoard, open_train_board


@dataclass
class Run:
    """The result of `train` (or `load_run`): the trained supernet and what the run recorded.

    Attributes:
        space: the supernet with trained weights. config: the `TrainConfig`. strategy: the strategy instance
        (None if its name is not registered when loading). task: the `Task` (None when loaded from disk).
        run_dir: where files were written (None if nowhere). step: completed steps. history: logged metric
        records. losses: per-step losses of the steps run in this call. final_arch: the strategy's chosen
        arch (gradient strategies) or None. spec: ``space.spec`` as recorded.
    """

    space: SuperModule
    config: TrainConfig
    strategy: Strategy | None
    task: Task | None = None
    run_dir: Path | None = None
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    final_arch: dict[str, Any] | None = None
    spec: dict[str, Any] | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """The last logged record (empty if nothing was logged)."""
        return dict(self.history[-1]) if self.history else {}


def lr_at(step: int, config: TrainConfig, segments: list[int] | None = None) -> float:
    """Learning rate of 0-based ``step``: linear warm-up to ``lr``, then cosine to ``min_lr`` (or constant).

    ``segments`` (increasing end steps, the last equal to ``config.steps``) restarts the cosine at each
    segment start, as progressive shrinking does per phase; warm-up happens in the first segment only.
    """
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    start, end = config.warmup_steps, config.steps
    for lo, hi in zip([0, *(segments or [])], segments or [], strict=False):
        if lo <= step < hi:
            start, end = max(lo, config.warmup_steps if lo == 0 else lo), hi
            break
    span = max(1, end - start)
    progress = min(1.0, max(0.0, (step - start) / span))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(space: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay on matrices/kernels only (not on biases, norms, 1-D parameters)."""
    decay = [p for p in space.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in space.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


def _set_deterministic(device: torch.device) -> None:
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # On CUDA some kernels (e.g. attention backward) have no deterministic version: warn instead of failing.
    torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def _versions() -> dict[str, str]:
    return {"supernet": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _to_float(v: Any) -> float:
    return float(v.detach().float().item()) if isinstance(v, torch.Tensor) else float(v)


def _mean_losses(pending: list[Any], info: DistInfo, dev: torch.device) -> list[float]:
    """Per-step losses averaged over ranks (one all-reduce for all pending steps)."""
    t = torch.tensor([_to_float(v) for v in pending], dtype=torch.float64, device=dev)
    if info.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
        t /= info.world_size
    return t.tolist()


class _Progress:
    """A tqdm bar on rank 0 showing loss, learning rate and samples/s (silent elsewhere)."""

    def __init__(self, enabled: bool, total: int, initial: int, desc: str) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def show(self, record: Mapping[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}", samples_s=f"{record['samples_per_s']:.0f}"
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _resolve_config(config: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config.model_copy(deep=True)
    return TrainConfig.from_dict(config)


def train(
    space: SuperModule,
    data: Any,
    strategy: str | Strategy | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    run_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    resume: bool = False,
    pipeline: Mapping[str, Any] | None = None,
) -> Run:
    """Train a supernet with a strategy; checkpoint to ``run_dir``; resume exactly with ``resume=True``.

    Args:
        space: the `SuperModule` to train (moved to ``device``; its weights are trained in place).
        data: a `Task`, a `CharText` (LM; block size from ``config.block_size`` or ``space.net.block_size``),
            an `ImageData`, an `ArrayDataset`, or a ``(train, val)`` pair (see `make_task`).
        strategy: a strategy name (``uniform``, ``fair``, ``sandwich``, ``alpha``, ``progressive``, or one
            registered later), a `Strategy` instance, or None for ``config.strategy``.
        config: a `TrainConfig`, a dict of its fields, or None for the defaults.
        run_dir: directory for ``run.json``, ``metrics.jsonl`` and checkpoints (None: write nothing).
        device: ``"auto"`` (cuda if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        resume: continue from the latest checkpoint in ``run_dir`` (starts fresh if there is none yet).
        pipeline: the whole pipeline config (``supernet train``) to record as ``run_dir/pipeline.json``, written
            only once every check passed, so a refused run leaves an existing run directory untouched.

    Under ``torchrun --nproc_per_node K`` the same call trains with DistributedDataParallel; every rank runs
    the same archs each step; ``config.batch_size`` is the global batch (split evenly over ranks).

    Example:
        >>> space = sn.spaces.gpt(block_size=16)                                  # doctest: +SKIP
        >>> run = sn.train(space, sn.data.shakespeare(), "sandwich", {"steps": 100}, run_dir="runs/a")  # +SKIP
    """
    config = _resolve_config(config)
    if not isinstance(space, SuperModule):
        raise TypeError(f"space must be a SuperModule, got {type(space).__name__}")
    strat = _resolve_strategy(strategy, config)
    if resume and run_dir is None:
        raise ValueError("resume=True needs a run_dir to resume from")
    session = _prepare(space, data, strat, config, Path(run_dir) if run_dir is not None else None, device, resume)
    start = _resume(session, pipeline)
    run = Run(space, config, strat, session.task, session.run_dir, start, [], [], None, space.spec)
    if session.run_dir is not None:
        run.history = [r for r in files.read_jsonl(session.run_dir / ck.METRICS) if int(r.get("step", 0)) <= start]
    _run_steps(session, run, start)
    _finish(session, run)
    return run


# ---------------------------------------------------------------- the steps of `train`


@dataclass
class _Session:
    """What the steps of one `train` call share."""

    space: SuperModule
    model: nn.Module  # the space, or its DDP wrapper
    wrapper: TouchAll | None  # what DDP wraps (None without DDP)
    optimizer: torch.optim.Optimizer
    strat: Strategy
    ctx: TrainContext
    config: TrainConfig
    task: Task
    info: DistInfo
    device: torch.device
    run_dir: Path | None
    checkpoint: Path | None  # the checkpoint to resume from
    segments: list[int] | None  # the learning-rate schedule's segments

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (rank 0 of a run with a directory)."""
        return self.run_dir is not None and self.info.is_main

    def path(self, name: str = "") -> Path:
        """``run_dir / name`` (only for runs with a directory)."""
        assert self.run_dir is not None
        return self.run_dir / name if name else self.run_dir


def _resolve_strategy(strategy: str | Strategy | None, config: TrainConfig) -> Strategy:
    """The strategy instance (a name, an instance, or None for ``config.strategy``); records it in ``config``."""
    if isinstance(strategy, str) or strategy is None:
        name = strategy or config.strategy
        if name != config.strategy and config.strategy_options and "strategy" in config.model_fields_set:
            raise ValueError(
                f"the config names strategy {config.strategy!r} with strategy_options, but strategy={name!r} was "
                "passed: pass one of them"
            )
        strat = make_strategy(name, config.strategy_options)
        config.strategy = name
    else:
        strat = make_strategy(strategy)
        config.strategy = strat.name
    config.strategy_options = strat.options.model_dump(mode="json")
    return strat


def _prepare(
    space: SuperModule, data: Any, strat: Strategy, config: TrainConfig, run_dir: Path | None,
    device: str | torch.device, resume: bool,
) -> _Session:
    """Devices and DDP, determinism and seeding, the task, the checks, the model, optimizer and strategy context."""
    info, dev = setup_distributed(resolve_device(device))
    if config.batch_size % info.world_size:
        raise ValueError(
            f"batch_size={config.batch_size} must divide evenly over {info.world_size} processes (it is the "
            "global batch)"
        )
    if config.deterministic:
        _set_deterministic(dev)
    seed_everything(config.seed + info.rank)

    block = config.block_size or getattr(space.net, "block_size", None)
    task = make_task(data, block_size=block, seed=config.seed)
    check_fits(space, task)

    checkpoint = ck.latest_checkpoint(run_dir) if run_dir is not None else None
    if checkpoint is not None and not resume:
        raise FileExistsError(
            f"{run_dir} already holds a run (checkpoint {checkpoint.name}): resume it (resume=True; on the command "
            "line --resume) or choose another run directory; nothing was written"
        )

    strat.prepare_space(space)  # before the optimizer and DDP see the parameters
    space.to(dev)
    space.train()
    wrapper: TouchAll | None = None
    model: nn.Module = space
    if info.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapper = TouchAll(space)
        model = DDP(wrapper, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimizer = make_optimizer(space, config)
    ctx = TrainContext(
        space, model, task, config, strat.options, dev, decision_kinds(space), info.rank, info.world_size,
        _amp_dtype(config, dev),
    )
    ctx.run_dir = run_dir
    strat.setup(ctx)
    segments = strat.schedule_segments(ctx)
    return _Session(
        space, model, wrapper, optimizer, strat, ctx, config, task, info, dev, run_dir, checkpoint, segments
    )


def _resume(s: _Session, pipeline: Mapping[str, Any] | None) -> int:
    """Restore the latest checkpoint (if any) and record the run as running; returns the step to start from."""
    start = 0
    if s.checkpoint is not None:
        start = _restore(s, s.checkpoint)
        if s.info.is_main:
            ck.truncate_metrics(s.path(ck.METRICS), start)
    if s.writes:
        _write_run_json(s, start, "running")
        if pipeline is not None:
            files.write_json(s.path(ck.PIPELINE_JSON), dict(pipeline))
    barrier(s.info)
    return start


def _run_steps(s: _Session, run: Run, start: int) -> None:
    """Steps ``start .. config.steps - 1``: train, log every ``log_every``, checkpoint every ``checkpoint_every``."""
    config = s.config
    log = _Logger(s, run, start)
    try:
        for step in range(start, config.steps):
            out, lr = _train_step(s, step)
            done = step + 1
            log.step_done(done, lr, out)
            if s.run_dir is not None and (
                (config.checkpoint_every and done % config.checkpoint_every == 0) or done == config.steps
            ):
                if s.info.is_main:
                    _save(s, done)
                barrier(s.info)
            run.step = done
    finally:
        log.close()
        if s.wrapper is not None:
            s.wrapper.close()


def _train_step(s: _Session, step: int) -> tuple[StepOutput, float]:
    """One optimizer step of the strategy at 0-based ``step``; returns its output and the learning rate."""
    s.ctx.step = step
    lr = lr_at(step, s.config, s.segments)
    for g in s.optimizer.param_groups:
        g["lr"] = lr
    s.optimizer.zero_grad(set_to_none=True)
    if s.wrapper is not None:
        s.wrapper.reset_usage()
    out = s.strat.step(s.ctx, s.strat.next_batch(s.ctx))
    if not out.archs:
        raise RuntimeError(f"strategy {s.strat.name!r} ran no arch in step {step}")
    if s.wrapper is not None:
        for p in s.wrapper.unused_parameters():
            p.grad = None
    if s.config.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(s.space.parameters(), s.config.grad_clip)
    s.optimizer.step()
    return out, lr


def _finish(s: _Session, run: Run) -> None:
    """The strategy's final arch; the final weights and ``run.json`` marked done."""
    run.final_arch = s.strat.final_arch(s.ctx)
    if s.writes:
        files.write_tensors(s.path(ck.FINAL_WEIGHTS), s.space.state_dict(), metadata={"step": str(run.step)})
        _write_run_json(s, run.step, "done", run.final_arch, run.metrics)
    barrier(s.info)


class _Logger:
    """Every ``log_every`` steps: a record of the rank-averaged loss, learning rate, throughput and the strategy's
    metrics (and, every ``eval_every`` steps, the max/min archs' val loss), kept in ``run.history`` and appended to
    ``metrics.jsonl``; a progress bar on rank 0; the same scalars in TensorBoard event files under
    ``RUN_DIR/tensorboard`` on rank 0 when ``config.tensorboard`` is on and tensorboard is installed."""

    def __init__(self, s: _Session, run: Run, start: int) -> None:
        self.s, self.run = s, run
        self.bar = _Progress(s.config.progress and s.info.is_main, s.config.steps, start, f"train {s.strat.name}")
        self.pending: list[Any] = []
        self.t_last, self.steps_since = time.perf_counter(), 0
        self.board: TrainBoard | None = None
        if s.writes and s.config.tensorboard:
            self.board = open_train_board(s.path(), start, s.strat, s.space.choices)

    def step_done(self, done: int, lr: float, out: StepOutput) -> None:
        """Account for a finished step (``done`` steps in all); log when it is time."""
        s, config = self.s, self.s.config
        self.pending.append(out.loss)
        self.steps_since += 1
        self.bar.update()
        if self.board is not None:
            self.board.after_step()
        if not (done % config.log_every == 0 or done == config.steps):
            return
        losses = _mean_losses(self.pending, s.info, s.device)
        self.run.losses.extend(losses)
        self.pending = []
        now = time.perf_counter()
        record: dict[str, Any] = {
            "step": done,
            "loss": sum(losses) / len(losses),
            "lr": lr,
            "samples_per_s": self.steps_since * config.batch_size / max(now - self.t_last, 1e-9),
            "archs_per_step": len(out.archs),
        }
        record.update({k: _to_float(v) for k, v in out.metrics.items()})
        self.t_last, self.steps_since = now, 0
        if config.eval_every and (done % config.eval_every == 0 or done == config.steps):
            res = evaluate_many(
                s.space, [s.space.max_arch(), s.space.min_arch()], s.task, max_batches=config.eval_batches,
                device=s.device,
            )
            record["val_loss_max"], record["val_loss_min"] = res[0]["loss"], res[1]["loss"]
            s.space.train()
        self.run.history.append(record)
        self.bar.show(record)
        if s.writes:
            files.append_jsonl(s.path(ck.METRICS), record)
        if self.board is not None:
            self.board.log(record)

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()


# ---------------------------------------------------------------- run.json and checkpoints


def _write_run_json(
    s: _Session, step: int, status: str, final_arch: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    files.write_json(
        s.path(ck.RUN_JSON),
        {
            "format": ck.RUN_FORMAT,
            "version": ck.RUN_VERSION,
            "space": s.space.spec,
            "choices": {k: list(v) for k, v in s.space.choices.items()},
            "strategy": s.strat.describe(),
            "config": s.config.to_json(),
            "task": s.task.describe(),
            "status": status,
            "step": step,
            "final_arch": final_arch,
            "metrics": metrics or {},
            "versions": _versions(),
        },
    )


def _save(s: _Session, step: int) -> None:
    tensors, optim_json = ck.optimizer_to_parts(s.optimizer)
    tensors.update({f"strategy.{k}": v for k, v in s.strat.tensor_state().items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if s.ctx.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(s.ctx.device)
    for name, gen in s.ctx.generators():
        tensors[f"rng.{name}"] = gen.get_state()
    state = {
        "step": step,
        "config": s.config.to_json(),
        "strategy": s.strat.describe(),
        "strategy_state": s.strat.state_dict(),
        "optimizer": optim_json,
        "schedule": {"kind": s.config.schedule, "segments": s.strat.schedule_segments(s.ctx)},
        "rng": {"python": ck.python_rng_state(), "numpy": ck.numpy_rng_state(), "arch": ck.python_rng_state(s.ctx.rng)},
        "world_size": s.ctx.world_size,
    }
    ck.save_checkpoint(s.path(), step, s.space.state_dict(), tensors, state, keep=s.config.keep_checkpoints)


def _restore(s: _Session, path: Path) -> int:
    weights, tensors, state = ck.load_checkpoint(path, s.device)
    strat, ctx = s.strat, s.ctx
    saved = state.get("strategy", {}).get("name")
    if saved != strat.name:
        raise ValueError(f"{path} was trained with strategy {saved!r}; cannot resume it with {strat.name!r}")
    missing, unexpected = s.space.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not fit this space: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    ck.optimizer_from_parts(s.optimizer, tensors, state["optimizer"])
    strat.load_state_dict(state.get("strategy_state", {}))
    strat.load_tensor_state({k[len("strategy.") :]: v for k, v in tensors.items() if k.startswith("strategy.")})
    ck.set_python_rng_state(state["rng"]["arch"], ctx.rng)
    for name, gen in ctx.generators():
        gen.set_state(tensors[f"rng.{name}"])
    if s.info.rank == 0:
        ck.set_python_rng_state(state["rng"]["python"])
        ck.set_numpy_rng_state(state["rng"]["numpy"])
        torch.set_rng_state(tensors["rng.torch"])
        if s.device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], s.device)
    else:  # other ranks: fresh but reproducible streams (only dropout-like randomness uses them)
        seed_everything(restart_seed(s.config.seed, s.info.rank, int(state["step"])))
    return int(state["step"])


def load_run(run_dir: str | Path, space: SuperModule | None = None, device: str | torch.device = "cpu") -> Run:
    """Rebuild a trained supernet from a run directory.

    The space is rebuilt from ``run.json``'s spec with `supernet.spaces.build_space` (a ready space, a space
    registered with ``sn.spaces.register_space``, or a ``module:function`` name); pass ``space`` for a space
    built by hand, which has no spec. Its weights are those of the latest checkpoint (or the final
    ``weights.safetensors``), checksum-verified.
    """
    run_path = Path(run_dir)
    meta = ck.read_run_json(run_path)
    spec = meta.get("space")
    if space is None:
        space = ck.build_run_space(run_path, meta)
    ckpt = ck.latest_checkpoint(run_path)
    dev = resolve_device(device)
    if ckpt is not None:
        weights = files.read_tensors(ckpt / "weights.safetensors", dev, "checkpoint weights file")
        step = int(files.read_json(run_path / ck.LATEST, ck.LatestFile)["step"])
    elif (run_path / ck.FINAL_WEIGHTS).exists():
        weights = files.read_tensors(run_path / ck.FINAL_WEIGHTS, dev, "supernet weights file")
        step = int(meta.get("step", 0))
    else:
        raise FileNotFoundError(f"{run_path} holds no weights yet (no checkpoint, no {ck.FINAL_WEIGHTS})")
    space.to(dev)
    expected = space.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    wrong = [k for k, v in expected.items() if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"the weights in {run_path} do not fit its space: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shapes {wrong[:5]}"
        )
    space.load_state_dict(weights)
    config = validate_model(TrainConfig, meta.get("config", {}), f"{run_path / ck.RUN_JSON}: config")
    strat_meta = meta.get("strategy", {})
    try:
        strat: Strategy | None = make_strategy(strat_meta.get("name", ""), strat_meta.get("options", {}))
    except ValueError:
        strat = None
    history = files.read_jsonl(run_path / ck.METRICS)
    return Run(space, config, strat, None, run_path, step, history, [], meta.get("final_arch"), spec)
