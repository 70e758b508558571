"""Searchable layers for converted models: a Conv2d with every ``nn.Conv2d`` option, and depth containers.

A converted model keeps its own ``forward`` code; only its layers are swapped. The depth containers therefore
behave like the ``nn.Sequential`` / ``nn.ModuleList`` they replace, except that iterating (or ``len``) sees only
the first ``depth`` blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..space import Conv2d as _Conv2d
from ..space import Embedding as _Embedding
from ..space import Linear as _Linear
from ..space.base import Kind, Searchable, copy_param, extract_module
from ..space.choice import Value, current_int, max_int
from ..space.layers import _check_dim, prefix
from ..space.superposition import mix_plan, pad_last, superposed


class Conv2d(_Conv2d):
    """The entangled `supernet.Conv2d` with the full ``nn.Conv2d`` geometry of the layer it replaces
    (rectangular kernel, per-axis stride/padding/dilation, ``"same"`` padding); kernel size is not searched."""

    def __init__(self, conv: nn.Conv2d, in_channels: Any, out_channels: Any, depthwise: bool) -> None:
        kh, kw = conv.kernel_size
        super().__init__(in_channels, out_channels, kh, 1, 0, conv.bias is not None, depthwise)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.kernel = (kh, kw)
        self.weight = conv.weight
        self.bias = conv.bias

    def _conv_args(self, sizes: Sequence[int]) -> tuple[Any, int]:
        return self.padding, (sizes[1] if self.depthwise else 1)

    def _conv(self, x: torch.Tensor, sizes: Sequence[int], params: Sequence[torch.Tensor | None]) -> torch.Tensor:
        c_in, c_out, _ = sizes
        padding, groups = self._conv_args(sizes)
        n = c_out if self.depthwise else c_in
        x = x if x.shape[1] == n else x.narrow(1, 0, n)
        return F.conv2d(x, params[0], params[1], self.stride, padding, self.dilation, groups)

    def extract(self) -> nn.Conv2d:
        w, b = self.active_weights()
        c_in, c_out, _ = self.active()
        padding, groups = self.conv_args()
        out = nn.Conv2d(c_in, c_out, self.kernel, self.stride, padding, self.dilation, groups, bias=b is not None,
                        device=w.device, dtype=w.dtype)
        out.weight, out.bias = copy_param(w), copy_param(b)
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel}, stride={self.stride}, "
                f"padding={self.padding}" + (", depthwise" if self.depthwise else ""))


class Conv1D(_Linear):
    """The entangled `supernet.Linear` for a transposed linear layer, Hugging Face's ``Conv1D`` (GPT-2): the
    weight is ``(in_features, out_features)`` and a subnet slices ``weight[:in, :out]``. It holds the layer's
    own tensors and extracts to the layer's own class."""

    def __init__(self, layer: nn.Module, in_features: Any, out_features: Any) -> None:
        super().__init__(in_features, out_features, bias=getattr(layer, "bias", None) is not None)
        self.weight = layer.weight
        self.bias = layer.bias
        self._cls = type(layer)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight ``(in, out)`` and bias for ``(out_features, in_features)``."""
        o, i = sizes
        return self.weight[:i, :o], None if self.bias is None else self.bias[:o]

    @staticmethod
    def _run(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        shape = (*x.shape[:-1], w.shape[1])
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ w if b is None else torch.addmm(b, x2, w)
        return y.view(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "Conv1D features")
        if plan is None:
            w, b = self.active_weights()
            _check_dim(x, -1, w.shape[0], "Conv1D", "in_features")
            return self._run(x, w, b)
        _check_dim(x, -1, plan.sizes[1], "Conv1D (superposed)", "in_features")
        return superposed(
            plan,
            x.device,
            self.sliced,
            (((1, 0), None), ((0,), None)),
            lambda sizes, params: self._run(prefix(x, -1, sizes[1]), *params),
            lambda y, sizes: pad_last(y, sizes[0]),
        )

    def extract(self) -> nn.Module:  # type: ignore[override]
        """A layer of the replaced class (e.g. ``Conv1D(nf=out, nx=in)``) with the active slice of the weights."""
        w, b = self.active_weights()
        out = self._cls.__new__(self._cls)
        nn.Module.__init__(out)
        out.nf, out.nx = w.shape[1], w.shape[0]
        out.weight, out.bias = copy_param(w), copy_param(b)
        return out

    def extra_repr(self) -> str:
        return f"nx={self.in_features}, nf={self.out_features} (transposed linear)"


class Embedding(_Embedding):
    """The entangled `supernet.Embedding` with ``nn.Embedding``'s ``padding_idx`` (whose row gets no gradient);
    it holds the layer's own table."""

    def __init__(self, emb: nn.Embedding, embedding_dim: Any) -> None:
        super().__init__(emb.num_embeddings, embedding_dim)
        self.weight = emb.weight
        self.padding_idx = emb.padding_idx

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "Embedding dim")
        if plan is None:
            return F.embedding(idx, self.active_weights(), self.padding_idx)
        return superposed(
            plan,
            idx.device,
            self.sliced,
            (((None, 0), None),),
            lambda sizes, params: F.embedding(idx, params[0], self.padding_idx),
            lambda y, sizes: pad_last(y, sizes[0]),
        )

    def extract(self) -> nn.Embedding:
        w = self.active_weights()
        out = nn.Embedding(w.shape[0], w.shape[1], padding_idx=self.padding_idx, device=w.device, dtype=w.dtype)
        out.weight = copy_param(w)
        return out

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class _Depth(Searchable):
    """Shared part of the depth containers.

    ``stages`` holds ``(first, run_start, end, depth)``: blocks ``run_start..end-1`` may be dropped from the end
    of the stage ``first..end-1``, of which the first ``depth`` blocks run (a `Choice` or an int).
    """

    stages: list[tuple[int, int, int, Any]]

    def search_values(self) -> dict[str, Any]:
        return {f"depth{i}" if i else "depth": st[3] for i, st in enumerate(self.stages)}

    def value_kind(self, attr: str) -> Kind:
        return "depth"

    def decision_name(self, path: str, attr: str) -> str:
        return f"{path}.{attr}" if path else attr

    def _init_stages(self, stages: Sequence[tuple[int, int, int, Any]]) -> None:
        n = len(self._modules)
        for first, start, end, depth in stages:
            options = depth.possible_values() if isinstance(depth, Value) else [depth]
            if not 0 <= first <= start < end <= n or max_int(depth, "depth") > end - first or min(options) < 1:
                raise ValueError(f"depth options {options} do not fit blocks {first}..{end - 1} of {n}")
        self.stages = list(stages)

    def active_names(self) -> list[str]:
        """Names of the blocks that run under the active arch."""
        names = list(self._modules)
        keep = [True] * len(names)
        for first, start, end, depth in self.stages:
            if mix_plan(self, (depth,), "depth") is not None:
                raise NotImplementedError(
                    "a converted model's depth choice cannot be mixed (superposition); use a sampling strategy"
                )
            d = current_int(depth, "depth")
            for i in range(start, end):
                keep[i] = i - first < d
        return [n for n, k in zip(names, keep, strict=True) if k]

    def _active(self) -> list[nn.Module]:
        return [self._modules[n] for n in self.active_names()]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self._active())

    def __len__(self) -> int:
        return len(self.active_names())


