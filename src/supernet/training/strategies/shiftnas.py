"""``shiftnas``: ShiftNAS (Zhang et al., ICCV 2023): sample complexities where subnets train worst, and generate
subnets of a requested complexity.

Uniform sampling spends most steps on subnets of middling cost. ShiftNAS splits the cost range (FLOPs or params)
into ``bins`` equal intervals and samples a bin from a distribution that it shifts toward the bins whose subnets are
trained worst; an *architecture generator* then turns a target cost inside the bin into a subnet of about that cost.

* **Cost table.** The cost of an arch is modelled as additive over decisions, ``c(a) = c0 + sum_d T_d[a_d]``,
  fitted by least squares to the exact cost (`supernet.cost`) of ``cost_samples`` random archs plus the largest and
  smallest; cheap, and differentiable in the decisions' option probabilities. NAS-Bench-201's FLOPs are exactly
  additive; for entangled sizes (width x width) the fit is approximate (its R^2 is recorded in the state).
* **Generator.** A small MLP maps the normalised target ``(t - c_min) / (c_max - c_min)`` to logits for every
  decision. An arch is drawn with the straight-through Gumbel-softmax (hard one-hot forward, soft gradient) and run
  through `supernet.space.superposition` with hard picks, so the supernet's loss reaches the generator's weights.
  Its loss: the supernet loss plus ``cost_weight * ((E[c(a)] - t)^2 + VARIANCE_WEIGHT * Var[c(a)]) / (c_max -
  c_min)^2`` over archs drawn from the softmax probabilities (the variance term makes the generator commit to archs
  of the target cost instead of averaging extremes), averaged with the same term at ``cost_targets`` more targets
  drawn uniformly over the range (one batched pass of the generator, no supernet forward). It has its own Adam
  optimizer.
* **Probability shift.** The measured signal: for every trained subnet, its loss minus the loss predicted for its
  cost by a running linear fit of loss on cost over all bins (exponential averages with ``momentum``). Per bin the
  residuals are averaged the same way; every ``shift_every`` steps the bins are sampled with
  ``p = (1 - smoothing) * softmax(residual / shift_temperature) + smoothing / bins``: bins whose subnets lose more
  than their cost explains get more steps, and no bin starves.

Deliberate differences from the paper: an MLP generator instead of an LSTM, and the shift driven by the measured
residual above instead of a learned sampling policy. ``generate(complexity)`` returns the generator's most likely
arch for a cost (a starting point for a search); the strategy's state, generator included, is checkpointed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from ... import cost as cost_model
from ...cost import CostTable
from ...seeding import SHIFTNAS_INIT_SEED_OFFSET, SHIFTNAS_NOISE_SEED_OFFSET, derived_seed
from ...space import SuperModule
from ...space.superposition import Mix, superposition
from ..checkpoint import optimizer_from_parts, optimizer_to_parts
from ..context import TrainContext
from .base import StepOutput, Strategy, StrategyOptions, register_strategy


class ShiftNASOptions(StrategyOptions):
    """Options of the ``shiftnas`` strategy."""

    metric: Literal["flops", "params"] = "flops"
    bins: int = Field(5, ge=2)
    cost_samples: PositiveInt = 64
    generator_hidden: PositiveInt = 64
    generator_lr: float = Field(3e-3, gt=0)
    gumbel_temperature: float = Field(1.0, gt=0)
    cost_weight: float = Field(5.0, ge=0)
    cost_targets: int = Field(16, ge=0)
    shift_every: PositiveInt = 50
    shift_temperature: float = Field(0.05, gt=0)
    smoothing: float = Field(0.3, gt=0, le=1)
    momentum: float = Field(0.95, ge=0, lt=1)


# The weight of the cost variance in the generator's cost loss (see `ShiftNAS.cost_loss`): 1 (the full expected
# squared error) made a 24-arch test space generate one arch for every target; 0 (the squared error of the mean
# only) let it average cheap and dear options instead of committing; 0.2 did neither.
VARIANCE_WEIGHT = 0.2


class Generator(nn.Module):
    """Target cost (normalised to [0, 1]) -> logits over the options of every decision.

    The target enters as ``features`` Gaussian bumps spread over [0, 1] (plus itself): the best arch changes in
    steps as the target grows, which bumps let a small network express quickly; a bare scalar trains slowly.
    """

    def __init__(self, option_counts: Mapping[str, int], hidden: int, features: int = 16) -> None:
        super().__init__()
        self.names = list(option_counts)
        self.register_buffer("centres", torch.linspace(0.0, 1.0, features), persistent=False)
        self.width = 1.0 / features
        self.body = nn.Sequential(nn.Linear(features + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(hidden, k) for k in option_counts.values())

    def forward(self, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits ``(len(targets), options)`` per decision for a 1-D tensor of normalised targets."""
        t = targets.reshape(-1, 1)
        bumps = torch.exp(-0.5 * ((t - self.centres) / self.width) ** 2)
        h = self.body(torch.cat([t, bumps], dim=1))
        return {name: head(h) for name, head in zip(self.names, self.heads, strict=True)}


