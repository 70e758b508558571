"""Ground truth for any space: train sampled archs stand-alone from scratch with one recipe, write a table.

Each arch is extracted from the space (`SuperModule.extract`), every parameter is freshly re-initialised (so no
supernet weight leaks in), trained for ``steps`` optimizer steps with the same recipe and seed schedule, and
evaluated on the task's validation split. Rows are keyed like every `Table` (NB201 string for ``nb201``,
canonical arch JSON otherwise) and the table file is rewritten atomically after every arch, so a killed run
resumes where it stopped (archs already in the file are skipped).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..seeding import GROUNDTRUTH_INIT_SEED_OFFSET, derived_seed
from .tables import Table, arch_key, load_table


@dataclass
class GroundTruthRecipe:
    """How every arch is trained (the same for all, so the table compares archs, not recipes)."""

    steps: int = 500
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    eval_batch_size: int = 256
    eval_max_batches: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")


def reinitialize(module: nn.Module, seed: int) -> nn.Module:
    """Re-initialise every submodule that has ``reset_parameters`` (torch's default init), seeded; BN stats reset."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
            running = getattr(m, "reset_running_stats", None)
            if callable(running):
                running()
    return module


def _lr(step: int, recipe: GroundTruthRecipe) -> float:
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    t = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * min(1.0, t)))


def train_standalone(
    net: nn.Module, task: Any, recipe: GroundTruthRecipe, seed: int, device: torch.device
) -> dict[str, float]:
    """Train ``net`` on ``task`` for ``recipe.steps`` steps and return its validation metrics."""
    net.to(device).train()
    params = [p for p in net.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=recipe.lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
    else:
        opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    for step in range(recipe.steps):
        for g in opt.param_groups:
            g["lr"] = _lr(step, recipe)
        x, y = task.train_batch(recipe.batch_size, gen, device)
        loss = task.loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        opt.step()
    net.eval()
    sums = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
    with torch.no_grad():
        for x, y in task.eval_batches("val", recipe.eval_batch_size, recipe.eval_max_batches, device):
            for k, v in task.metrics(net(x), y).items():
                sums[k] += v
    n = max(1.0, sums["count"])
    return {
        "val_accuracy": 100.0 * sums["correct"] / n,
        "val_loss": sums["loss_sum"] / n,
        "train_loss": float(loss.detach()),
        "params": float(sum(p.numel() for p in net.parameters())),
    }


def sample_archs(space: Any, k: int, seed: int, key: Callable[[Mapping[str, Any]], str]) -> list[dict[str, Any]]:
    """``k`` distinct archs drawn uniformly from ``space`` with ``seed`` (fewer if the space is smaller)."""
    rng = random.Random(seed)
    out: dict[str, dict[str, Any]] = {}
    limit = min(k, space.num_archs())
    tries = 0
    while len(out) < limit and tries < 100 * limit:
        arch = space.sample(rng=rng)
        out.setdefault(key(arch), arch)
        tries += 1
    return list(out.values())


def build_groundtruth(
    space: Any,
    task: Any,
    archs: int | list[Mapping[str, Any]],
    recipe: GroundTruthRecipe | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Table:
    """Train archs of ``space`` stand-alone on ``task`` and return (and write) the ground-truth table.

    Args:
        space: a `SuperModule` (its ``spec`` names the space; ``nb201`` rows are keyed by NB201 strings).
        task: a `supernet.training.Task` (classification or LM); rows get ``val_accuracy`` (%), ``val_loss``,
            ``train_loss``, ``params`` and ``train_s``.
        archs: how many archs to sample uniformly (seeded by ``recipe.seed``) or an explicit list.
        recipe: the one training recipe for every arch.
        out: a ``.json`` or ``.csv`` table file, rewritten after each arch; existing rows are kept and skipped.
    """
    from ..device import resolve_device

    recipe = recipe or GroundTruthRecipe()
    space_name = (space.spec or {}).get("space") if getattr(space, "spec", None) else None
    key_space = "nb201" if space_name == "nb201" else None

    def key(a: Mapping[str, Any]) -> str:
        return arch_key(dict(a), key_space)

    chosen = sample_archs(space, archs, recipe.seed, key) if isinstance(archs, int) else [dict(a) for a in archs]
    for a in chosen:
        space.validate(a)
    metadata = {"space": space.spec, "recipe": asdict(recipe), "task": task.describe(), "kind": "groundtruth"}
    table = Table({}, key_space or space_name, metadata)
    path = Path(out) if out is not None else None
    if path is not None and path.is_file():
        table = load_table(path, space=key_space or space_name)
        table.metadata = {**table.metadata, **metadata}
    dev = resolve_device(device)
    todo = [a for a in chosen if key(a) not in table.rows]
    log(f"ground truth: {len(todo)} of {len(chosen)} archs to train ({recipe.steps} steps each)")
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chosen), initial=len(chosen) - len(todo), desc="ground truth", unit="arch")
    for i, arch in enumerate(todo):
        t0 = time.perf_counter()
        net = reinitialize(space.extract(arch), derived_seed(recipe.seed, GROUNDTRUTH_INIT_SEED_OFFSET) + i)
        row = train_standalone(net, task, recipe, recipe.seed, dev)
        row["train_s"] = time.perf_counter() - t0
        table.rows[key(arch)] = row
        if path is not None:
            table.save(path)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(acc=f"{row['val_accuracy']:.1f}", loss=f"{row['val_loss']:.3f}")
    if bar is not None:
        bar.close()
    return table