class DepthSequential(_Depth, nn.Sequential):
    """An ``nn.Sequential`` that skips the dropped blocks of its stages."""

    def __init__(self, seq: nn.Sequential, stages: Sequence[tuple[int, int, int, Any]]) -> None:
        nn.Sequential.__init__(self)
        for name, m in seq._modules.items():
            self.add_module(name, m)
        self._init_stages(stages)
        self.train(seq.training)

    def forward(self, x: Any) -> Any:
        for block in self._active():
            x = block(x)
        return x

    def extract(self) -> nn.Sequential:
        out = nn.Sequential()
        for name in self.active_names():  # original names: paths (and tied weights) stay the same
            out.add_module(name, extract_module(self._modules[name]))
        return out


class DepthModuleList(_Depth, nn.ModuleList):
    """An ``nn.ModuleList`` whose iteration and ``len`` see only the blocks that run."""

    def __init__(self, blocks: nn.ModuleList, stages: Sequence[tuple[int, int, int, Any]]) -> None:
        nn.ModuleList.__init__(self)
        for name, m in blocks._modules.items():
            self.add_module(name, m)
        self._init_stages(stages)
        self.train(blocks.training)

    def extract(self) -> nn.ModuleList:
        return nn.ModuleList([extract_module(m) for m in self._active()])
