"""Searchable layers for converted models: a Conv2d with every ``nn.Conv2d`` option, ``nn.MultiheadAttention``
with a choice of heads, and depth containers.

A converted model keeps its own ``forward`` code; only its layers are swapped. The depth containers therefore
behave like the ``nn.Sequential`` / ``nn.ModuleList`` they replace, except that iterating (or ``len``) sees only
the first ``depth`` blocks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import blocks
from ..space import Conv2d as _Conv2d
from ..space import Embedding as _Embedding
from ..space import Linear as _Linear
from ..space.base import Kind, Searchable, copy_param, extract_module
from ..space.choice import Value, current_int, max_int
from ..space.layers import _check_dim, prefix
from ..space.superposition import mix_plan, pad_last, scaled, superposed


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


def conv1d_like(cls: type[nn.Module], weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A layer of Hugging Face's ``Conv1D`` class ``cls`` (a transposed linear: ``weight`` is ``(nx, nf)``) holding
    copies of ``weight`` and ``bias``, built without its ``__init__`` (which would draw random weights)."""
    out = cls.__new__(cls)
    nn.Module.__init__(out)
    out.nf, out.nx = weight.shape[1], weight.shape[0]
    out.weight, out.bias = copy_param(weight), copy_param(bias)
    return out


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
        return conv1d_like(self._cls, *self.active_weights())

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


