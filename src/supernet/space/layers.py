"""Weight-entangled layers: every option is a prefix slice of the largest weight tensor.

Each layer allocates the weight of its largest configuration once. Under the active arch it slices the
leading rows/columns (and, for kernel sizes, the centred window of the largest kernel), so all options
share and train the same storage.

Superposition (TangleNAS): inside ``with superposition({choice: weights, ...}):`` a layer whose sizes depend
on a weighted choice runs once with the mixed weight ``W_mix = sum_a p(a) * zero_pad(W[slice(a)])`` over every
joint assignment ``a`` of its weighted choices (``p(a)`` = product of the per-choice weights; kernel sizes are
centre-padded), built as ``W_max * M`` with a mask ``M`` of the combination weights. A weight depending on two
choices (embed x MLP ratio) thus gets the outer-product ("combi") weighting. A choice given with a hard index
(GDAS) is not mixed: only its chosen slice is computed, scaled by its straight-through weight (1 forward).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import plain
from .base import Searchable, copy_param
from .choice import Choice, Value, as_size, current_int, leaves_of, max_int

Size = Any  # an int, a Choice, or a value derived from choices


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
    """

    weights: torch.Tensor
    index: int | None = None


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


def _pad_last(y: torch.Tensor, n: int) -> torch.Tensor:
    return y if y.shape[-1] == n else F.pad(y, (0, n - y.shape[-1]))


def _pad_channels(y: torch.Tensor, n: int) -> torch.Tensor:
    if y.shape[1] == n:
        return y
    return F.pad(y, (0, 0, 0, 0, 0, n - y.shape[1]))


