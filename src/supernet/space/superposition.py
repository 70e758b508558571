"""Superposition (TangleNAS): layers run as weighted mixtures of their options.

Inside ``with superposition({choice: weights, ...}):`` a layer whose sizes depend on a weighted choice runs once
with the mixed weight ``W_mix = sum_a p(a) * zero_pad(W[slice(a)])`` over every joint assignment ``a`` of its
weighted choices (``p(a)`` = product of the per-choice weights; kernel sizes are centre-padded), built as
``W_max * M`` with a mask ``M`` of the combination weights. A weight depending on two choices (embed x MLP ratio)
thus gets the outer-product ("combi") weighting. A choice given with a hard index (GDAS) is not mixed: only its
chosen slice is computed, scaled by its straight-through weight (1 forward).

Layers call `superposed` with how to slice their parameters and how to run on a slice; it does the rest, in
either mode (mix weights, or run every size and mix the outputs).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .choice import Choice, Value, as_size, leaves_of

# --------------------------------------------------------------------------------------------------------------
# Superposition state: which choices carry mixture weights right now.
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mix:
    """Mixture weights of one decision.

    Attributes:
        weights: 1-D tensor, ``weights[i]`` for ``choice.options[i]`` (may require grad).
        index: ``None`` for a soft mixture; an option index for a hard pick (GDAS): only that option is
            computed and its output is scaled by ``weights[index]`` (1 in the forward pass with a
            straight-through estimator, so the gradient still reaches the architecture parameters).
        paths: for a soft mixture, the only options an operation choice computes (ProxylessNAS's two sampled
            paths: memory of two paths, not all); the others' weights must be 0. ``None``: every option.
    """

    weights: torch.Tensor
    index: int | None = None
    paths: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _MixState:
    mixes: Mapping[Choice, Mix]
    mode: str  # "weights" (superposition) or "outputs" (run every option and sum: the memory baseline)


_STATE: contextvars.ContextVar[_MixState | None] = contextvars.ContextVar("supernet_mix_state", default=None)
MIX_MODES = ("weights", "outputs")


@contextlib.contextmanager
def superposition(mixes: Mapping[Choice, Mix | torch.Tensor], mode: str = "weights") -> Iterator[None]:
    """Run entangled layers, `LayerChoice` and `Repeat` as mixtures of their options inside this block.

    Args:
        mixes: ``{choice: weights}`` (a 1-D tensor with one weight per option) or ``{choice: Mix(...)}``.
            Choices not listed keep using their active option (``choice.current``).
        mode: ``"weights"`` mixes weights (one forward at the size of the largest option); ``"outputs"``
            computes every option of every layer separately and sums the zero-padded outputs (classic
            output mixing, memory grows with the options; used as a baseline).
    """
    if mode not in MIX_MODES:
        raise ValueError(f"superposition mode must be one of {MIX_MODES}, got {mode!r}")
    checked: dict[Choice, Mix] = {}
    for choice, mix in mixes.items():
        if not isinstance(choice, Choice):
            raise TypeError(f"superposition keys must be Choice objects, got {type(choice).__name__}")
        if isinstance(mix, torch.Tensor):
            mix = Mix(mix)
        if not isinstance(mix, Mix):
            raise TypeError(f"weights for choice {choice.name!r} must be a tensor or Mix, got {type(mix).__name__}")
        if mix.weights.dim() != 1 or mix.weights.shape[0] != len(choice.options):
            raise ValueError(
                f"choice {choice.name!r} has {len(choice.options)} options but got weights of shape "
                f"{tuple(mix.weights.shape)}; expected ({len(choice.options)},)"
            )
        if mix.index is not None and not 0 <= mix.index < len(choice.options):
            raise ValueError(f"hard index {mix.index} out of range for choice {choice.name!r}")
        checked[choice] = mix
    token = _STATE.set(_MixState(checked, mode))
    try:
        yield
    finally:
        _STATE.reset(token)


def active_mixes() -> dict[Choice, Mix]:
    """The mixtures in force (empty outside `superposition`)."""
    state = _STATE.get()
    return {} if state is None else dict(state.mixes)


def mix_of(choice: Choice) -> Mix | None:
    """The mixture of ``choice`` in force, or None."""
    state = _STATE.get()
    return None if state is None else state.mixes.get(choice)


class MixPlan:
    """How one layer mixes: its tensor sizes and the weight of each joint assignment of its mixed choices.

    Built from the values (sizes) a layer reads. Soft choices are enumerated jointly; hard and unweighted
    choices are fixed (hard: the picked option, unweighted: ``choice.current``).
    """

    def __init__(self, values: Sequence[Any], state: _MixState, what: str) -> None:
        leaves = leaves_of(values)
        self.mode = state.mode
        self.soft = tuple(c for c in leaves if c in state.mixes and state.mixes[c].index is None)
        self.hard = tuple(c for c in leaves if c in state.mixes and state.mixes[c].index is not None)
        fixed: dict[Choice, Any] = {c: c.current for c in leaves if c not in state.mixes}
        fixed.update({c: c.options[state.mixes[c].index] for c in self.hard})
        combos, sizes = [], []
        for idx in itertools.product(*(range(len(c.options)) for c in self.soft)):
            assignment = dict(fixed)
            assignment.update({c: c.options[i] for c, i in zip(self.soft, idx, strict=True)})
            combos.append(idx)
            sizes.append(
                tuple(
                    as_size(v.evaluate_with(assignment) if isinstance(v, Value) else v, what) for v in values
                )
            )
        self.sizes_per_combo = sizes
        #: per value: the size of the tensor axis (largest over the mixed assignments)
        self.sizes = tuple(max(s[j] for s in sizes) for j in range(len(values)))
        #: per value: distinct sizes, sorted
        self.distinct = [sorted({s[j] for s in sizes}) for j in range(len(values))]
        self._combo_index = torch.tensor(combos, dtype=torch.long).reshape(len(combos), len(self.soft))
        self._tensors: dict[Any, torch.Tensor] = {}

    def _const(self, key: Any, device: torch.device, build: Any) -> torch.Tensor:
        k = (key, str(device))
        if k not in self._tensors:
            self._tensors[k] = build().to(device)
        return self._tensors[k]

    @property
    def mixed(self) -> bool:
        """Whether any soft (non-hard) weighted choice is involved."""
        return bool(self.soft)

    def probs(self, device: torch.device) -> torch.Tensor | None:
        """Weight of every joint assignment of the soft choices, ``(n_combos,)`` (None without soft choices)."""
        if not self.soft:
            return None
        mixes = _STATE.get().mixes
        idx = self._const("combo", device, lambda: self._combo_index)
        p = None
        for j, c in enumerate(self.soft):
            w = mixes[c].weights.to(device)[idx[:, j]]
            p = w if p is None else p * w
        return p

    def scale(self, device: torch.device) -> torch.Tensor | None:
        """Product of the straight-through weights of the hard choices (1 forward), or None."""
        if not self.hard:
            return None
        mixes = _STATE.get().mixes
        s = None
        for c in self.hard:
            m = mixes[c]
            w = m.weights.to(device)[m.index]
            s = w if s is None else s * w
        return s

    def groups(self, values: Sequence[int], device: torch.device) -> list[tuple[tuple[int, ...], torch.Tensor]]:
        """Distinct size tuples of the chosen values with their total weight (for output mixing)."""
        p = self.probs(device)
        keys = [tuple(s[j] for j in values) for s in self.sizes_per_combo]
        uniq = sorted(set(keys))
        gid = self._const(("gid", tuple(values)), device, lambda: torch.tensor([uniq.index(k) for k in keys]))
        total = torch.zeros(len(uniq), dtype=p.dtype, device=device).index_add(0, gid, p)
        return [(k, total[i]) for i, k in enumerate(uniq)]

    def mask(self, dims: Sequence[int | None], kernel: int | None, device: torch.device) -> torch.Tensor:
        """The superposition mask for a tensor whose dim ``d`` is sized by value ``dims[d]`` (None: not mixed).

        Value ``kernel`` (if given) sizes two consecutive dims as a centred square window; every other value
        is a prefix. The result broadcasts against the tensor (size 1 along dims that do not vary).
        """
        p = self.probs(device)
        used = [v for v in dict.fromkeys(d for d in dims if d is not None) if len(self.distinct[v]) > 1]
        if not used:
            return p.sum()
        key = ("mask", tuple(dims), kernel)
        flat = self._const(
            (*key, "flat"),
            device,
            lambda: torch.tensor(
                [
                    sum(
                        self.distinct[v].index(s[v]) * math.prod(len(self.distinct[u]) for u in used[i + 1 :])
                        for i, v in enumerate(used)
                    )
                    for s in self.sizes_per_combo
                ]
            ),
        )
        grid = torch.zeros(math.prod(len(self.distinct[v]) for v in used), dtype=p.dtype, device=device)
        grid = grid.index_add(0, flat, p).view([len(self.distinct[v]) for v in used])
        # Contract the small grid of combination weights with one indicator matrix per axis in turn
        # (each tensordot moves the contracted axis to the end, so the axes come out in order).
        out = grid
        for v in used:
            ind = self._const((*key, v), device, lambda v=v: self._indicator(v, v == kernel)).to(p.dtype)
            out = torch.tensordot(out, ind, dims=([0], [0]))
        return out.reshape([1 if d is None or d not in used else self.sizes[d] for d in dims])

    def _indicator(self, v: int, centre: bool) -> torch.Tensor:
        n = self.sizes[v]
        rows = []
        for s in self.distinct[v]:
            if centre:
                line = torch.zeros(n)
                start = (n - s) // 2
                line[start : start + s] = 1.0
                rows.append(torch.outer(line, line).flatten())
            else:
                rows.append((torch.arange(n) < s).float())
        return torch.stack(rows)


def mix_plan(module: nn.Module, values: Sequence[Any], what: str) -> MixPlan | None:
    """The layer's `MixPlan` when any of its values depends on a weighted choice, else None (plain slicing)."""
    state = _STATE.get()
    if state is None or not state.mixes:
        return None
    leaves = leaves_of(values)
    if not any(c in state.mixes for c in leaves):
        return None
    key = (
        state.mode,
        tuple(
            (c, "soft" if state.mixes[c].index is None else state.mixes[c].index)
            if c in state.mixes
            else (c, "fixed", c.current)
            for c in leaves
        ),
    )
    cache = module.__dict__.setdefault("_mix_plans", {})
    if key not in cache:
        if len(cache) > 256:
            cache.clear()
        cache[key] = MixPlan(values, state, what)
    return cache[key]


