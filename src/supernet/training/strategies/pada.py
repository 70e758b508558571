"""``pada``: PA&DA (Lu et al., CVPR 2023): sample paths and training examples by their gradient norms.

PA&DA shows that the variance of the supernet's gradient is smallest when paths and examples are drawn in
proportion to the norms of their gradients. Single-path training (one arch per step, as ``uniform``) with two
importance distributions, refreshed every ``update_every`` steps (default: one pass over the training examples):

* **Path importance.** After each backward pass, for every decision, the gradient norm of the weights that the
  sampled option uses: a `LayerChoice` option's candidate, a `Repeat` depth's blocks beyond the next smaller
  depth, an entangled size's slice beyond the next smaller option's (for an option that is smallest, its whole
  slice). Per decision and option the norms are averaged over the period; the next period samples option ``k``
  with ``p_k = w * m_k / sum(m) + (1 - w) / K``. Options not sampled in the period keep their previous mean.
* **Data importance.** The norm of the loss gradient with respect to each example's logits, ``||softmax(z) -
  q||`` with ``q`` the (smoothed) one-hot target, averaged over the rows of an example (the tokens of an LM
  window); no extra backward pass. Examples are drawn with replacement with ``p_i = w * g_i / sum(g) + (1 -
  w) / N``; an example's value is the mean of its observations in the last period it was seen.

``w`` ramps linearly with training progress as in the paper (``epoch / epochs``) but is capped at ``1 -
smoothing``, so no option or example starves. Deliberate differences from the official code (ShunLu91/PA-DA):
importance is kept per decision rather than per operation type shared by all edges; a never-seen example counts
as the mean of the seen ones instead of zero; the norms are read before gradient clipping; and every
parameterised layer counts, not only the convolutions of NAS-Bench-201's conv operations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from ...space import LayerChoice, Repeat, SuperModule
from ...space.base import Searchable
from ...space.choice import Choice, Value
from ..context import TrainContext
from .base import StepOutput, Strategy, StrategyOptions, register_strategy


class PADAOptions(StrategyOptions):
    """Options of the ``pada`` strategy."""

    path_importance: bool = True
    data_importance: bool = True
    update_every: PositiveInt | None = None
    smoothing: float = Field(0.2, gt=0, le=1)


def importance_weight(step: int, total_steps: int, smoothing: float) -> float:
    """The weight of the importance distribution at ``step``: the paper's ``epoch / epochs``, capped at
    ``1 - smoothing`` (the rest is uniform)."""
    return min(step / max(total_steps, 1), 1.0 - smoothing)


def mixed_probabilities(importance: torch.Tensor, weight: float) -> torch.Tensor:
    """``weight * importance / sum + (1 - weight) / K`` (uniform where every importance is zero)."""
    importance = importance.double().clamp_min(0)
    uniform = torch.full_like(importance, 1.0 / importance.numel())
    total = importance.sum()
    if not torch.isfinite(total) or total <= 0:
        return uniform
    return weight * importance / total + (1.0 - weight) * uniform


def logit_gradient_norms(outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per example, the mean over its rows of ``||softmax(logits) - target||``: the norm of the gradient of its
    cross entropy with respect to its logits (``outputs``: ``(B, C)`` or ``(B, T, C)``)."""
    logits = outputs.detach().float()
    probs = torch.softmax(logits, dim=-1)
    n_classes = logits.shape[-1]
    target = F.one_hot(targets, n_classes).to(probs.dtype)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + label_smoothing / n_classes
    return (probs - target).norm(dim=-1).reshape(logits.shape[0], -1).mean(dim=1)


def _previous_options(choice: Choice) -> dict[Any, Any]:
    """``{option: the option ranked just below it}`` (None for the smallest)."""
    ranked = sorted(choice.options, key=choice._rank)
    return dict(zip(ranked, (None, *ranked[:-1]), strict=True))