class BinShift:
    """Per complexity bin: the running residual of subnet loss against a running linear fit of loss on cost."""

    def __init__(self, bins: int, momentum: float) -> None:
        self.bins, self.momentum = bins, momentum
        self.fit = [0.0] * 5  # exponential averages of 1, x, y, xx, xy (x: normalised cost, y: loss)
        self.residual: list[float | None] = [None] * bins
        self.probs = [1.0 / bins] * bins

    def predict(self, x: float) -> float:
        """The loss the running fit predicts at normalised cost ``x``."""
        w, sx, sy, sxx, sxy = self.fit
        if w <= 0:
            return 0.0
        mx, my = sx / w, sy / w
        var = sxx / w - mx * mx
        slope = (sxy / w - mx * my) / var if var > 1e-12 else 0.0
        return my + slope * (x - mx)

    def record(self, b: int, x: float, loss: float) -> None:
        """Add one trained subnet of bin ``b`` at normalised cost ``x`` with training loss ``loss``."""
        m = self.momentum
        self.fit = [m * f + (1 - m) * v for f, v in zip(self.fit, (1.0, x, loss, x * x, x * loss), strict=True)]
        r = loss - self.predict(x)
        prev = self.residual[b]
        self.residual[b] = r if prev is None else m * prev + (1 - m) * r

    def shift(self, temperature: float, smoothing: float) -> None:
        """Move the sampling probabilities toward the bins with the largest residual (unseen bins: the mean)."""
        seen = [r for r in self.residual if r is not None]
        if not seen:
            return
        fill = sum(seen) / len(seen)
        r = torch.tensor([fill if v is None else v for v in self.residual], dtype=torch.float64)
        p = (1 - smoothing) * torch.softmax(r / temperature, 0) + smoothing / self.bins
        self.probs = p.tolist()

    def state(self) -> dict[str, Any]:
        return {"fit": self.fit, "residual": self.residual, "probs": self.probs}

    def load(self, state: Mapping[str, Any]) -> None:
        if len(state["residual"]) != self.bins:
            raise ValueError(f"ShiftNAS state has {len(state['residual'])} bins, the options say {self.bins}")
        self.fit, self.residual, self.probs = list(state["fit"]), list(state["residual"]), list(state["probs"])


