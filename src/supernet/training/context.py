"""`TrainContext`: what a strategy sees during training (model, data, shared RNG, forward/backward helpers)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from ..seeding import VAL_BATCH_SEED_OFFSET, derived_seed
from ..space import SuperModule
from .tasks import Batch, Task

if TYPE_CHECKING:
    from .config import TrainConfig


class TouchAll(nn.Module):
    """Wraps the supernet for DDP so that every parameter takes part in every backward pass.

    DDP's reducer waits for a gradient of every parameter. Entangled (sliced) weights always get one (the
    gradient of a slice is a full-size tensor), but whole modules can sit out a step: blocks beyond the
    active depth of a `Repeat`, the candidates a `LayerChoice` did not pick. Rather than pay for
    ``find_unused_parameters=True`` (a graph traversal every step), the output gets ``0 * sum(first
    element of each parameter)`` added: an exact no-op in value whose backward gives every parameter a
    zero gradient contribution, so all ranks all-reduce the same full set of buckets each step.

    A zero gradient is not the same as no gradient (AdamW would still move a parameter by its momentum and
    decay), so the wrapper also records which modules ran a forward during the step (a forward pre-hook on
    every module; all ranks run the same archs): `unused_parameters` lists the parameters none of whose
    owning modules ran, and the loop sets their ``.grad`` back to None after the all-reduce. Training under
    DDP therefore updates exactly the parameters a single-process run updates.
    """

    def __init__(self, space: SuperModule) -> None:
        super().__init__()
        self.space = space
        self._ran: set[int] = set()
        self._owners: list[tuple[nn.Parameter, list[int]]] = []
        self._handles = []
        owners: dict[int, tuple[nn.Parameter, list[int]]] = {}
        for module in space.modules():
            self._handles.append(module.register_forward_pre_hook(self._mark))
            for p in module.parameters(recurse=False):
                owners.setdefault(id(p), (p, []))[1].append(id(module))
        self._owners = list(owners.values())

    def _mark(self, module: nn.Module, args: Any) -> None:
        self._ran.add(id(module))

    def close(self) -> None:
        """Remove the usage hooks from the space (after training)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def reset_usage(self) -> None:
        """Forget which modules ran (call at the start of each step)."""
        self._ran.clear()

    def unused_parameters(self) -> list[nn.Parameter]:
        """Parameters whose owning modules did not run since `reset_usage`."""
        return [p for p, mods in self._owners if not any(m in self._ran for m in mods)]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.space(*args, **kwargs)
        params = [p for p, _ in self._owners if p.requires_grad and p.numel()]  # empty: a 1-expert mixture
        if not params:
            return out
        zero = torch.stack([p.reshape(-1)[0].float() for p in params]).sum() * 0.0
        return _add_to_first_tensor(out, zero)


def _add_to_first_tensor(out: Any, zero: torch.Tensor) -> Any:
    if isinstance(out, torch.Tensor):
        return out + zero.to(out.dtype)
    if isinstance(out, (tuple, list)) and out:
        return type(out)([_add_to_first_tensor(out[0], zero), *out[1:]])
    if isinstance(out, Mapping) and out:
        key = next(iter(out))
        return {**out, key: _add_to_first_tensor(out[key], zero)}
    raise TypeError(f"cannot train a space whose output is {type(out).__name__} with DDP: return a tensor")