def _grad_view(param: torch.Tensor, view: torch.Tensor) -> torch.Tensor | None:
    """The part of ``param.grad`` that ``view`` (a view of ``param``) covers."""
    grad = param.grad
    if grad is None or grad.shape != param.shape or grad.stride() != param.stride():
        return None
    offset = grad.storage_offset() + view.storage_offset() - param.storage_offset()
    return grad.as_strided(view.size(), view.stride(), offset)


# Squared norms stay tensors on the parameters' device until `PathImportance.record` reads them all at once: one
# device sync per step instead of one per parameter.
Squared = torch.Tensor | float


def _squared_grad_norm(modules: list[nn.Module]) -> Squared:
    total: Squared = 0.0
    for m in modules:
        for p in m.parameters():
            if p.grad is not None:
                total = total + p.grad.detach().float().square().sum()
    return total


def _value_at(value: Any, assignment: Mapping[Choice, Any]) -> Any:
    return value.evaluate_with(assignment) if isinstance(value, Value) else value


class PathImportance:
    """Per decision and option: the gradient norm of the weights the option uses, averaged over a period."""

    def __init__(self, space: SuperModule) -> None:
        self.decisions: dict[str, Choice] = dict(space.decisions)
        self.previous = {name: _previous_options(c) for name, c in self.decisions.items()}
        # The searchable modules whose weights each decision's options select (LayerChoice, Repeat, sized layers).
        self.users: dict[str, list[nn.Module]] = {name: [] for name in self.decisions}
        by_choice = {c: name for name, c in self.decisions.items()}
        for module in space.net.modules():
            if not isinstance(module, Searchable):
                continue
            values = (
                (module.choice,) if isinstance(module, LayerChoice)
                else (module.depth,) if isinstance(module, Repeat)
                else module.slice_values()
            )
            for value in values:
                for leaf in value.leaves() if isinstance(value, Value) else ():
                    if leaf in by_choice and module not in self.users[by_choice[leaf]]:
                        self.users[by_choice[leaf]].append(module)
        k = {name: len(c.options) for name, c in self.decisions.items()}
        self.mean: dict[str, list[float | None]] = {name: [None] * n for name, n in k.items()}
        self.sums: dict[str, list[float]] = {name: [0.0] * n for name, n in k.items()}
        self.counts: dict[str, list[int]] = {name: [0] * n for name, n in k.items()}
        self.probs: dict[str, list[float]] = {name: [1.0 / n] * n for name, n in k.items()}

    def option_norm(self, name: str, arch: Mapping[str, Any]) -> float:
        """Gradient norm of the weights that ``arch``'s option of decision ``name`` uses (after a backward)."""
        squared = self._squared_norm(name, {c: arch[n] for n, c in self.decisions.items()})
        return math.sqrt(max(float(squared), 0.0))

    def _squared_norm(self, name: str, here: dict[Choice, Any]) -> Squared:
        choice = self.decisions[name]
        option = here[choice]
        before = dict(here)
        prev = self.previous[name][option]
        total: Squared = 0.0
        for module in self.users[name]:
            if isinstance(module, LayerChoice):
                total += _squared_grad_norm([module.candidates[str(option)]])
            elif isinstance(module, Repeat):
                depth = int(_value_at(module.depth, here))
                if prev is None:
                    start = 0
                else:
                    before[choice] = prev
                    start = int(_value_at(module.depth, before))
                total += _squared_grad_norm(list(module.blocks[start:depth]))
            else:
                total += self._added_slice(module, choice, here, prev)
        return total

    @staticmethod
    def _added_slice(module: Searchable, choice: Choice, here: dict[Choice, Any], prev: Any | None) -> Squared:
        values = module.slice_values()
        sizes = tuple(int(_value_at(v, here)) for v in values)
        params = list(module.parameters(recurse=False))

        def squared(views: Any) -> Squared:
            out: Squared = 0.0
            for view in views:
                if view is None:
                    continue
                ptr = view.untyped_storage().data_ptr()
                base = next((p for p in params if p.untyped_storage().data_ptr() == ptr), None)
                g = None if base is None else _grad_view(base, view)
                if g is not None:
                    out = out + g.float().square().sum()
            return out

        with torch.no_grad():
            total = squared(module.sliced(sizes))
            if prev is not None:
                smaller = dict(here)
                smaller[choice] = prev
                total -= squared(module.sliced(tuple(int(_value_at(v, smaller)) for v in values)))
        return total

    def record(self, arch: Mapping[str, Any]) -> None:
        """Add the current gradients' norms for ``arch``'s options to this period's sums."""
        here = {c: arch[n] for n, c in self.decisions.items()}
        names = [n for n, c in self.decisions.items() if self.users[n] and len(c.options) > 1]
        squared = {n: self._squared_norm(n, here) for n in names}
        on_device = [n for n in names if torch.is_tensor(squared[n])]
        if on_device:
            squared.update(zip(on_device, torch.stack([squared[n] for n in on_device]).tolist(), strict=True))
        for name in names:
            k = self.decisions[name].index(arch[name])
            self.sums[name][k] += math.sqrt(max(float(squared[name]), 0.0))
            self.counts[name][k] += 1

    def refresh(self, weight: float) -> None:
        """End a period: update each option's mean norm and the sampling probabilities."""
        for name in self.decisions:
            for k, (s, n) in enumerate(zip(self.sums[name], self.counts[name], strict=True)):
                if n:
                    self.mean[name][k] = s / n
            seen = [m for m in self.mean[name] if m is not None]
            if seen:
                fill = sum(seen) / len(seen)
                importance = torch.tensor([fill if m is None else m for m in self.mean[name]])
                self.probs[name] = mixed_probabilities(importance, weight).tolist()
            self.sums[name] = [0.0] * len(self.sums[name])
            self.counts[name] = [0] * len(self.counts[name])

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "sums": self.sums, "counts": self.counts, "probs": self.probs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("mean", "sums", "counts", "probs"):
            stored = dict(state[key])
            if set(stored) != set(self.decisions):
                raise ValueError(f"PA&DA state has decisions {sorted(stored)}, the space has {sorted(self.decisions)}")
            getattr(self, key).update({k: list(v) for k, v in stored.items()})