@register_strategy("shiftnas")
class ShiftNAS(Strategy):
    """ShiftNAS: complexity bins sampled where subnets train worst; a generator makes subnets of a given cost."""

    Options = ShiftNASOptions

    def setup(self, ctx: TrainContext) -> None:
        o = self.options
        self._read_decisions(ctx.space)
        example = ctx.task.example_input(1).to(ctx.device)
        measure = (
            (lambda: cost_model.flops(ctx.space, example)) if o.metric == "flops"
            else (lambda: cost_model.params(ctx.space))
        )
        self.table = CostTable.fit(ctx.space, measure, o.cost_samples, ctx.config.seed, unit=o.metric)
        self.low, self.high = self.table.extremes()
        if not self.high > self.low:
            raise ValueError(f"shiftnas: every arch of this space has the same {o.metric}; nothing to shift")
        self._make_generator(ctx.config.seed, ctx.device)
        self.optimizer = torch.optim.Adam(self.generator.parameters(), lr=o.generator_lr)
        self.noise = torch.Generator().manual_seed(derived_seed(ctx.config.seed, SHIFTNAS_NOISE_SEED_OFFSET))
        self.shift = BinShift(o.bins, o.momentum)

    def _read_decisions(self, space: SuperModule) -> None:
        self.options_of = {n: c.options for n, c in space.decisions.items() if len(c.options) > 1}
        if not self.options_of:
            raise ValueError("shiftnas needs a space with at least one decision of 2+ options")
        self.choices = {n: space.decisions[n] for n in self.options_of}
        self.fixed = {n: c.options[0] for n, c in space.decisions.items() if n not in self.options_of}

    def _make_generator(self, seed: int, device: torch.device | str) -> None:
        with torch.random.fork_rng(devices=[]):  # its own init stream: the training stream is left as it was
            torch.manual_seed(derived_seed(seed, SHIFTNAS_INIT_SEED_OFFSET))
            self.generator = Generator({n: len(v) for n, v in self.options_of.items()}, self.options.generator_hidden)
        self.generator.to(device)

    def _load_generator_weights(self, tensors: Mapping[str, torch.Tensor]) -> None:
        device = next(self.generator.parameters()).device
        self.generator.load_state_dict(
            {k.removeprefix("generator."): v.to(device) for k, v in tensors.items() if k.startswith("generator.")}
        )

    # ------------------------------------------------------------------ costs and the generator
    def normalised(self, cost: float) -> float:
        """``cost`` mapped to [0, 1] over the space's table-cost range."""
        return (cost - self.low) / (self.high - self.low)

    def bin_of(self, cost: float) -> int:
        """The complexity bin of ``cost``."""
        return min(self.options.bins - 1, max(0, int(self.normalised(cost) * self.options.bins)))

    def _logits(self, targets: list[float]) -> dict[str, torch.Tensor]:
        """The generator's logits for ``targets`` (in cost units), one row per target."""
        device = next(self.generator.parameters()).device
        return self.generator(torch.tensor([self.normalised(t) for t in targets], device=device))

    @torch.no_grad()
    def generate(self, complexity: float) -> dict[str, Any]:
        """The generator's most likely arch for ``complexity`` (in the metric's units: FLOPs or params).

        Decisions with one option keep it. Raises ValueError for a complexity outside the space's range.
        """
        if not self.low <= complexity <= self.high:
            raise ValueError(
                f"complexity {complexity:g} is outside this space's {self.options.metric} range "
                f"[{self.low:g}, {self.high:g}]"
            )
        logits = self._logits([complexity])
        arch = dict(self.fixed)
        arch.update({n: self.options_of[n][int(v[0].argmax())] for n, v in logits.items()})
        return arch

    def spread(self, count: int) -> list[dict[str, Any]]:
        """The distinct archs `generate` returns for ``count`` costs evenly spread over the space's range.

        A search's starting points across the cost range (`supernet.searching.search`'s ``start_archs``); fewer
        than ``count`` when the generator maps several costs to one arch.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        archs: list[dict[str, Any]] = []
        for i in range(count):
            arch = self.generate(self.low + (self.high - self.low) * (i + 0.5) / count)
            if arch not in archs:
                archs.append(arch)
        return archs

    def table_cost(self, arch: Mapping[str, Any]) -> float:
        """The cost model's estimate for ``arch``."""
        return self.table.arch_cost(arch)

    # ------------------------------------------------------------------ training
    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        o = self.options
        if ctx.step and ctx.step % o.shift_every == 0:
            self.shift.shift(o.shift_temperature, o.smoothing)
        x, y = batch
        b = ctx.rng.choices(range(o.bins), weights=self.shift.probs)[0]
        width = (self.high - self.low) / o.bins
        target = self.low + width * (b + ctx.rng.random())
        # The cost term needs no forward of the supernet: fit it on a few more targets across the range as well,
        # in one batched pass of the generator (row 0: the target of this step's subnet).
        targets = [target] + [self.low + (self.high - self.low) * ctx.rng.random() for _ in range(o.cost_targets)]
        logits = self._logits(targets)
        mixes, arch = {}, {n: c.options[0] for n, c in ctx.space.decisions.items()}
        for name, rows in logits.items():
            z = rows[0]
            u = torch.rand(z.shape, generator=self.noise).clamp(1e-10, 1 - 1e-10).to(z.device)
            y_soft = torch.softmax((z - torch.log(-torch.log(u))) / o.gumbel_temperature, 0)
            index = int(y_soft.argmax())
            hard = F.one_hot(torch.tensor(index, device=z.device), z.numel()).to(y_soft.dtype)
            mixes[self.choices[name]] = Mix(hard - y_soft.detach() + y_soft, index)
            arch[name] = self.options_of[name][index]
        with superposition(mixes):
            out = ctx.forward(arch, x)
        loss = ctx.loss(out, y)
        probs = {n: torch.softmax(rows, dim=-1) for n, rows in logits.items()}
        wanted = torch.tensor(targets, dtype=torch.float64, device=out.device)
        mean, var = self.table.moments({n: p.double() for n, p in probs.items()})
        # the variance term makes the distributions sharpen onto one arch (see VARIANCE_WEIGHT)
        squared = (mean - wanted) ** 2 + VARIANCE_WEIGHT * var
        cost_loss = (squared.mean() / (self.high - self.low) ** 2).float()
        ctx.backward(loss + o.cost_weight * cost_loss)
        ctx.all_reduce_grads(self.generator.parameters())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        cost = self.table_cost(arch)
        self.shift.record(self.bin_of(cost), self.normalised(cost), float(loss.detach()))
        return StepOutput(loss.detach(), [arch], {"cost_loss": cost_loss.detach(), "bin": float(b)})

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        _, optim = optimizer_to_parts(self.optimizer)
        return {"table": self.table.state(), "shift": self.shift.state(), "optimizer": optim}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        t = state["table"]
        if set(t["tables"]) != set(self.options_of):
            raise ValueError(f"ShiftNAS state has decisions {sorted(t['tables'])}, the space {sorted(self.options_of)}")
        self.table = CostTable.from_state(t, self.options_of)
        self.low, self.high = self.table.extremes()
        self.shift.load(state["shift"])
        self._optimizer_data = state["optimizer"]

    def tensor_state(self) -> dict[str, torch.Tensor]:
        tensors, _ = optimizer_to_parts(self.optimizer)
        out = {f"generator.{k}": v.detach().cpu() for k, v in self.generator.state_dict().items()}
        out.update(tensors)
        out["noise"] = self.noise.get_state()
        return out

    def load_tensor_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self._load_generator_weights(tensors)
        device = next(self.generator.parameters()).device
        # Adam keeps its step counts on the CPU.
        moved = {k: v if k.endswith(".step") else v.to(device) for k, v in tensors.items() if k.startswith("optim.")}
        optimizer_from_parts(self.optimizer, moved, self._optimizer_data)
        self.noise.set_state(tensors["noise"])

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["cost_table_r2"] = round(self.table.r2, 6) if hasattr(self, "table") else None
        return out