class MultiheadAttention(Searchable):
    """The entangled ``nn.MultiheadAttention`` (q, k, v of one width: ``_qkv_same_embed_dim``): it holds the
    layer's own tensors and reads three sizes, the input width (columns of the q/k/v projections), the output
    width (rows of the output projection) and the number of heads. ``h`` heads are the first ``h`` of the layer:
    rows ``[0, hD)``, ``[E, E + hD)``, ``[2E, 2E + hD)`` of ``in_proj_weight`` and the first ``hD`` columns of
    ``out_proj.weight`` (``D = E // num_heads``, fixed).

    The forward takes ``nn.MultiheadAttention``'s arguments and returns its ``(output, weights)``; a 3-D
    ``attn_mask`` holds ``batch * num_heads`` masks for the layer's full head count (``num_heads`` stays the
    original count, for code that builds masks from it), of which the active heads' are used.
    """

    value_kinds: ClassVar[dict[str, Kind]] = {"in_features": "width", "out_features": "width", "heads": "width"}

    def __init__(self, mha: nn.MultiheadAttention, in_features: Any, out_features: Any, heads: Any) -> None:
        super().__init__()
        if not mha._qkv_same_embed_dim:
            raise ValueError("only an nn.MultiheadAttention whose kdim and vdim equal embed_dim can be converted")
        self.in_features, self.out_features, self.heads = in_features, out_features, heads
        e, h = mha.embed_dim, mha.num_heads
        if max_int(in_features, "in_features") > e or max_int(out_features, "out_features") > e:
            raise ValueError(f"the widths of a converted MultiheadAttention cannot exceed its embed_dim {e}")
        if max_int(heads, "heads") > h or min(_possible(heads)) < 1:
            raise ValueError(f"head counts {_possible(heads)} must lie in 1..{h}")
        # nn.MultiheadAttention's attributes (the full sizes), read by torch's transformer layers and user code.
        # _qkv_same_embed_dim=False: torch's fused kernels (nn.TransformerEncoderLayer's fast path) read the
        # full (3E, E) in_proj_weight and would bypass the slicing.
        self.embed_dim, self.num_heads, self.head_dim = e, h, mha.head_dim
        self.kdim, self.vdim = mha.kdim, mha.vdim
        self._qkv_same_embed_dim = False
        self.batch_first, self.dropout, self.add_zero_attn = mha.batch_first, mha.dropout, mha.add_zero_attn
        self.in_proj_weight = mha.in_proj_weight
        self.register_parameter("in_proj_bias", mha.in_proj_bias)
        for name in ("q_proj_weight", "k_proj_weight", "v_proj_weight"):
            self.register_parameter(name, None)
        self.out_proj = mha.out_proj
        self.register_parameter("bias_k", mha.bias_k)
        self.register_parameter("bias_v", mha.bias_v)
        #: set by `sort_channels` when it reorders the heads: per-head masks, made for the layer's original head
        #: order, would then mask the wrong heads.
        self.heads_reordered = False
        self.train(mha.training)

    def search_values(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features, "heads": self.heads}

    def slice_values(self) -> tuple[Any, ...]:
        return (self.in_features, self.out_features, self.heads)

    def active(self) -> tuple[int, int, int]:
        """``(in_features, out_features, heads)`` under the active arch."""
        return (current_int(self.in_features, "in_features"), current_int(self.out_features, "out_features"),
                current_int(self.heads, "heads"))

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor | None, ...]:
        """``(w_q, w_k, w_v, b_q, b_k, b_v, out_weight, out_bias, bias_k, bias_v)`` for
        ``(in_features, out_features, heads)`` (views; None where the layer has no such tensor)."""
        i, o, h = sizes
        e, n = self.embed_dim, h * self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        ws = tuple(w[s * e : s * e + n, :i] for s in range(3))
        bs = (None,) * 3 if b is None else tuple(b[s * e : s * e + n] for s in range(3))
        wo, bo = self.out_proj.weight[:o, :n], None if self.out_proj.bias is None else self.out_proj.bias[:o]
        kv = tuple(None if t is None else t[..., :n] for t in (self.bias_k, self.bias_v))
        return (*ws, *bs, wo, bo, *kv)

    def _run(self, sizes: Sequence[int], query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
             kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        i, _, h = sizes
        wq, wk, wv, bq, bk, bv, wo, bo, bias_k, bias_v = self.sliced(sizes)
        query, key, value = (prefix(x, -1, i) for x in (query, key, value))
        return blocks.multi_head_attention(
            query, key, value, heads=h, head_dim=self.head_dim, in_weights=(wq, wk, wv),
            in_biases=None if bq is None else (bq, bk, bv), out_weight=wo, out_bias=bo, bias_k=bias_k,
            bias_v=bias_v, add_zero_attn=self.add_zero_attn, dropout=self.dropout, training=self.training,
            batch_first=self.batch_first, mask_heads=self.num_heads, **kwargs,
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.heads_reordered and attn_mask is not None and attn_mask.dim() == 3:
            raise ValueError(
                "this attention layer's heads were reordered by sort_channels, so per-head (3-D) attention masks no "
                "longer match its heads: convert with an example input that passes such a mask (its heads then keep "
                "their order) or use a 2-D mask"
            )
        kwargs = {"key_padding_mask": key_padding_mask, "need_weights": need_weights, "attn_mask": attn_mask,
                  "average_attn_weights": average_attn_weights, "is_causal": is_causal}
        plan = mix_plan(self, self.slice_values(), "MultiheadAttention sizes")
        if plan is None:
            sizes = self.active()
            for x in (query, key, value):
                _check_dim(x, -1, sizes[0], "MultiheadAttention", "in_features")
            return self._run(sizes, query, key, value, kwargs)
        for x in (query, key, value):
            _check_dim(x, -1, plan.sizes[0], "MultiheadAttention (superposed)", "in_features")
        # Attention is not linear in its weights, so no mixed weight gives the mixture: mix the outputs of every
        # size combination (zero-padded to the largest), as LayerNorm does.
        combos = plan.groups(tuple(range(3)), query.device) if plan.mixed else [(plan.sizes, None)]
        out: Any = 0
        weights: Any = None
        for sizes, p in combos:
            y, w = self._run(sizes, query, key, value, kwargs)
            y = pad_last(y, plan.sizes[1])
            out = out + (y if p is None else p * y)
            if w is not None:
                if not average_attn_weights and w.shape[-3] != plan.sizes[2]:  # per-head weights: pad the heads
                    w = F.pad(w, (0, 0, 0, 0, 0, plan.sizes[2] - w.shape[-3]))
                weights = (0 if weights is None else weights) + (w if p is None else p * w)
        return scaled(out, plan.scale(query.device)), weights

    def extract(self) -> blocks.MultiheadAttention:
        """A `supernet.blocks.MultiheadAttention` with the active slices (parameter names as in
        ``nn.MultiheadAttention``). Always that block, even with every head: an ``nn.MultiheadAttention`` would
        run torch's fused inference path, whose FLOPs torch's counter does not see and whose latency would be
        compared with the unfused path of the smaller subnets."""
        sizes = self.active()
        i, o, h = sizes
        wq, wk, wv, bq, bk, bv, wo, bo, bias_k, bias_v = self.sliced(sizes)
        w = self.in_proj_weight
        out = blocks.MultiheadAttention(
            i, o, h, self.head_dim, bq is not None, bias_k is not None, self.add_zero_attn, self.dropout,
            self.batch_first, mask_heads=self.num_heads,
        ).to(device=w.device, dtype=w.dtype)
        out.in_proj_weight = copy_param(torch.cat([wq, wk, wv]))
        out.in_proj_bias = None if bq is None else copy_param(torch.cat([bq, bk, bv]))
        out.out_proj.weight, out.out_proj.bias = copy_param(wo), copy_param(bo)
        out.bias_k, out.bias_v = copy_param(bias_k), copy_param(bias_v)
        return out

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, heads={self.heads}, "
                f"head_dim={self.head_dim}, batch_first={self.batch_first}")


def _possible(value: Any) -> list[Any]:
    return value.possible_values() if isinstance(value, Value) else [value]


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
