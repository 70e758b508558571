"""Weight-entangled layers: every option is a prefix slice of the largest weight tensor.

Each layer allocates the weight of its largest configuration once. Under the active arch it slices the
leading rows/columns (and, for kernel sizes, the centred window of the largest kernel), so all options
share and train the same storage. Under `superposition` each layer describes how to slice its parameters and
how to run on a slice, and `superposed` mixes (see `supernet.space.superposition`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import blocks
from .base import Kind, Searchable, copy_param
from .choice import current_int, max_int
from .superposition import mix_plan, pad_channels, pad_last, superposed

Size = Any  # an int, a Choice, or a value derived from choices


def prefix(x: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """The first ``n`` entries of ``x`` along ``dim``; ``x`` itself when it has exactly ``n`` (no slicing, so no
    slice in the backward pass: the plain path stays as cheap as a torch layer)."""
    return x if x.shape[dim] == n else x.narrow(dim, 0, n)


def _check_dim(x: torch.Tensor, dim: int, expected: int, layer: str, what: str) -> None:
    if x.shape[dim] != expected:
        raise ValueError(
            f"{layer} expected {expected} {what} under the active arch, got input with {x.shape[dim]}: "
            f"pass the producing layer's choice as this layer's {what}"
        )


class Linear(Searchable):
    """``nn.Linear`` whose in and out features may be choices (slices ``weight[:out, :in]``)."""

    value_kinds: ClassVar[dict[str, Kind]] = {"in_features": "width", "out_features": "width"}

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

    def slice_values(self) -> tuple[Any, ...]:
        return (self.out_features, self.in_features)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias for ``(out_features, in_features)``."""
        o, i = sizes
        return self.weight[:o, :i], None if self.bias is None else self.bias[:o]

    def active_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the active subnet."""
        i, o = self.active()
        return self.sliced((o, i))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "Linear features")
        if plan is None:
            w, b = self.active_weights()
            _check_dim(x, -1, w.shape[1], "Linear", "in_features")
            return F.linear(x, w, b)
        _check_dim(x, -1, plan.sizes[1], "Linear (superposed)", "in_features")
        return superposed(
            plan,
            x.device,
            self.sliced,
            (((0, 1), None), ((0,), None)),
            lambda sizes, params: F.linear(prefix(x, -1, sizes[1]), *params),
            lambda y, sizes: pad_last(y, sizes[0]),
        )

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

    value_kinds: ClassVar[dict[str, Kind]] = {
        "in_channels": "width",
        "out_channels": "width",
        "kernel_size": "kernel",
    }

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

    def slice_values(self) -> tuple[Any, ...]:
        return (self.in_channels, self.out_channels, self.kernel_size)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias for ``(in_channels, out_channels, kernel_size)`` (the centred kernel window)."""
        c_in, c_out, k = sizes
        w = self.weight[:c_out, : 1 if self.depthwise else c_in]
        if k != self.max_kernel:
            s = (self.max_kernel - k) // 2
            w = w[:, :, s : s + k, s : s + k]
        return w, None if self.bias is None else self.bias[:c_out]

    def _active_sizes(self) -> tuple[int, int, int]:
        c_in, c_out, k = self.active()
        if self.depthwise and c_in != c_out:
            raise ValueError(f"depthwise Conv2d got {c_in} in and {c_out} out channels; they must match")
        return c_in, c_out, k

    def active_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the active subnet."""
        return self.sliced(self._active_sizes())

    def conv_args(self) -> tuple[int, int]:
        """``(padding, groups)`` under the active arch."""
        return self._conv_args(self.active())

    def _conv_args(self, sizes: Sequence[int]) -> tuple[int, int]:
        _, c_out, k = sizes
        return (k // 2 if self.padding is None else self.padding), (c_out if self.depthwise else 1)

    def _conv(self, x: torch.Tensor, sizes: Sequence[int], params: Sequence[torch.Tensor | None]) -> torch.Tensor:
        c_in, c_out, _ = sizes
        padding, groups = self._conv_args(sizes)
        x = prefix(x, 1, c_out if self.depthwise else c_in)
        return F.conv2d(x, params[0], params[1], self.stride, padding, 1, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "Conv2d sizes")
        if plan is None:
            sizes = self._active_sizes()
            _check_dim(x, 1, sizes[0], "Conv2d", "in_channels")
            return self._conv(x, sizes, self.sliced(sizes))
        i_max, o_max, _ = plan.sizes
        _check_dim(x, 1, i_max, "Conv2d (superposed)", "in_channels")
        if self.depthwise and i_max != o_max:
            raise ValueError(f"depthwise Conv2d got {i_max} in and {o_max} out channels; they must match")
        if self.padding is not None and len(plan.distinct[2]) > 1:
            raise ValueError(
                "a Conv2d whose kernel size is mixed needs padding=None (kernel // 2) so every kernel gives the "
                f"same output size; got padding={self.padding}"
            )
        return superposed(
            plan,
            x.device,
            self.sliced,
            (((1, None if self.depthwise else 0, 2, 2), 2), ((1,), None)),
            lambda sizes, params: self._conv(x, sizes, params),
            lambda y, sizes: pad_channels(y, sizes[1]),
        )

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

    value_kinds: ClassVar[dict[str, Kind]] = {"num_features": "width"}

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

    def slice_values(self) -> tuple[Any, ...]:
        return (self.num_features,)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Affine weight and bias (None without affine) for ``(num_features,)``."""
        (c,) = sizes
        return None if self.weight is None else self.weight[:c], None if self.bias is None else self.bias[:c]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "BatchNorm2d num_features")
        if plan is None:
            c = current_int(self.num_features, "num_features")
            _check_dim(x, 1, c, "BatchNorm2d", "num_features")
            return self._norm(x, (c,), self.sliced((c,)))
        # Normalisation is per channel, so mixing the outputs of every channel count equals one BN over the
        # largest count with the affine parameters (or, without affine, the output) scaled by the channel mask.
        # Running statistics of all those channels are updated from the superposed activations: they belong
        # to no single subnet; recalibrate BN after picking an arch.
        _check_dim(x, 1, plan.sizes[0], "BatchNorm2d (superposed)", "num_features")
        return superposed(
            plan,
            x.device,
            self.sliced,
            (((0,), None), ((0,), None)),
            lambda sizes, params: self._norm(x, sizes, params),
            lambda y, sizes: pad_channels(y, sizes[0]),
            output_mask=None if self.affine else (None, 0, None, None),
        )

    def _norm(self, x: torch.Tensor, sizes: Sequence[int], params: Sequence[torch.Tensor | None]) -> torch.Tensor:
        (c,) = sizes
        use_batch_stats = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        # Slices are views, so the running stats of the active prefix are updated in place.
        return F.batch_norm(
            prefix(x, 1, c),
            None if self.running_mean is None else self.running_mean[:c],
            None if self.running_var is None else self.running_var[:c],
            params[0],
            params[1],
            use_batch_stats,
            self.momentum,
            self.eps,
        )

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

    value_kinds: ClassVar[dict[str, Kind]] = {"normalized_shape": "width"}

    def __init__(self, normalized_shape: Size, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        self.normalized_shape, self.eps = normalized_shape, eps
        n = max_int(normalized_shape, "LayerNorm normalized_shape")
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def search_values(self) -> dict[str, Any]:
        return {"normalized_shape": self.normalized_shape}

    def slice_values(self) -> tuple[Any, ...]:
        return (self.normalized_shape,)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias for ``(normalized_shape,)``."""
        (d,) = sizes
        return self.weight[:d], None if self.bias is None else self.bias[:d]

    def active_weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias of the active subnet."""
        return self.sliced((current_int(self.normalized_shape, "normalized_shape"),))

    def _norm(self, x: torch.Tensor, sizes: Sequence[int], params: Sequence[torch.Tensor | None]) -> torch.Tensor:
        (d,) = sizes
        return F.layer_norm(prefix(x, -1, d), (d,), params[0], params[1], self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "LayerNorm normalized_shape")
        if plan is None:
            w, b = self.active_weights()
            _check_dim(x, -1, w.shape[0], "LayerNorm", "normalized_shape")
            return self._norm(x, w.shape, (w, b))
        # The statistics of a LayerNorm depend on how many features are active, so no single mixed weight
        # reproduces the mixture: compute the exact mixture of the normalised prefixes, sum_d w_d pad(LN_d(x[:d])),
        # whose affine part is the superposed weight/bias. With one-hot weights it equals the sliced LayerNorm.
        _check_dim(x, -1, plan.sizes[0], "LayerNorm (superposed)", "normalized_shape")
        return superposed(
            plan,
            x.device,
            self.sliced,
            (((0,), None), ((0,), None)),
            lambda sizes, params: self._norm(x, sizes, params),
            lambda y, sizes: pad_last(y, sizes[0]),
            exact=True,
        )

    def extract(self) -> nn.LayerNorm:
        w, b = self.active_weights()
        out = nn.LayerNorm(w.shape[0], eps=self.eps, bias=b is not None)
        out.weight, out.bias = copy_param(w), copy_param(b)
        return out


class Embedding(Searchable):
    """``nn.Embedding`` whose embedding dim may be a choice (slices ``weight[:, :dim]``)."""

    value_kinds: ClassVar[dict[str, Kind]] = {"embedding_dim": "width"}

    def __init__(self, num_embeddings: int, embedding_dim: Size) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(torch.randn(num_embeddings, max_int(embedding_dim, "Embedding dim")))

    def search_values(self) -> dict[str, Any]:
        return {"embedding_dim": self.embedding_dim}

    def slice_values(self) -> tuple[Any, ...]:
        return (self.embedding_dim,)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor]:
        """The table for ``(embedding_dim,)``."""
        return (self.weight[:, : sizes[0]],)

    def active_weights(self) -> torch.Tensor:
        """The active embedding table."""
        return self.sliced((current_int(self.embedding_dim, "embedding_dim"),))[0]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "Embedding dim")
        if plan is None:
            return F.embedding(idx, self.active_weights())
        return superposed(
            plan,
            idx.device,
            self.sliced,
            (((None, 0), None),),
            lambda sizes, params: F.embedding(idx, params[0]),
            lambda y, sizes: pad_last(y, sizes[0]),
        )

    def extract(self) -> nn.Embedding:
        w = self.active_weights()
        out = nn.Embedding(w.shape[0], w.shape[1])
        out.weight = copy_param(w)
        return out