def load_generator(
    run_dir: str | Path, space: SuperModule | None = None, device: str | torch.device = "cpu"
) -> ShiftNAS:
    """The trained ShiftNAS strategy of a run directory, ready to `ShiftNAS.generate` / `ShiftNAS.spread`.

    Its cost table and generator come from the run's latest checkpoint (no data or training needed). ``space``: as
    in `supernet.training.load_run`, for a space built by hand (the run then records no spec to rebuild it from).

    Raises:
        ValueError: the run was trained with another strategy (only ``shiftnas`` has a generator).
        FileNotFoundError: the run holds no checkpoint yet.
    """
    from ..checkpoint import build_run_space, latest_checkpoint, load_checkpoint, read_run_json

    meta = read_run_json(Path(run_dir))
    strategy = meta.get("strategy", {})
    if strategy.get("name") != "shiftnas":
        name = strategy.get("name") or "no recorded strategy"
        raise ValueError(f"{run_dir} was trained with {name}, not shiftnas: only a shiftnas run has a generator")
    space = build_run_space(run_dir, meta) if space is None else space
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir} holds no checkpoint yet: train it first")
    _, tensors, state = load_checkpoint(ckpt)
    strat = ShiftNAS(strategy.get("options", {}))
    strat._read_decisions(space)
    strat._make_generator(0, device)  # its weights are replaced by the checkpoint's
    strat.shift = BinShift(strat.options.bins, strat.options.momentum)
    strat.load_state_dict(state["strategy_state"])
    strat._load_generator_weights({k.removeprefix("strategy."): v for k, v in tensors.items()})
    strat.generator.eval()
    return strat