class DataImportance:
    """Per training example: the logit-gradient norm, averaged over the observations of a period."""

    def __init__(self, size: int) -> None:
        self.value = torch.zeros(size)  # the mean of the last period an example was seen in
        self.seen = torch.zeros(size, dtype=torch.bool)
        self.sums = torch.zeros(size)
        self.counts = torch.zeros(size)
        self.weight = 0.0
        self.probs = torch.full((size,), 1.0 / size)

    def record(self, indices: torch.Tensor, norms: torch.Tensor) -> None:
        """Add the norms of the examples at ``indices`` (repeats allowed)."""
        idx = indices.cpu().long()
        self.sums.index_add_(0, idx, norms.detach().cpu().float())
        self.counts.index_add_(0, idx, torch.ones(idx.shape[0]))

    def refresh(self, weight: float) -> None:
        """End a period: examples seen in it get their mean norm; then the sampling probabilities."""
        now = self.counts > 0
        self.value[now] = self.sums[now] / self.counts[now]
        self.seen |= now
        self.sums.zero_()
        self.counts.zero_()
        self.weight = weight
        self._update_probs()

    def _update_probs(self) -> None:
        if self.seen.any():
            importance = torch.where(self.seen, self.value, self.value[self.seen].mean())
            self.probs = mixed_probabilities(importance, self.weight).float()

    def tensors(self) -> dict[str, torch.Tensor]:
        """The state to checkpoint (the probabilities are recomputed from it)."""
        return {"value": self.value, "seen": self.seen, "sums": self.sums, "counts": self.counts}

    def load(self, tensors: Mapping[str, torch.Tensor], weight: float) -> None:
        """Restore `tensors` output; ``weight`` is the importance weight of the last refresh."""
        for key, current in self.tensors().items():
            stored = tensors[key]
            if stored.shape != current.shape:
                raise ValueError(
                    f"PA&DA data importance has {stored.shape[0]} examples, the task has {current.shape[0]}"
                )
            current.copy_(stored)
        self.weight = weight
        self._update_probs()


