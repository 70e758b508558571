"""Head search for Hugging Face attention layers: GPT-2's ``GPT2Attention`` and BERT's ``BertSelfAttention``.

The layer keeps running its own ``forward`` (eager or sdpa attention, masks, causal masking, key/value cache): it
reshapes the projections with ``(..., -1, head_dim)``, so the head count follows the width of the projections.
The converter therefore only

* swaps the projections for entangled layers whose outputs are the first ``h`` heads (``h * head_dim``
  channels): BERT's ``query``/``key``/``value`` (`supernet.Linear`), GPT-2's packed ``c_attn`` (`QKVConv1D`:
  three blocks of ``embed_dim`` columns, the first ``h * head_dim`` of each) and ``c_proj`` (its input rows);
* gives the layer itself a searchable class (a subclass of the user's class, so ``isinstance`` checks hold): it
  holds the ``heads`` choice, keeps GPT-2's ``split_size`` (read by ``forward`` to split q, k, v) at the active
  ``h * head_dim``, and extracts to the user's class with ``num_heads``/``split_size``/``embed_dim`` (GPT-2) or
  ``num_attention_heads``/``all_head_size`` (BERT) set for ``h`` heads.

In the supernet, ``num_heads`` and friends keep the original (full) counts, as a converted
``nn.MultiheadAttention`` does. A superposed (mixed) head count is refused: the layer's code splits by one size.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..space import Linear
from ..space.base import Kind, Searchable, extract_module
from ..space.choice import Value, current_int, max_int
from ..space.layers import _check_dim, prefix
from ..space.superposition import mix_plan, scaled
from .hf import attention_heads
from .layers import Conv1D, conv1d_like


def _refuse_mixed_heads(plan: Any, index: int) -> None:
    if plan is not None and len(plan.distinct[index]) > 1:
        raise NotImplementedError(
            "the head count of a converted Hugging Face attention layer cannot be mixed (superposition): its own "
            "forward splits the projections by one size; use a sampling strategy"
        )


class QKVConv1D(Searchable):
    """GPT-2's packed query/key/value projection (a Hugging Face ``Conv1D``, weight ``(in, 3 * embed_dim)``) with
    a searchable input width and head count: ``h`` heads are columns ``[s * E, s * E + h * D)`` for ``s`` = q, k,
    v. It holds the layer's own tensors and extracts to the layer's own class."""

    value_kinds: ClassVar[dict[str, Kind]] = {"in_features": "width", "heads": "width"}

    def __init__(self, layer: nn.Module, in_features: Any, heads: Any, head_dim: int) -> None:
        super().__init__()
        self.weight = layer.weight
        self.bias = layer.bias
        self.in_features, self.heads, self.head_dim = in_features, heads, head_dim
        self.embed_dim = layer.weight.shape[1] // 3
        self._cls = type(layer)
        if max_int(in_features, "in_features") > layer.weight.shape[0] or max_int(heads, "heads") * head_dim > (
            self.embed_dim
        ):
            raise ValueError("the sizes of a converted q/k/v projection cannot exceed the layer's")

    def search_values(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "heads": self.heads}

    def slice_values(self) -> tuple[Any, ...]:
        return (self.in_features, self.heads)

    def sliced(self, sizes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight ``(in, 3 * h * D)`` and bias for ``(in_features, heads)``: the first ``h`` heads of q, k, v."""
        i, h = sizes
        e, n = self.embed_dim, h * self.head_dim
        w, b = self.weight[:i], self.bias
        if n == e:
            return w, b
        cols = [slice(s * e, s * e + n) for s in range(3)]
        return torch.cat([w[:, c] for c in cols], 1), None if b is None else torch.cat([b[c] for c in cols])

    def active(self) -> tuple[int, int]:
        """``(in_features, heads)`` under the active arch."""
        return current_int(self.in_features, "in_features"), current_int(self.heads, "heads")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = mix_plan(self, self.slice_values(), "q/k/v projection sizes")
        if plan is None:
            sizes = self.active()
            _check_dim(x, -1, sizes[0], "Conv1D (q/k/v)", "in_features")
            return Conv1D._run(x, *self.sliced(sizes))
        _refuse_mixed_heads(plan, 1)
        _check_dim(x, -1, plan.sizes[0], "Conv1D (q/k/v, superposed)", "in_features")
        # Linear in its weights: mixing the outputs of the input widths is mixing the weights.
        combos = plan.groups((0, 1), x.device) if plan.mixed else [(plan.sizes, None)]
        out: Any = 0
        for sizes, p in combos:
            y = Conv1D._run(prefix(x, -1, sizes[0]), *self.sliced(sizes))
            out = out + (y if p is None else p * y)
        return scaled(out, plan.scale(x.device))

    def extract(self) -> nn.Module:
        """A layer of the replaced class (``Conv1D(nf=3 * h * D, nx=in)``) with the active heads' columns."""
        return conv1d_like(self._cls, *self.sliced(self.active()))

    def extra_repr(self) -> str:
        return f"nx={self.in_features}, heads={self.heads}, head_dim={self.head_dim} (packed q/k/v)"


