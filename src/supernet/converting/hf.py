"""Hugging Face ``transformers`` models: what the converter needs to know about them (transformers stays
optional: nothing here imports it; a model from it has already imported it).

* GPT-2's ``transformers.pytorch_utils.Conv1D`` is a linear layer with a transposed weight (``(in, out)``);
  it converts like ``nn.Linear`` (see `supernet.converting.layers.Conv1D`).
* A ``PreTrainedModel`` returns a key/value cache by default; it is analysed with ``use_cache=False`` (the cache
  is not a tensor the analysis follows). The converted model is called as the user calls it.
* GPT-2's ``GPT2Attention`` and BERT's ``BertSelfAttention`` are analysed as one layer each (`attention_kind`),
  so their head count can be searched (see `supernet.converting.hf_attention`): their own ``forward`` reshapes
  the projections with ``(..., -1, head_dim)`` (the head count is inferred) and GPT-2 splits its packed q/k/v
  by ``split_size``, which the searchable layer keeps at the active ``heads * head_dim``.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

from torch import nn


def _class(module: str, name: str) -> type | None:
    """``module.name`` if ``module`` is already imported (never imports it)."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls if isinstance(cls, type) else None


def is_conv1d(m: nn.Module) -> bool:
    """Whether ``m`` is exactly a ``transformers.pytorch_utils.Conv1D`` (GPT-2's transposed linear layer)."""
    cls = _class("transformers.pytorch_utils", "Conv1D")
    return cls is not None and type(m) is cls


def is_pretrained(model: nn.Module) -> bool:
    """Whether ``model`` is a ``transformers.PreTrainedModel``."""
    cls = _class("transformers.modeling_utils", "PreTrainedModel")
    return cls is not None and isinstance(model, cls)


def analysis_inputs(model: nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments to trace and check ``model`` with: for a Hugging Face model whose ``forward``
    takes ``use_cache`` and was not given it, ``use_cache=False`` (no key/value cache in the outputs)."""
    out = dict(inputs)
    if not is_pretrained(model):
        return out
    params = inspect.signature(model.forward).parameters
    if "use_cache" in params and out.get("use_cache") is None:
        out["use_cache"] = False
    return out


#: The attention implementations whose code works for any head count (``config._attn_implementation``).
_HEAD_SEARCH_IMPLEMENTATIONS = ("eager", "sdpa")


def attention_kind(m: nn.Module) -> str | None:
    """``"gpt2_attn"`` for a self-attention ``GPT2Attention``, ``"bert_attn"`` for a ``BertSelfAttention`` (exact
    classes, eager or sdpa attention, the layout their ``__init__`` builds), else None: those are traced through
    as plain code (their heads then stay fixed)."""
    impl = getattr(getattr(m, "config", None), "_attn_implementation", None)
    if impl not in _HEAD_SEARCH_IMPLEMENTATIONS:
        return None
    gpt2 = _class("transformers.models.gpt2.modeling_gpt2", "GPT2Attention")
    if gpt2 is not None and type(m) is gpt2:
        e, h, d = m.embed_dim, m.num_heads, m.head_dim
        c_attn, c_proj = getattr(m, "c_attn", None), getattr(m, "c_proj", None)
        ok = (
            not m.is_cross_attention and h * d == e and m.split_size == e
            and c_attn is not None and is_conv1d(c_attn) and _shape(c_attn)[1] == 3 * e
            and c_proj is not None and is_conv1d(c_proj) and _shape(c_proj)[0] == e
        )
        return "gpt2_attn" if ok else None
    bert = _class("transformers.models.bert.modeling_bert", "BertSelfAttention")
    if bert is not None and type(m) is bert:
        n = m.num_attention_heads * m.attention_head_size
        ok = m.all_head_size == n and all(
            type(getattr(m, name, None)) is nn.Linear and getattr(m, name).out_features == n
            for name in ("query", "key", "value")
        )
        return "bert_attn" if ok else None
    return None


def _shape(m: nn.Module) -> tuple[int, ...]:
    # Read from the parameter dict: this runs while torch.fx traces, where reading ``m.weight`` is recorded.
    w = m._parameters.get("weight")
    return tuple(w.shape) if w is not None else ()


def attention_heads(m: nn.Module) -> tuple[int, int]:
    """``(heads, head_dim)`` of an attention layer `attention_kind` accepts."""
    if hasattr(m, "num_attention_heads"):
        return m.num_attention_heads, m.attention_head_size
    return m.num_heads, m.head_dim