@register_strategy("pada")
class PADA(Strategy):
    """PA&DA: one arch per step, paths and examples sampled in proportion to their gradient norms."""

    Options = PADAOptions

    def setup(self, ctx: TrainContext) -> None:
        o = self.options
        self.paths = PathImportance(ctx.space) if o.path_importance else None
        size = ctx.task.train_size() if o.data_importance else None
        if o.data_importance and size is None:
            raise ValueError(
                f"pada's data importance needs a task that indexes its examples ({type(ctx.task).__name__} has no "
                "train_size()): implement Task.train_size/train_examples, or pass strategy_options "
                "{data_importance: false}"
            )
        self.data = DataImportance(size) if size is not None else None
        epoch = math.ceil(size / ctx.config.batch_size) if size is not None else 100
        self.update_every = o.update_every or epoch
        self.refreshed_at = 0
        self._data_weight = 0.0  # the data importance weight of the last refresh, read back from a checkpoint
        self._indices: torch.Tensor | None = None

    def weight(self, ctx: TrainContext) -> float:
        """The importance weight at the current step."""
        return importance_weight(ctx.step, ctx.total_steps, self.options.smoothing)

    def _refresh(self, ctx: TrainContext) -> None:
        if ctx.step > self.refreshed_at and ctx.step % self.update_every == 0:
            w = self.weight(ctx)
            if self.paths is not None:
                self.paths.refresh(w)
            if self.data is not None:
                self.data.refresh(w)
            self.refreshed_at = ctx.step

    def next_batch(self, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        self._refresh(ctx)
        if self.data is None:
            return ctx.train_batch()
        self._indices = torch.multinomial(
            self.data.probs, ctx.config.batch_size, replacement=True, generator=ctx.data_generator
        )
        return ctx.train_batch(indices=self._indices)

    def sample(self, ctx: TrainContext) -> dict[str, Any]:
        """An arch drawn from the path-importance distributions (shared ``ctx.rng``)."""
        if self.paths is None:
            return ctx.sample()
        return {
            name: ctx.rng.choices(c.options, weights=self.paths.probs[name])[0]
            for name, c in ctx.space.decisions.items()
        }

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        x, y = batch
        arch = self.sample(ctx)
        out = ctx.forward(arch, x)
        loss = ctx.loss(out, y)
        ctx.backward(loss)
        if self.data is not None and self._indices is not None:
            norms = ctx.all_gather(logit_gradient_norms(out, y, ctx.config.label_smoothing))
            self.data.record(self._indices, norms)
        if self.paths is not None:
            self.paths.record(arch)
        return StepOutput(loss.detach(), [arch])

    def state_dict(self) -> dict[str, Any]:
        return {
            "refreshed_at": self.refreshed_at,
            "data_weight": None if self.data is None else self.data.weight,
            "paths": None if self.paths is None else self.paths.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.refreshed_at = int(state.get("refreshed_at", 0))
        self._data_weight = float(state.get("data_weight") or 0.0)
        if self.paths is not None and state.get("paths") is not None:
            self.paths.load_state_dict(state["paths"])

    def tensor_state(self) -> dict[str, torch.Tensor]:
        return {} if self.data is None else {f"data_{k}": v for k, v in self.data.tensors().items()}

    def load_tensor_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        if self.data is not None:
            state = {k.removeprefix("data_"): v for k, v in tensors.items() if k.startswith("data_")}
            self.data.load(state, self._data_weight)