class PositionalEmbedding(Searchable):
    """A learned position embedding added to ``(batch, length, dim)`` inputs; dim may be a choice."""

    value_kinds: ClassVar[dict[str, Kind]] = {"dim": "width"}

    def __init__(self, length: int, dim: Size) -> None:
        super().__init__()
        self.length, self.dim = length, dim
        self.weight = nn.Parameter(torch.empty(length, max_int(dim, "PositionalEmbedding dim")))
        nn.init.normal_(self.weight, std=0.02)

    def search_values(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def slice_values(self) -> tuple[Any, ...]:
        return (self.dim,)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor]:
        """The position table (every position) for ``(dim,)``."""
        return (self.weight[:, : sizes[0]],)

    def active_weights(self) -> torch.Tensor:
        """The active position table."""
        return self.sliced((current_int(self.dim, "dim"),))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.length:
            raise ValueError(f"sequence length {t} exceeds the {self.length} learned positions")
        plan = mix_plan(self, self.slice_values(), "PositionalEmbedding dim")
        if plan is None:
            w = self.active_weights()
            _check_dim(x, -1, w.shape[1], "PositionalEmbedding", "dim")
            return x + w[:t]
        _check_dim(x, -1, plan.sizes[0], "PositionalEmbedding (superposed)", "dim")
        return superposed(
            plan,
            x.device,
            lambda sizes: (self.sliced(sizes)[0][:t],),
            (((None, 0), None),),
            lambda sizes, params: prefix(x, -1, sizes[0]) + params[0],
            lambda y, sizes: pad_last(y, sizes[0]),
        )

    def extract(self) -> blocks.PositionalEmbedding:
        w = self.active_weights()
        out = blocks.PositionalEmbedding(w.shape[0], w.shape[1])
        out.weight = copy_param(w)
        return out