class _SearchableHeads(Searchable):
    """Mixin of the searchable attention classes: the ``heads`` choice and extraction to the user's class."""

    value_kinds: ClassVar[dict[str, Kind]] = {"heads": "width"}
    #: the user's attention class (what `extract` gives back)
    _hf_base: ClassVar[type[nn.Module]]
    heads: Any

    def search_values(self) -> dict[str, Any]:
        return {"heads": self.heads}

    def active_heads(self) -> int:
        """The number of heads under the active arch."""
        _refuse_mixed_heads(mix_plan(self, (self.heads,), "heads"), 0)
        return current_int(self.heads, "heads")

    def head_attrs(self, heads: int) -> dict[str, int]:
        """The user class's attributes that count heads or head channels, for ``heads`` heads."""
        raise NotImplementedError

    def extract(self) -> nn.Module:
        """A copy of the layer of the user's class with the active heads (its projections extracted)."""
        h = self.active_heads()
        shallow = copy.copy(self)
        shallow.__class__ = self._hf_base
        for key in ("heads", "_mix_plans"):
            shallow.__dict__.pop(key, None)
        out = extract_module(shallow)
        for name, value in self.head_attrs(h).items():
            setattr(out, name, value)
        return out


class _GPT2Heads(_SearchableHeads):
    @property
    def split_size(self) -> int:
        """The width of each of q, k, v under the active arch (``GPT2Attention.forward`` splits by it)."""
        return self.active_heads() * self.head_dim

    def head_attrs(self, heads: int) -> dict[str, int]:
        n = heads * self.head_dim
        # embed_dim is the head width too in GPT-2 (num_heads * head_dim == embed_dim), and forward never reads it.
        return {"num_heads": heads, "split_size": n, "embed_dim": n}


class _BertHeads(_SearchableHeads):
    def head_attrs(self, heads: int) -> dict[str, int]:
        return {"num_attention_heads": heads, "all_head_size": heads * self.attention_head_size}


_MIXINS: dict[str, type[_SearchableHeads]] = {"gpt2_attn": _GPT2Heads, "bert_attn": _BertHeads}
_CLASSES: dict[type, type] = {}


def _searchable_class(base: type[nn.Module], kind: str) -> type:
    """``Searchable<Base>``: the mixin of ``kind`` over the user's class (made once, and named in this module
    so that pickling finds it)."""
    cls = _CLASSES.get(base)
    if cls is None:
        name = f"Searchable{base.__name__}"
        cls = type(name, (_MIXINS[kind], base), {"_hf_base": base, "__module__": __name__, "__qualname__": name})
        _CLASSES[base] = cls
        globals().setdefault(name, cls)
    return cls


def _linear(layer: nn.Linear, in_features: Any, out_features: Any) -> Linear:
    new = Linear(in_features, out_features, bias=layer.bias is not None)
    # The model's own tensors (same objects: tied weights stay tied, device and dtype stay).
    new._parameters["weight"] = layer.weight
    new._parameters["bias"] = layer.bias
    return new.train(layer.training)


def make_searchable(m: nn.Module, kind: str, in_features: Any, heads: Any, out_features: Any) -> nn.Module:
    """Make the attention layer ``m`` (of `supernet.converting.hf.attention_kind` ``kind``) read the input width,
    head count and (GPT-2) output width given (ints or choices), in place; returns ``m``."""
    n_heads, d = attention_heads(m)
    if max_int(heads, "heads") > n_heads or min(heads.possible_values() if isinstance(heads, Value) else [heads]) < 1:
        raise ValueError(f"head counts must lie in 1..{n_heads}")
    width = heads * d
    if kind == "gpt2_attn":
        if isinstance(heads, int):
            m.c_attn = Conv1D(m.c_attn, in_features, 3 * width).train(m.training)
        else:
            m.c_attn = QKVConv1D(m.c_attn, in_features, heads, d).train(m.training)
        if not (isinstance(width, int) and isinstance(out_features, int)):
            m.c_proj = Conv1D(m.c_proj, width, out_features).train(m.training)
    else:
        for name in ("query", "key", "value"):
            setattr(m, name, _linear(getattr(m, name), in_features, width))
    if not isinstance(heads, int):
        m.__class__ = _searchable_class(type(m), kind)
        m.__dict__.pop("split_size", None)  # GPT-2: the class's property gives the active width
        m.heads = heads
    return m
