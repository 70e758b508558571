"""The default evaluator of a search: a subnet's val loss/accuracy with weights inherited from a training run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..device import resolve_device
from ..space import SuperModule


class RunEvaluator:
    """``evaluator(arch) -> {"loss", "accuracy"}`` on the val split of a run's task (BN recalibrated).

    Args:
        space: the trained supernet.
        task: the run's task (``supernet.training.Task``).
        device: where to evaluate.
        max_batches / batch_size: val batches used per arch (``None``: the whole val split).
        bn_batches: training batches for BatchNorm recalibration (spaces without BN skip it).
    """

    def __init__(
        self,
        space: SuperModule,
        task: Any,
        device: str | torch.device = "cpu",
        max_batches: int | None = 8,
        batch_size: int = 64,
        bn_batches: int = 16,
    ) -> None:
        self.space, self.task = space, task
        self.device = torch.device(device)
        self.max_batches, self.batch_size, self.bn_batches = max_batches, batch_size, bn_batches

    @classmethod
    def from_run(cls, run: Any, task: Any = None, device: str | torch.device = "auto", **options: Any) -> RunEvaluator:
        """From a run directory or a ``Run`` returned by ``sn.train``.

        The task is ``task`` if given, else the Run's own, else rebuilt from the run directory
        (``pipeline.json`` written by ``supernet train``, or the embedded Shakespeare recognised from run.json).
        """
        from ..training import load_run

        dev = resolve_device(device)
        if isinstance(run, (str, os.PathLike)):
            run = load_run(Path(run), device=dev)
        if task is None:
            task = getattr(run, "task", None)
        if task is None:
            if getattr(run, "run_dir", None) is None:
                raise ValueError("this run has no task and no run directory: pass task=")
            from ..training.rundata import task_of_run

            task = task_of_run(run.run_dir)
        space = run.space.to(dev)
        return cls(space, task, device=dev, **options)

    def __call__(self, arch: dict[str, Any]) -> dict[str, float]:
        from ..training import evaluate

        out = evaluate(
            self.space,
            arch,
            self.task,
            split="val",
            batch_size=self.batch_size,
            max_batches=self.max_batches,
            bn_batches=self.bn_batches,
            device=self.device,
        )
        return {k: float(v) for k, v in out.items() if k in ("loss", "accuracy")}

