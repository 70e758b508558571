"""Fine-tune an exported model (plain training of a plain module) and write it back atomically."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from .export import load, load_metadata, write_model
from .training.evaluate import evaluate_model


def train_plain(
    model: torch.nn.Module,
    task: Any,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    grad_clip: float | None = 1.0,
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
) -> list[float]:
    """Train a plain module on ``task`` (AdamW, linear warm-up then cosine to 0); returns per-step losses."""
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, steps - warmup_steps)
        return 0.5 * lr * (1 + math.cos(math.pi * t))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True)
    losses = []
    model.train()
    try:
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            x, y = task.train_batch(batch_size, gen, device)
            loss = task.loss(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            losses.append(loss.item())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr_at(step):.2e}")
    finally:
        if bar is not None:
            bar.close()
    model.eval()
    return losses


def finetune(
    model_dir: str | os.PathLike[str],
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 3e-4,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    grad_clip: float | None = 1.0,
    eval_batches: int | None = None,
    eval_batch_size: int | None = None,
    seed: int = 0,
    task: Any = None,
    device: str = "auto",
    progress: bool = True,
    space: Any = None,
) -> dict[str, Any]:
    """Train an exported model ``steps`` more steps (AdamW, warm-up + cosine) and write it back.

    The data comes from ``task`` or from the data config recorded at export. The val loss before and after is
    measured as the export measured the model card's metrics (same val batches, unless ``eval_batches`` /
    ``eval_batch_size`` say otherwise), so the starting point is the card's loss. The new weights replace
    ``model.safetensors`` atomically, and ``model.json`` / the model card record the fine-tuning.

    ``space`` is needed only for a model exported from a hand-built space (see `supernet.export.load`).

    Returns:
        ``{"steps", "val_loss_before", "val_loss_after", "seconds"}``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    meta = load_metadata(model_dir)
    if task is None:
        task = _task_from_meta(meta, model_dir)
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    model = load(model_dir, space=space, device=dev)
    recorded = meta.get("evaluation") or {}
    max_batches = eval_batches if eval_batches is not None else recorded.get("max_batches", 16)
    eval_size = eval_batch_size or recorded.get("batch_size") or 64

    def val_loss() -> float:
        return evaluate_model(model, task, "val", eval_size, max_batches, bn_batches=0)["loss"]

    before = val_loss()
    start = time.perf_counter()
    train_plain(model, task, steps, batch_size, lr, weight_decay, warmup_steps, grad_clip, seed, progress, "finetune")
    after = val_loss()
    record = {
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "val_loss_before": before,
        "val_loss_after": after,
        "seconds": time.perf_counter() - start,
    }
    meta.setdefault("finetune", []).append(record)
    meta.setdefault("metrics", {})["finetuned_val_loss"] = after
    write_model(Path(model_dir), model.to("cpu").eval(), meta)
    return record


def _task_from_meta(meta: dict[str, Any], model_dir: Any) -> Any:
    from .data.config import DataConfig
    from .training.rundata import build_task

    data = meta.get("data")
    if not data:
        raise ValueError(
            f"{model_dir} does not record its training data (exported from Python?): pass task= to finetune"
        )
    block = (meta.get("task") or {}).get("block_size") or ((meta.get("space") or {}).get("kwargs") or {}).get(
        "block_size"
    )
    return build_task(DataConfig(**data), block_size=block)