class ClassToken(Searchable):
    """A learned class token prepended to ``(batch, length, dim)`` inputs; dim may be a choice."""

    value_kinds: ClassVar[dict[str, Kind]] = {"dim": "width"}

    def __init__(self, dim: Size) -> None:
        super().__init__()
        self.dim = dim
        self.weight = nn.Parameter(torch.empty(1, 1, max_int(dim, "ClassToken dim")))
        nn.init.normal_(self.weight, std=0.02)

    def search_values(self) -> dict[str, Any]:
        return {"dim": self.dim}

    def slice_values(self) -> tuple[Any, ...]:
        return (self.dim,)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor]:
        """The token for ``(dim,)``."""
        return (self.weight[:, :, : sizes[0]],)

    def active_weights(self) -> torch.Tensor:
        """The active token."""
        return self.sliced((current_int(self.dim, "dim"),))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "ClassToken dim")
        if plan is None:
            w = self.active_weights()
            _check_dim(x, -1, w.shape[-1], "ClassToken", "dim")
        else:
            _check_dim(x, -1, plan.sizes[0], "ClassToken (superposed)", "dim")
            # Only the token is mixed: the inputs pass through whatever the mixture weights sum to.
            w = superposed(
                plan,
                x.device,
                self.sliced,
                (((None, None, 0), None),),
                lambda sizes, params: params[0],
                lambda y, sizes: pad_last(y, sizes[0]),
            )
        return torch.cat([w.expand(x.shape[0], -1, -1), x], dim=1)

    def extract(self) -> blocks.ClassToken:
        w = self.active_weights()
        out = blocks.ClassToken(w.shape[-1])
        out.weight = copy_param(w)
        return out


def attention(embed_dim: Size, num_heads: Size, head_dim: int, causal: bool, bias: bool = True) -> blocks.SelfAttention:
    """Entangled multi-head self-attention: q/k/v project ``embed_dim -> num_heads * head_dim``.

    Head size is fixed; the number of heads selects a prefix of heads in q, k, v and the output
    projection. Built from entangled `Linear` layers, so slicing (and superposition) works per projection.
    """
    width = num_heads * head_dim
    q, k, v = (Linear(embed_dim, width, bias) for _ in range(3))
    return blocks.SelfAttention(q, k, v, Linear(width, embed_dim, bias), head_dim=head_dim, causal=causal)
