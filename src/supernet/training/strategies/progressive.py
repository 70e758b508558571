"""``progressive``: Once-for-All progressive shrinking.

Training runs through phases, each a fraction of the steps (``phases``, normalised to sum to 1):

1. ``full``: only the largest arch, from labels.
2. ``kernel``: kernel-size decisions sampled, everything else at its largest option.
3. ``depth``: kernel and depth decisions sampled.
4. ``width``: every decision sampled (width and ``other`` decisions, e.g. operation choices, join here).

A decision's kind comes from where its choice is used (`supernet.training.kinds.decision_kinds`; override with
``kinds``). Phases whose kind the space lacks are dropped and the remaining fractions renormalised. When the
``full`` phase ends, a frozen copy of the largest arch becomes the teacher: in later phases each sampled arch
learns from ``label loss + distill_weight * KL(teacher || student)``. Each step trains ``num_samples`` archs
on the same batch (gradients summed). With ``restart_schedule`` (default) the learning rate follows its own
warm-restarted cosine in each phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field, field_validator
from torch import nn

from ...space import SuperModule
from ..context import TrainContext
from ..distill import kl_distill
from .base import StepOutput, Strategy, StrategyOptions, register_strategy

PHASES = ("full", "kernel", "depth", "width")
SAMPLED = {"full": (), "kernel": ("kernel",), "depth": ("kernel", "depth"), "width": ("kernel", "depth", "width",
                                                                                         "other")}


class ProgressiveOptions(StrategyOptions):
    """Options of the ``progressive`` strategy."""

    phases: dict[str, float] = Field(default_factory=lambda: {"full": 0.25, "kernel": 0.25, "depth": 0.25,
                                                               "width": 0.25})
    num_samples: int = Field(1, ge=1)
    distill_weight: float = Field(1.0, ge=0)
    temperature: float = Field(1.0, gt=0)
    kinds: dict[str, str] = Field(default_factory=dict)
    restart_schedule: bool = True

    @field_validator("phases")
    @classmethod
    def _phases(cls, v: dict[str, float]) -> dict[str, float]:
        for name, frac in v.items():
            if name not in PHASES:
                raise ValueError(f"unknown phase {name!r}; phases are {', '.join(PHASES)}")
            if frac < 0:
                raise ValueError(f"phase {name!r} has a negative fraction {frac}")
        if sum(v.values()) <= 0:
            raise ValueError("phase fractions must sum to a positive number")
        return v


@register_strategy("progressive")
class Progressive(Strategy):
    """OFA progressive shrinking with distillation from the full network."""

    Options = ProgressiveOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher: nn.Module | None = None
        self.bounds: list[tuple[str, int]] = []
        self._ctx: TrainContext | None = None

    def setup(self, ctx: TrainContext) -> None:
        self._ctx = ctx
        from ..kinds import decision_kinds

        self.kinds = decision_kinds(ctx.space, self.options.kinds) if self.options.kinds else dict(ctx.kinds)
        present = set(self.kinds.values())
        phases = [
            (p, f) for p, f in self.options.phases.items()
            if f > 0 and (p == "full" or p == "width" or p in present)
        ]
        phases.sort(key=lambda pf: PHASES.index(pf[0]))
        total = sum(f for _, f in phases)
        self.bounds, acc = [], 0.0
        for p, f in phases:
            acc += f / total
            self.bounds.append((p, round(acc * ctx.total_steps)))
        self.bounds[-1] = (self.bounds[-1][0], ctx.total_steps)

    def schedule_segments(self, ctx: TrainContext) -> list[int] | None:
        """One cosine schedule per phase (as OFA trains each phase with its own schedule)."""
        return [end for _, end in self.bounds] if self.options.restart_schedule else None

    def phase(self, step: int) -> str:
        """The phase of a 0-based step."""
        for p, end in self.bounds:
            if step < end:
                return p
        return self.bounds[-1][0]

    def plan(self, ctx: TrainContext, phase: str) -> list[dict[str, Any]]:
        """The archs of one step in ``phase``: sampled decisions of the phase's kinds, others at max."""
        largest = ctx.space.max_arch()
        if phase == "full":
            return [largest]
        kinds = SAMPLED[phase]
        out = []
        for _ in range(self.options.num_samples):
            arch = dict(largest)
            for name, options in ctx.space.choices.items():
                if self.kinds[name] in kinds:
                    arch[name] = ctx.rng.choice(options)
            out.append(arch)
        return out

    def _make_teacher(self, ctx: TrainContext) -> nn.Module:
        teacher = ctx.space.extract(ctx.space.max_arch()).to(ctx.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def paths_per_step(self, space: SuperModule) -> int | None:
        return self.options.num_samples  # the teacher's forward has no backward: it shows in wall time

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        phase = self.phase(ctx.step)
        archs = self.plan(ctx, phase)
        if phase != "full" and self.teacher is None and self.options.distill_weight > 0:
            self.teacher = self._make_teacher(ctx)
        soft = None
        if phase != "full" and self.teacher is not None:
            with torch.no_grad(), ctx.autocast():
                soft, _ = ctx.task.flat(self.teacher(x), y)
        total = torch.zeros((), device=x.device)
        for i, arch in enumerate(archs):
            out = ctx.forward(arch, x, sync=i == len(archs) - 1)
            loss = ctx.loss(out, y)
            total = total + loss.detach()
            if soft is not None:
                student, _ = ctx.task.flat(out, y)
                loss = loss + self.options.distill_weight * kl_distill(student, soft, self.options.temperature)
            ctx.backward(loss)
        return StepOutput(total / len(archs), archs, {"phase": float(PHASES.index(phase))})

    def state_dict(self) -> dict[str, Any]:
        return {"has_teacher": self.teacher is not None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._expect_teacher = bool(state.get("has_teacher", False))

    def tensor_state(self) -> dict[str, torch.Tensor]:
        if self.teacher is None:
            return {}
        return {f"teacher.{k}": v for k, v in self.teacher.state_dict().items()}

    def load_tensor_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        weights = {k[len("teacher.") :]: v for k, v in tensors.items() if k.startswith("teacher.")}
        if not weights:
            if getattr(self, "_expect_teacher", False):
                raise ValueError("progressive: the checkpoint says it has a teacher but holds no teacher weights")
            self.teacher = None
            return
        if self._ctx is None:
            raise RuntimeError("progressive: load_tensor_state needs setup() first")
        teacher = self._make_teacher(self._ctx)
        teacher.load_state_dict(weights)
        self.teacher = teacher
