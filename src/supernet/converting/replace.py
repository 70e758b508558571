"""Swap a model's layers for entangled ones that read the width choices, keeping the model's own weights."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..space import BatchNorm2d, Choice, LayerNorm, Linear
from .groups import HF_ATTENTION, Analysis, Slot, Tag
from .hf import attention_heads
from .hf_attention import make_searchable
from .layers import Conv1D, Conv2d, Embedding, MultiheadAttention


def size_value(an: Analysis, tag: Tag | None, full: int, choices: Mapping[int, Choice]) -> Any:
    """The size of a tagged dimension: an int, or an expression ``offset + mult * choice``."""
    if tag is None:
        return full
    c = choices.get(an.groups.find(tag.gid))
    if c is None:
        return full
    v: Any = c if tag.mult == 1 else c * tag.mult
    return v if tag.offset == 0 else v + tag.offset


def _new_layer(an: Analysis, slot: Slot, m: Any, choices: Mapping[int, Choice]) -> nn.Module | None:
    out_tag = Tag(slot.out, 0) if slot.out is not None else None
    if slot.kind == "linear":
        i = size_value(an, slot.inp, m.in_features, choices)
        o = size_value(an, out_tag, m.out_features, choices)
        if isinstance(i, int) and isinstance(o, int):
            return None
        new: nn.Module = Linear(i, o, bias=m.bias is not None)
    elif slot.kind == "conv1d":
        i = size_value(an, slot.inp, m.nx, choices)
        o = size_value(an, out_tag, m.nf, choices)
        if isinstance(i, int) and isinstance(o, int):
            return None
        return Conv1D(m, i, o).train(m.training)
    elif slot.kind in ("conv", "dwconv"):
        i = size_value(an, slot.inp, m.in_channels, choices)
        o = i if slot.kind == "dwconv" else size_value(an, out_tag, m.out_channels, choices)
        if isinstance(i, int) and isinstance(o, int):
            return None
        return Conv2d(m, i, o, depthwise=slot.kind == "dwconv").train(m.training)
    elif slot.kind == "bn":
        n = size_value(an, slot.inp, m.num_features, choices)
        if isinstance(n, int):
            return None
        new = BatchNorm2d(n, m.eps, m.momentum, m.affine, m.track_running_stats)
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(m, name))
    elif slot.kind == "ln":
        n = size_value(an, slot.inp, m.normalized_shape[0], choices)
        if isinstance(n, int):
            return None
        new = LayerNorm(n, m.eps, bias=m.bias is not None)
    elif slot.kind == "emb":
        d = size_value(an, out_tag, m.embedding_dim, choices)
        if isinstance(d, int):
            return None
        return Embedding(m, d).train(m.training)
    elif slot.kind == "mha":
        i = size_value(an, slot.inp, m.embed_dim, choices)
        o = size_value(an, out_tag, m.embed_dim, choices)
        h = size_value(an, Tag(slot.heads, 0) if slot.heads is not None else None, m.num_heads, choices)
        if all(isinstance(v, int) for v in (i, o, h)):
            return None
        return MultiheadAttention(m, i, o, h)
    elif slot.kind in HF_ATTENTION:
        n_heads = attention_heads(m)[0]
        gpt2 = slot.kind == "gpt2_attn"
        first = m.c_attn if gpt2 else m.query  # weights: Conv1D (in, out), Linear (out, in)
        i = size_value(an, slot.inp, first.weight.shape[0 if gpt2 else 1], choices)
        h = size_value(an, Tag(slot.heads, 0) if slot.heads is not None else None, n_heads, choices)
        o = size_value(an, out_tag, m.c_proj.weight.shape[1], choices) if gpt2 else 0
        if all(isinstance(v, int) for v in (i, o, h)):
            return None
        return make_searchable(m, slot.kind, i, h, o)  # in place: the layer keeps its own class and forward
    else:  # pragma: no cover - kinds come from groups.convertible
        raise AssertionError(slot.kind)
    # Keep the model's own tensors (same objects: tied weights stay tied, device and dtype stay).
    for name in ("weight", "bias"):
        if hasattr(new, name) and name in new._parameters:
            new._parameters[name] = getattr(m, name, None)
    return new.train(m.training)


def replace_layers(net: nn.Module, an: Analysis, choices: Mapping[int, Choice]) -> list[str]:
    """Swap every convertible layer of ``net`` whose sizes depend on a choice; returns their paths."""
    done = []
    for path, slot in an.slots.items():
        parent_path, _, name = path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        new = _new_layer(an, slot, getattr(parent, name), choices)
        if new is None:
            continue
        setattr(parent, name, new)
        done.append(path)
    return done