def pad_last(y: torch.Tensor, n: int) -> torch.Tensor:
    return y if y.shape[-1] == n else F.pad(y, (0, n - y.shape[-1]))


def pad_channels(y: torch.Tensor, n: int) -> torch.Tensor:
    if y.shape[1] == n:
        return y
    return F.pad(y, (0, 0, 0, 0, 0, n - y.shape[1]))


def scaled(t: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or s is None else t * s


#: How one parameter is masked under weight mixing: the value index sizing each tensor dim (None: not mixed),
#: and the value index that sizes two trailing dims as a centred square kernel window (or None).
MaskSpec = tuple[tuple[int | None, ...], int | None]


def superposed(
    plan: MixPlan,
    device: torch.device,
    params: Callable[[tuple[int, ...]], Sequence[torch.Tensor | None]],
    masks: Sequence[MaskSpec],
    run: Callable[[tuple[int, ...], Sequence[torch.Tensor | None]], torch.Tensor],
    pad: Callable[[torch.Tensor, tuple[int, ...]], torch.Tensor],
    output_mask: tuple[int | None, ...] | None = None,
    exact: bool = False,
) -> torch.Tensor:
    """One layer's output under ``plan``: the single place that chooses between mixing weights and outputs.

    Args:
        plan: the layer's `MixPlan` (from `mix_plan`).
        device: where the mixture weights go.
        params: the layer's parameters sliced for a tuple of sizes (one size per value of the plan).
        masks: per parameter, how `MixPlan.mask` shapes its mixing mask (`MaskSpec`).
        run: the layer's computation for a tuple of sizes on parameters sliced (and possibly masked) for it.
        pad: zero-pads an output computed at some sizes to the output at the plan's (largest) sizes.
        output_mask: mix the output instead of the parameters under weight mixing (layers without parameters,
            e.g. a BatchNorm without affine): the `MaskSpec` dims of the output.
        exact: always mix the outputs (a layer whose statistics depend on the size, e.g. LayerNorm, has no
            equivalent mixed weight).
    """
    scale = plan.scale(device)
    if plan.mixed and (exact or plan.mode == "outputs"):
        out: Any = 0
        for sizes, p in plan.groups(tuple(range(len(plan.sizes))), device):
            out = out + p * pad(run(sizes, params(sizes)), plan.sizes)
        return scaled(out, scale)
    tensors = list(params(plan.sizes))
    if plan.mixed:
        tensors = [
            t if t is None else t * plan.mask(dims, kernel, device)
            for t, (dims, kernel) in zip(tensors, masks, strict=True)
        ]
    y = run(plan.sizes, [scaled(t, scale) for t in tensors])
    if plan.mixed and output_mask is not None:
        y = y * plan.mask(output_mask, None, device)
    return y if output_mask is None else scaled(y, scale)