class TrainContext:
    """The training state a `Strategy` works with (one per run; ``step`` advances each step).

    Attributes:
        space: the supernet (unwrapped). model: what to call for training forwards (DDP wrapper or space).
        task, config, options (the strategy's validated options), device, rank, world_size.
        rng: ``random.Random`` shared by all ranks (same seed) and checkpointed: draw archs from it.
        kinds: ``{decision: "kernel" | "depth" | "width" | "other"}``.
        step: 0-based index of the current step; total_steps: ``config.steps``.
        run_dir: the run directory (None when the run writes no files); strategies may write extra reports
            there from rank 0 (atomically, with `supernet.files.write_json`).
    """

    def __init__(
        self,
        space: SuperModule,
        model: nn.Module,
        task: Task,
        config: TrainConfig,
        options: Any,
        device: torch.device,
        kinds: dict[str, str],
        rank: int = 0,
        world_size: int = 1,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        self.space, self.model, self.task, self.config, self.options = space, model, task, config, options
        self.device, self.kinds, self.rank, self.world_size = device, kinds, rank, world_size
        self.amp_dtype = amp_dtype
        self.step = 0
        self.total_steps = config.steps
        self.run_dir: Path | None = None
        self.rng = random.Random(config.seed)
        self.data_generator = torch.Generator().manual_seed(config.seed)
        self.val_generator = torch.Generator().manual_seed(derived_seed(config.seed, VAL_BATCH_SEED_OFFSET))

    @property
    def distributed(self) -> bool:
        """Whether gradients are averaged across several processes."""
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA when mixed precision is on, else a no-op."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _shard(self, batch: Batch) -> Batch:
        if self.world_size == 1:
            return batch
        n = batch[0].shape[0]
        if n % self.world_size:
            raise ValueError(f"batch of {n} does not split evenly over {self.world_size} processes")
        per = n // self.world_size
        lo = self.rank * per
        return batch[0][lo : lo + per].to(self.device), batch[1][lo : lo + per].to(self.device)

    def train_batch(self, batch_size: int | None = None, indices: torch.Tensor | None = None) -> Batch:
        """This rank's shard of the next global training batch: ``config.batch_size`` random examples by default,
        or the examples at ``indices`` (every rank passes the same global indices; see `Task.train_examples`)."""
        where = "cpu" if self.world_size > 1 else self.device
        if indices is not None:
            return self._shard(self.task.train_examples(indices, self.data_generator, where))
        size = batch_size or self.config.batch_size
        return self._shard(self.task.train_batch(size, self.data_generator, where))

    def all_gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every rank's ``values`` concatenated in rank order (the tensor itself without DDP)."""
        if not self.distributed:
            return values
        parts = [torch.empty_like(values) for _ in range(self.world_size)]
        dist.all_gather(parts, values.contiguous())
        return torch.cat(parts)

    def val_batch(self, batch_size: int | None = None) -> Batch:
        """This rank's shard of a random global validation batch (own checkpointed generator)."""
        size = batch_size or self.config.batch_size
        where = "cpu" if self.world_size > 1 else self.device
        return self._shard(self.task.val_batch(size, self.val_generator, where))

    def set_arch(self, arch: Mapping[str, Any]) -> None:
        """Activate ``arch`` on the supernet."""
        self.space.set_arch(arch)

    def forward(self, arch: Mapping[str, Any] | None, x: torch.Tensor, sync: bool = True) -> Any:
        """Activate ``arch`` (None: keep the active one) and run the training forward under autocast.

        With DDP, ``sync=False`` skips the gradient all-reduce of this forward's backward (gradients
        accumulate locally); pass it for every forward of a step but the last. Each ``sync=True`` forward
        must be followed by its backward before the next forward.
        """
        if arch is not None:
            self.space.set_arch(arch)
        no_sync = self.distributed and not sync and hasattr(self.model, "no_sync")
        with self.model.no_sync() if no_sync else contextlib.nullcontext(), self.autocast():
            return self.model(x)

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` (gradients accumulate into ``.grad``)."""
        loss.backward()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The label loss of the task (with ``config.label_smoothing``)."""
        return self.task.loss(outputs, targets, self.config.label_smoothing)

    def all_reduce_grads(self, params: Iterable[nn.Parameter]) -> None:
        """Average the gradients of ``params`` over ranks (missing gradients count as zeros)."""
        if not self.distributed:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(self.world_size)

    def reset_usage(self) -> None:
        """Forget which modules ran so far in this step (DDP only): call after forwards that train nothing, such
        as gradient probes, so that their modules' parameters are not updated as if the step had used them."""
        wrapper = getattr(self.model, "module", None)
        if isinstance(wrapper, TouchAll):
            wrapper.reset_usage()

    def sample(self) -> dict[str, Any]:
        """A uniformly random arch drawn from the shared ``rng``."""
        return self.space.sample(rng=self.rng)

    def generators(self) -> Iterator[tuple[str, torch.Generator]]:
        """The context's torch generators by name (for checkpoints)."""
        yield "data", self.data_generator
        yield "val", self.val_generator