def _scaled(t: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor | None:
    return t if t is None or s is None else t * s


def _check_dim(x: torch.Tensor, dim: int, expected: int, layer: str, what: str) -> None:
    if x.shape[dim] != expected:
        raise ValueError(
            f"{layer} expected {expected} {what} under the active arch, got input with {x.shape[dim]}: "
            f"pass the producing layer's choice as this layer's {what}"
        )


class Linear(Searchable):
    """``nn.Linear`` whose in and out features may be choices (slices ``weight[:out, :in]``)."""

    def __init__(self, in_features: Size, out_features: Size, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.max_in = max_int(in_features, "Linear in_features")
        self.max_out = max_int(out_features, "Linear out_features")
        self.weight = nn.Parameter(torch.empty(self.max_out, self.max_in))
        self.bias = nn.Parameter(torch.empty(self.max_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The same initialisation as ``nn.Linear`` of the largest size."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.max_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def search_values(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features}

    def active(self) -> tuple[int, int]:
        """``(in_features, out_features)`` under the active arch."""
        return current_int(self.in_features, "in_features"), current_int(self.out_features, "out_features")

    def active_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the active subnet."""
        i, o = self.active()
        return self.weight[:o, :i], None if self.bias is None else self.bias[:o]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, (self.out_features, self.in_features), "Linear features")
        if plan is not None:
            return self._mixed_forward(x, plan)
        w, b = self.active_weights()
        _check_dim(x, -1, w.shape[1], "Linear", "in_features")
        return F.linear(x, w, b)

    def _mixed_forward(self, x: torch.Tensor, plan: MixPlan) -> torch.Tensor:
        o_max, i_max = plan.sizes
        _check_dim(x, -1, i_max, "Linear (superposed)", "in_features")
        scale = plan.scale(x.device)
        bias = None if self.bias is None else self.bias[:o_max]
        if plan.mixed and plan.mode == "outputs":
            out = 0
            for (o, i), p in plan.groups((0, 1), x.device):
                b = None if self.bias is None else self.bias[:o]
                out = out + p * _pad_last(F.linear(x[..., :i], self.weight[:o, :i], b), o_max)
            return _scaled(out, scale)
        w = self.weight[:o_max, :i_max]
        if plan.mixed:
            w = w * plan.mask((0, 1), None, x.device)
            bias = None if bias is None else bias * plan.mask((0,), None, x.device)
        return F.linear(x, _scaled(w, scale), _scaled(bias, scale))

    def extract(self) -> nn.Linear:
        w, b = self.active_weights()
        out = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        out.weight, out.bias = copy_param(w), copy_param(b)
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Searchable):
    """``nn.Conv2d`` with choices for out channels and (odd) kernel size.

    In channels follow the producer: pass the producer's out-channel value. A smaller kernel is the
    centred window of the largest kernel. ``depthwise=True`` makes a depthwise conv whose groups follow
    the active channel count (in and out channels must then be the same value). ``padding=None`` keeps the
    spatial size for stride 1 (``kernel // 2``, per active kernel).
    """

    def __init__(
        self,
        in_channels: Size,
        out_channels: Size,
        kernel_size: Size,
        stride: int = 1,
        padding: int | None = None,
        bias: bool = True,
        depthwise: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.padding, self.depthwise = stride, padding, depthwise
        self.max_in = max_int(in_channels, "Conv2d in_channels")
        self.max_out = max_int(out_channels, "Conv2d out_channels")
        self.max_kernel = max_int(kernel_size, "Conv2d kernel_size")
        kernels = kernel_size.possible_values() if hasattr(kernel_size, "possible_values") else [kernel_size]
        for k in kernels:
            if (self.max_kernel - k) % 2:
                raise ValueError(
                    f"Conv2d kernel sizes {kernels} must all be odd or all even so each is a centred window "
                    f"of the largest ({self.max_kernel})"
                )
        if depthwise and self.max_in != self.max_out:
            raise ValueError("a depthwise Conv2d needs in_channels and out_channels to be the same value")
        in_per_group = 1 if depthwise else self.max_in
        self.weight = nn.Parameter(torch.empty(self.max_out, in_per_group, self.max_kernel, self.max_kernel))
        self.bias = nn.Parameter(torch.empty(self.max_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The same initialisation as ``nn.Conv2d`` of the largest size."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.max_kernel * self.max_kernel
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def search_values(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": self.kernel_size}

    def active(self) -> tuple[int, int, int]:
        """``(in_channels, out_channels, kernel_size)`` under the active arch."""
        return (
            current_int(self.in_channels, "in_channels"),
            current_int(self.out_channels, "out_channels"),
            current_int(self.kernel_size, "kernel_size"),
        )

    def active_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the active subnet."""
        c_in, c_out, k = self.active()
        if self.depthwise and c_in != c_out:
            raise ValueError(f"depthwise Conv2d got {c_in} in and {c_out} out channels; they must match")
        w = self.weight[:c_out, : 1 if self.depthwise else c_in]
        if k != self.max_kernel:
            s = (self.max_kernel - k) // 2
            w = w[:, :, s : s + k, s : s + k]
        return w, None if self.bias is None else self.bias[:c_out]

    def conv_args(self) -> tuple[int, int]:
        """``(padding, groups)`` under the active arch."""
        _, c_out, k = self.active()
        padding = k // 2 if self.padding is None else self.padding
        return padding, (c_out if self.depthwise else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, (self.in_channels, self.out_channels, self.kernel_size), "Conv2d sizes")
        if plan is not None:
            return self._mixed_forward(x, plan)
        w, b = self.active_weights()
        _check_dim(x, 1, current_int(self.in_channels, "in_channels"), "Conv2d", "in_channels")
        padding, groups = self.conv_args()
        return F.conv2d(x, w, b, self.stride, padding, 1, groups)

    def _mixed_forward(self, x: torch.Tensor, plan: MixPlan) -> torch.Tensor:
        i_max, o_max, k_max = plan.sizes
        _check_dim(x, 1, i_max, "Conv2d (superposed)", "in_channels")
        if self.depthwise and i_max != o_max:
            raise ValueError(f"depthwise Conv2d got {i_max} in and {o_max} out channels; they must match")
        if self.padding is not None and len(plan.distinct[2]) > 1:
            raise ValueError(
                "a Conv2d whose kernel size is mixed needs padding=None (kernel // 2) so every kernel gives the "
                f"same output size; got padding={self.padding}"
            )
        scale = plan.scale(x.device)

        def run(c_in: int, c_out: int, k: int, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
            padding = k // 2 if self.padding is None else self.padding
            return F.conv2d(x[:, :c_in], weight, bias, self.stride, padding, 1, c_out if self.depthwise else 1)

        if plan.mixed and plan.mode == "outputs":
            out = 0
            for (c_in, c_out, k), p in plan.groups((0, 1, 2), x.device):
                w = self.weight[:c_out, : 1 if self.depthwise else c_in]
                s = (self.max_kernel - k) // 2
                w = w[:, :, s : s + k, s : s + k]
                b = None if self.bias is None else self.bias[:c_out]
                out = out + p * _pad_channels(run(c_out if self.depthwise else c_in, c_out, k, w, b), o_max)
            return _scaled(out, scale)
        w = self.weight[:o_max, : 1 if self.depthwise else i_max]
        if k_max != self.max_kernel:
            s = (self.max_kernel - k_max) // 2
            w = w[:, :, s : s + k_max, s : s + k_max]
        bias = None if self.bias is None else self.bias[:o_max]
        if plan.mixed:
            w = w * plan.mask((1, None if self.depthwise else 0, 2, 2), 2, x.device)
            bias = None if bias is None else bias * plan.mask((1,), None, x.device)
        return run(i_max, o_max, k_max, _scaled(w, scale), _scaled(bias, scale))

    def extract(self) -> nn.Conv2d:
        w, b = self.active_weights()
        c_in, c_out, k = self.active()
        padding, groups = self.conv_args()
        out = nn.Conv2d(c_in, c_out, k, self.stride, padding, groups=groups, bias=b is not None)
        out.weight, out.bias = copy_param(w), copy_param(b)
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}" + (
            ", depthwise" if self.depthwise else ""
        )


class BatchNorm2d(Searchable):
    """``nn.BatchNorm2d`` over a choice of channels; running statistics are sliced (and updated) too."""

    def __init__(
        self,
        num_features: Size,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        n = max_int(num_features, "BatchNorm2d num_features")
        self.weight = nn.Parameter(torch.ones(n)) if affine else None
        self.bias = nn.Parameter(torch.zeros(n)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(n))
            self.register_buffer("running_var", torch.ones(n))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def search_values(self) -> dict[str, Any]:
        return {"num_features": self.num_features}

    def reset_running_stats(self) -> None:
        """Forget the running statistics of every option (before BN recalibration)."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, (self.num_features,), "BatchNorm2d num_features")
        if plan is not None:
            return self._mixed_forward(x, plan)
        c = current_int(self.num_features, "num_features")
        _check_dim(x, 1, c, "BatchNorm2d", "num_features")
        return self._norm(
            x, c, None if self.weight is None else self.weight[:c], None if self.bias is None else self.bias[:c]
        )

    def _norm(self, x: torch.Tensor, c: int, weight: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        # Slices are views, so the running stats of the active prefix are updated in place.
        return F.batch_norm(
            x,
            None if self.running_mean is None else self.running_mean[:c],
            None if self.running_var is None else self.running_var[:c],
            weight,
            bias,
            use_batch_stats,
            self.momentum,
            self.eps,
        )

    def _mixed_forward(self, x: torch.Tensor, plan: MixPlan) -> torch.Tensor:
        # Normalisation is per channel, so mixing the outputs of every channel count equals one BN over the
        # largest count with the affine parameters (or, without affine, the output) scaled by the channel mask.
        # Running statistics of all those channels are updated from the superposed activations: they belong
        # to no single subnet; recalibrate BN after picking an arch.
        (c_max,) = plan.sizes
        _check_dim(x, 1, c_max, "BatchNorm2d (superposed)", "num_features")
        scale = plan.scale(x.device)
        weight = None if self.weight is None else self.weight[:c_max]
        bias = None if self.bias is None else self.bias[:c_max]
        if plan.mixed and plan.mode == "outputs":
            out = 0
            for (c,), p in plan.groups((0,), x.device):
                y = self._norm(x[:, :c], c, None if weight is None else weight[:c], None if bias is None else bias[:c])
                out = out + p * _pad_channels(y, c_max)
            return _scaled(out, scale)
        m = plan.mask((0,), None, x.device) if plan.mixed else None
        if self.affine:
            weight, bias = _scaled(_scaled(weight, m), scale), _scaled(_scaled(bias, m), scale)
            return self._norm(x, c_max, weight, bias)
        y = self._norm(x, c_max, None, None)
        if m is not None:
            y = y * (m.view(1, -1, 1, 1) if m.dim() else m)
        return _scaled(y, scale)

    def extract(self) -> nn.BatchNorm2d:
        c = current_int(self.num_features, "num_features")
        out = nn.BatchNorm2d(c, self.eps, self.momentum, self.affine, self.track_running_stats)
        if self.affine:
            out.weight, out.bias = copy_param(self.weight[:c]), copy_param(self.bias[:c])
        if self.track_running_stats:
            out.running_mean.copy_(self.running_mean[:c])
            out.running_var.copy_(self.running_var[:c])
            out.num_batches_tracked.copy_(self.num_batches_tracked)
        return out


class LayerNorm(Searchable):
    """``nn.LayerNorm`` over the last dimension, whose size may be a choice."""

    def __init__(self, normalized_shape: Size, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.normalized_shape, self.eps = normalized_shape, eps
        n = max_int(normalized_shape, "LayerNorm normalized_shape")
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def search_values(self) -> dict[str, Any]:
        return {"normalized_shape": self.normalized_shape}

    def active_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the active subnet."""
        d = current_int(self.normalized_shape, "normalized_shape")
        return self.weight[:d], None if self.bias is None else self.bias[:d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, (self.normalized_shape,), "LayerNorm normalized_shape")
        if plan is not None:
            return self._mixed_forward(x, plan)
        w, b = self.active_weights()
        _check_dim(x, -1, w.shape[0], "LayerNorm", "normalized_shape")
        return F.layer_norm(x, (w.shape[0],), w, b, self.eps)

    def _mixed_forward(self, x: torch.Tensor, plan: MixPlan) -> torch.Tensor:
        # The statistics of a LayerNorm depend on how many features are active, so no single mixed weight
        # reproduces the mixture: compute the exact mixture of the normalised prefixes, sum_d w_d pad(LN_d(x[:d])),
        # whose affine part is the superposed weight/bias. With one-hot weights it equals the sliced LayerNorm.
        (d_max,) = plan.sizes
        _check_dim(x, -1, d_max, "LayerNorm (superposed)", "normalized_shape")
        scale = plan.scale(x.device)
        if not plan.mixed:
            w, b = self.weight[:d_max], None if self.bias is None else self.bias[:d_max]
            return F.layer_norm(x, (d_max,), _scaled(w, scale), _scaled(b, scale), self.eps)
        out = 0
        for (d,), p in plan.groups((0,), x.device):
            b = None if self.bias is None else self.bias[:d]
            out = out + p * _pad_last(F.layer_norm(x[..., :d], (d,), self.weight[:d], b, self.eps), d_max)
        return _scaled(out, scale)

    def extract(self) -> nn.LayerNorm:
        w, b = self.active_weights()
        out = nn.LayerNorm(w.shape[0], eps=self.eps, bias=b is not None)
        out.weight, out.bias = copy_param(w), copy_param(b)
        return out


class Embedding(Searchable):
    """``nn.Embedding`` whose embedding dim may be a choice (slices ``weight[:, :dim]``)."""

    def __init__(self, num_embeddings: int, embedding_dim: Size) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.randn(num_embeddings, max_int(embedding_dim, "Embedding dim")))

    def search_values(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim}

    def active_weights(self) -> torch.Tensor:
        """The active embedding table."""
        return self.weight[:, : current_int(self.embedding_dim, "embedding_dim")]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, (self.embedding_dim,), "Embedding dim")
        if plan is not None:
            (d_max,) = plan.sizes
            if plan.mixed and plan.mode == "outputs":
                out = 0
                for (d,), p in plan.groups((0,), idx.device):
                    out = out + p * _pad_last(F.embedding(idx, self.weight[:, :d]), d_max)
                return _scaled(out, plan.scale(idx.device))
            w = self.weight[:, :d_max]
            if plan.mixed:
                w = w * plan.mask((None, 0), None, idx.device)
            return F.embedding(idx, _scaled(w, plan.scale(idx.device)))
        return F.embedding(idx, self.active_weights())

    def extract(self) -> nn.Embedding:
        w = self.active_weights()
        out = nn.Embedding(w.shape[0], w.shape[1])
        out.weight = copy_param(w)
        return out


class PositionalEmbedding(Searchable):
    """A learned position embedding added to ``(batch, length, dim)`` inputs; dim may be a choice."""

    def __init__(self, length: int, dim: Size) -> None:
        super().__init__()
        self.length, self.dim = length, dim
        self.weight = nn.Parameter(torch.empty(length, max_int(dim, "PositionalEmbedding dim")))
        nn.init.normal_(self.weight, std=0.02)

    def search_values(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def active_weights(self) -> torch.Tensor:
        """The active position table."""
        return self.weight[:, : current_int(self.dim, "dim")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.length:
            raise ValueError(f"sequence length {t} exceeds the {self.length} learned positions")
        plan = mix_plan(self, (self.dim,), "PositionalEmbedding dim")
        if plan is not None:
            (d_max,) = plan.sizes
            _check_dim(x, -1, d_max, "PositionalEmbedding (superposed)", "dim")
            scale = plan.scale(x.device)
            if plan.mixed and plan.mode == "outputs":
                out = 0
                for (d,), p in plan.groups((0,), x.device):
                    out = out + p * _pad_last(x[..., :d] + self.weight[:t, :d], d_max)
                return _scaled(out, scale)
            w = self.weight[:t, :d_max]
            if plan.mixed:
                w = w * plan.mask((None, 0), None, x.device)
            return x + _scaled(w, scale)
        w = self.active_weights()
        _check_dim(x, -1, w.shape[1], "PositionalEmbedding", "dim")
        return x + w[:t]

    def extract(self) -> plain.PositionalEmbedding:
        w = self.active_weights()
        out = plain.PositionalEmbedding(w.shape[0], w.shape[1])
        out.weight = copy_param(w)
        return out


class ClassToken(Searchable):
    """A learned class token prepended to ``(batch, length, dim)`` inputs; dim may be a choice."""

    def __init__(self, dim: Size) -> None:
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(1, 1, max_int(dim, "ClassToken dim")))
        nn.init.normal_(self.weight, std=0.02)

    def search_values(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def active_weights(self) -> torch.Tensor:
        """The active token."""
        return self.weight[:, :, : current_int(self.dim, "dim")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, (self.dim,), "ClassToken dim")
        if plan is not None:
            (d_max,) = plan.sizes
            _check_dim(x, -1, d_max, "ClassToken (superposed)", "dim")
            w = self.weight[:, :, :d_max]
            if plan.mixed:
                w = w * plan.mask((None, None, 0), None, x.device)
            w = _scaled(w, plan.scale(x.device))
            return torch.cat([w.expand(x.shape[0], -1, -1), x], dim=1)
        w = self.active_weights()
        _check_dim(x, -1, w.shape[-1], "ClassToken", "dim")
        return torch.cat([w.expand(x.shape[0], -1, -1), x], dim=1)

    def extract(self) -> plain.ClassToken:
        w = self.active_weights()
        out = plain.ClassToken(w.shape[-1])
        out.weight = copy_param(w)
        return out


def attention(embed_dim: Size, num_heads: Size, head_dim: int, causal: bool, bias: bool = True) -> plain.SelfAttention:
    """Entangled multi-head self-attention: q/k/v project ``embed_dim -> num_heads * head_dim``.

    Head size is fixed; the number of heads selects a prefix of heads in q, k, v and the output
    projection. Built from entangled `Linear` layers, so slicing (and superposition) works per projection.
    """
    width = num_heads * head_dim
    q, k, v = (Linear(embed_dim, width, bias) for _ in range(3))
    return plain.SelfAttention(q, k, v, Linear(width, embed_dim, bias), head_dim=head_dim, causal=causal)
