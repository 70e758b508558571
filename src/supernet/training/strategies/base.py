"""The strategy protocol: how each training step picks subnets and combines their losses."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from ...registry import Registry
from ...validation import validate_model

if TYPE_CHECKING:
    from ...space import SuperModule
    from ..context import TrainContext


class StrategyOptions(BaseModel):
    """Base of every strategy's options (unknown keys are errors naming the key)."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class StepOutput:
    """What one training step reports.

    Attributes:
        loss: the step's main loss (a detached tensor or a float; converted only when logged).
        archs: the arch dicts whose forward/backward ran this step, in order.
        metrics: extra scalars to log (tensors or floats), e.g. ``{"loss_max": ..., "loss_min": ...}``.
    """

    loss: torch.Tensor | float
    archs: list[dict[str, Any]]
    metrics: dict[str, torch.Tensor | float] = field(default_factory=dict)


class Strategy:
    """Base class of training strategies (one file per strategy under ``supernet/training/strategies``).

    A strategy decides which arch(s) run in each step and how their losses combine. ``step`` does the
    forward and backward passes through ``ctx.forward`` / ``ctx.backward``; the loop then all-reduces
    (DDP), clips, and takes the optimizer step. Randomness must come from ``ctx.rng`` (shared by every
    rank and saved in checkpoints) so distributed runs agree and resumed runs continue exactly.

    Strategies with their own parameters (architecture weights of gradient methods) create them in
    ``setup`` on ``ctx.device``, step their own optimizer inside ``step`` (``ctx.val_batch()`` gives
    validation data, ``ctx.all_reduce_grads(params)`` averages their gradients across ranks) and save
    them through ``tensor_state``/``state_dict``. On resume the loop calls ``setup`` first, then
    ``load_state_dict`` and ``load_tensor_state``.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions

    def __init__(self, options: Mapping[str, Any] | StrategyOptions | None = None, **kwargs: Any) -> None:
        if isinstance(options, StrategyOptions) and not kwargs:
            data: Any = options
        else:
            base = options.model_dump() if isinstance(options, BaseModel) else dict(options or {})
            data = {**base, **kwargs}
        self.options = validate_model(self.Options, data, f"strategy {self.name!r} options")

    def prepare_space(self, space: SuperModule) -> None:
        """Change the space's structure in place before training (the optimizer does not exist yet), e.g.
        partition it into sub-supernets; called on every `train` call, so it must accept a space it already
        prepared (a resumed run). Most strategies change nothing."""

    def setup(self, ctx: TrainContext) -> None:
        """Called once before the first step (model, optimizer and device exist)."""

    def next_batch(self, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of the coming step (this rank's shard): random training examples unless a strategy picks
        them itself (``ctx.train_batch(indices=...)``)."""
        return ctx.train_batch()

    def step(self, ctx: TrainContext, batch: tuple[torch.Tensor, torch.Tensor]) -> StepOutput:
        """Run the forward/backward passes of one training step on ``batch`` (this rank's shard)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state for checkpoints."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict` output."""

    def tensor_state(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint (saved in safetensors under ``strategy.<key>``)."""
        return {}

    def load_tensor_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore `tensor_state` output (called after ``setup``)."""

    def paths_per_step(self, space: SuperModule) -> int | None:
        """Single-path forward/backward passes one step runs on ``space`` (for comparing strategies at matched
        compute); None for a strategy that does not train single paths (a mixture of every option)."""
        return 1

    def schedule_segments(self, ctx: TrainContext) -> list[int] | None:
        """End steps of learning-rate schedule segments (the cosine restarts at each); None: one segment."""
        return None

    def final_arch(self, ctx: TrainContext) -> dict[str, Any] | None:
        """The arch this strategy picks at the end (gradient methods); None for two-stage strategies."""
        return None

    def describe(self) -> dict[str, Any]:
        """``{"name", "options"}`` for run.json."""
        return {"name": self.name, "options": self.options.model_dump(mode="json")}


def _bind_name(name: str, cls: type[Strategy]) -> type[Strategy]:
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"@register_strategy({name!r}) needs a Strategy subclass, got {cls!r}")
    cls.name = name
    return cls


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", prepare=_bind_name)
"""Every training strategy by name. The built-in ones register when `supernet.training.strategies` is imported,
the differentiable ones (``darts``, ``gdas``, ``drnas``) when `supernet.gradient` is (``import supernet`` does)."""


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: register a `Strategy` subclass as a training strategy under ``name`` (sets ``cls.name``).

    The first line of the class docstring is its description in ``supernet train --help`` and ``supernet info``.
    """
    return STRATEGIES.register(name)


def get_strategy(name: str) -> type[Strategy]:
    """The strategy class registered under ``name``.

    Raises:
        UnknownNameError: (a ``ValueError`` and a ``KeyError``) listing the registered strategies.
    """
    return STRATEGIES.get(name)


def make_strategy(strategy: str | Strategy, options: Mapping[str, Any] | None = None) -> Strategy:
    """A strategy instance from a name (+ options) or an instance (options must then be empty)."""
    if isinstance(strategy, Strategy):
        if options:
            raise ValueError("strategy_options were given together with a Strategy instance; pass one of them")
        return strategy
    if isinstance(strategy, type) and issubclass(strategy, Strategy):
        return strategy(options)
    if not isinstance(strategy, str):
        raise TypeError(f"strategy must be a name or a Strategy, got {type(strategy).__name__}")
    return get_strategy(strategy)(options)
