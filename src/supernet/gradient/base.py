"""`GradientStrategy`: differentiable NAS as a training strategy (bilevel: alpha on val, weights on train).

Each training step (after ``warmup_steps``):

1. **alpha step** on a validation batch: mixture weights are drawn from alpha by the method's mixer and the
   supernet runs under them (`superposition`: weight superposition for entangled choices, weighted op outputs
   for `LayerChoice`, weighted depth outputs for `Repeat`); the gradient reaches alpha (first-order, or
   second-order unrolled with ``second_order=True``) and the alpha optimizer (Adam) steps;
2. **weight step** on the training batch under a fresh (detached) sample; the loop then clips and steps the
   weight optimizer.

Selection: ``argmax`` of the probabilities, or ``perturbation``: in the last ``interval x decisions`` steps the
decisions are settled one at a time by masking each option and keeping the one whose removal hurts the
validation score most; training in between fine-tunes the supernet with the settled decisions one-hot.

The alpha history (option probabilities every ``history_every`` steps) is part of the strategy state saved
with each checkpoint; at the end ``alpha_history.json`` and ``alpha_history.png`` are written to the run dir
(when the context exposes ``run_dir``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from ..seeding import ALPHA_INIT_SEED_OFFSET, MIXER_SEED_OFFSET, derived_seed
from ..space import SuperModule
from ..space.choice import Choice
from ..space.superposition import Mix, superposition
from ..training.context import TrainContext
from ..training.evaluate import batchnorm_modules
from ..training.strategies.base import StepOutput, Strategy, StrategyOptions
from .alphas import ArchParameters
from .architect import Architect
from .mixers import Mixer
from .selection import perturbation_pick, selection_order


class GradientOptions(StrategyOptions):
    """Options shared by the differentiable strategies (``darts``, ``gdas``, ``drnas``)."""

    alpha_lr: float = Field(3e-4, gt=0, description="Adam learning rate of the architecture parameters")
    alpha_weight_decay: float = Field(1e-3, ge=0, description="Adam (L2) weight decay of alpha")
    alpha_betas: tuple[float, float] = (0.5, 0.999)
    alpha_init_std: float = Field(1e-3, ge=0, description="alpha starts at init_std * N(0, 1)")
    second_order: bool = Field(False, description="unrolled (second-order) alpha gradient, as in DARTS")
    mixing: Literal["weights", "outputs"] = Field(
        "weights", description="weights: TangleNAS superposition; outputs: run every option and sum"
    )
    warmup_steps: int = Field(0, ge=0, description="weight-only steps before alpha starts to move")
    alpha_every: int = Field(1, ge=1, description="alpha step every N training steps")
    history_every: int = Field(10, ge=1, description="record option probabilities every N steps")
    selection: Literal["argmax", "perturbation"] = "argmax"
    selection_interval: int = Field(5, ge=1, description="perturbation: fine-tuning steps between decisions")
    selection_batches: int = Field(4, ge=1, description="perturbation: validation batches per score")
    selection_metric: Literal["loss", "accuracy"] = "loss"
    selection_order: Literal["sequential", "random"] = "sequential"


class GradientStrategy(Strategy):
    """Base of the differentiable strategies; subclasses provide the mixer (`make_mixer`)."""

    Options = GradientOptions

    def make_mixer(self) -> Mixer:
        """The method's mixer (softmax, Dirichlet, Gumbel)."""
        raise NotImplementedError

    def paths_per_step(self, space: SuperModule) -> int | None:
        return None  # a mixture of options (or a sampled path) with bilevel alpha updates: not comparable

    # ------------------------------------------------------------------ set-up and state
    def setup(self, ctx: TrainContext) -> None:
        o = self.options
        self.mixer = self.make_mixer()
        init_gen = torch.Generator().manual_seed(derived_seed(ctx.config.seed, ALPHA_INIT_SEED_OFFSET))
        self.alphas = ArchParameters(ctx.space, o.alpha_init_std, generator=init_gen, device=ctx.device)
        if not self.alphas.alpha:
            raise ValueError(f"strategy {self.name!r} needs a space with at least one decision of 2+ options")
        self.architect = Architect(self.alphas, self.mixer, o.alpha_lr, o.alpha_weight_decay, tuple(o.alpha_betas))
        self.generator = torch.Generator().manual_seed(derived_seed(ctx.config.seed, MIXER_SEED_OFFSET))
        self.history: list[dict[str, Any]] = []
        self.decided: dict[str, int] = {}
        self.selection_log: list[dict[str, Any]] = []
        self.order = selection_order(self.alphas, o.selection_order, ctx.config.seed)
        self._base_arch = ctx.space.max_arch()

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "decided": self.decided, "selection_log": self.selection_log}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.decided = {str(k): int(v) for k, v in dict(state.get("decided", {})).items()}
        self.selection_log = list(state.get("selection_log", []))

    def tensor_state(self) -> dict[str, torch.Tensor]:
        out = self.alphas.state_tensors()
        for i, p in enumerate(self.alphas.parameters()):
            for k, v in self.architect.optimizer.state.get(p, {}).items():
                out[f"adam.{i}.{k}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().clone()
        out["generator"] = self.generator.get_state()
        return out

    def load_tensor_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.alphas.load_state_tensors(tensors)
        for i, p in enumerate(self.alphas.parameters()):
            state = {
                k.split(".", 2)[2]: v.to(p.device) if k.split(".", 2)[2] != "step" else v.cpu()
                for k, v in tensors.items()
                if k.startswith(f"adam.{i}.")
            }
            if state:
                self.architect.optimizer.state[p] = state
        if "generator" in tensors:
            self.generator.set_state(tensors["generator"].to(torch.uint8).cpu())

    # ------------------------------------------------------------------ one training step
    def progress(self, ctx: TrainContext) -> float:
        """Fraction of training done, 0 at the first step and 1 at the last (drives annealing)."""
        return ctx.step / max(1, ctx.total_steps - 1)

    def sample(self, progress: float) -> dict[Choice, Mix]:
        """Mixture weights for one pass: settled decisions one-hot, the others drawn by the mixer."""
        mixes = self.alphas.sample(self.mixer, progress, self.generator)
        for n, i in self.decided.items():
            c = self.alphas.choices[n]
            w = torch.zeros(len(c.options), device=mixes[c].weights.device)
            w[i] = 1.0
            mixes[c] = Mix(w, i)
        return mixes

    def alpha_sample(self, progress: float) -> dict[Choice, Mix]:
        """Mixture weights for the alpha step (default: as for the weight step, `sample`)."""
        return self.sample(progress)

    def after_alpha_step(self) -> None:
        """Called after each alpha optimizer step (ProxylessNAS re-centres the two updated alphas)."""

    def arch_for(self, mixes: Mapping[Choice, Mix]) -> dict[str, Any]:
        """The arch to activate under ``mixes``: hard picks set, soft decisions at their largest option."""
        arch = dict(self._base_arch)
        for c, m in mixes.items():
            if m.index is not None:
                arch[c.name] = c.options[m.index]
        return arch

    def _loss_fn(self, ctx: TrainContext) -> Any:
        def loss_fn(mixes: dict[Choice, Mix], batch: Any) -> torch.Tensor:
            x, y = batch
            with superposition(mixes, self.options.mixing):
                out = ctx.forward(self.arch_for(mixes), x, sync=False)
            return ctx.loss(out, y)

        return loss_fn

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        o = self.options
        self._select_due(ctx)
        progress = self.progress(ctx)
        metrics: dict[str, Any] = self.step_metrics(progress)
        if ctx.step >= o.warmup_steps and (ctx.step - o.warmup_steps) % o.alpha_every == 0:
            from ..training.loop import lr_at

            val_loss = self.architect.alpha_grads(
                self._loss_fn(ctx),
                self.alpha_sample(progress),
                ctx.val_batch(),
                second_order=o.second_order,
                train_batch=batch,
                weights=list(ctx.space.parameters()),
                xi=lr_at(ctx.step, ctx.config),
                weight_decay=ctx.config.weight_decay,
            )
            ctx.all_reduce_grads(self.alphas.parameters())
            for n in self.decided:  # settled decisions stay where they are
                self.alphas.alpha[n].grad = None
            self.architect.step()
            self.after_alpha_step()
            metrics["val_loss"] = val_loss
        mixes = {c: Mix(m.weights.detach(), m.index) for c, m in self.sample(progress).items()}
        arch = self.arch_for(mixes)
        x, y = batch
        with superposition(mixes, o.mixing):
            out = ctx.forward(arch, x)
        loss = ctx.loss(out, y)
        ctx.backward(loss)
        done = ctx.step + 1
        if done % o.history_every == 0 or done == ctx.total_steps or not self.history:
            self.history.append({"step": done, "probs": self.alphas.probs(self.mixer)})
        return StepOutput(loss.detach(), [arch], metrics)

    def step_metrics(self, progress: float) -> dict[str, Any]:
        """Extra scalars logged each step (e.g. the Gumbel temperature)."""
        return {}

    # ------------------------------------------------------------------ selection
    def _schedule(self, ctx: TrainContext) -> list[int]:
        n, k = len(self.order), self.options.selection_interval
        start = max(0, ctx.total_steps - n * k)
        return [start + i * k for i in range(n)]

    def _select_due(self, ctx: TrainContext) -> None:
        if self.options.selection != "perturbation":
            return
        schedule = self._schedule(ctx)
        while len(self.decided) < len(self.order) and ctx.step >= schedule[len(self.decided)]:
            self._decide_next(ctx)

    def _decide_next(self, ctx: TrainContext) -> None:
        name = self.order[len(self.decided)]
        best, scores = perturbation_pick(self.alphas, self.mixer, name, self.decided, self._scorer(ctx))
        self.decided[name] = best
        picked = self.alphas.choices[name].options[best]
        self.selection_log.append({"step": ctx.step, "decision": name, "scores": scores, "picked": picked})

    def _scorer(self, ctx: TrainContext) -> Any:
        o = self.options
        batches = list(
            ctx.task.eval_batches("val", ctx.config.batch_size, max_batches=o.selection_batches, device=ctx.device)
        )
        space = ctx.space
        has_bn = bool(batchnorm_modules(space))

        def score(mixes: dict[Choice, Mix]) -> float:
            saved = {k: b.detach().clone() for k, b in space.named_buffers()}
            was_training = space.training
            space.train(has_bn)  # BN with batch statistics (running stats mean nothing under superposition)
            sums: dict[str, float] = {}
            try:
                with torch.no_grad(), superposition(mixes, o.mixing):
                    space.set_arch(self.arch_for(mixes))
                    for x, y in batches:
                        with ctx.autocast():
                            out = space(x)
                        for k, v in ctx.task.metrics(out.float(), y).items():
                            sums[k] = sums.get(k, 0.0) + float(v)
            finally:
                with torch.no_grad():
                    for k, b in space.named_buffers():
                        b.copy_(saved[k])
                space.train(was_training)
            count = max(sums.get("count", 1.0), 1.0)
            if o.selection_metric == "accuracy":
                return sums.get("correct", 0.0) / count
            return -sums.get("loss_sum", 0.0) / count

        return score

    def final_arch(self, ctx: TrainContext) -> dict[str, Any] | None:
        if self.options.selection == "perturbation":
            while len(self.decided) < len(self.order):
                self._decide_next(ctx)
            arch = dict(ctx.space.max_arch())
            arch.update({n: self.alphas.choices[n].options[i] for n, i in self.decided.items()})
            arch = ctx.space.validate(arch)
        else:
            arch = self.alphas.argmax_arch(ctx.space, self.mixer)
        self._write_report(ctx, arch)
        return arch

    def _write_report(self, ctx: TrainContext, arch: dict[str, Any]) -> None:
        run_dir = getattr(ctx, "run_dir", None)
        if run_dir is None or getattr(ctx, "rank", 0) != 0 or not self.history:
            return
        from ..files import write_json
        from .plot import plot_alpha_history

        run_dir = Path(run_dir)
        payload = {
            "method": self.name,
            "final_arch": arch,
            "options": {k: list(v) for k, v in ctx.space.choices.items() if k in self.alphas.alpha},
            "history": self.history,
            "selection_log": self.selection_log,
        }
        write_json(run_dir / "alpha_history.json", json.loads(json.dumps(payload)))
        plot_alpha_history(self.history, payload["options"], run_dir / "alpha_history.png")
