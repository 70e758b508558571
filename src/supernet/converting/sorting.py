"""Importance sorting: reorder each width group's channels so that every prefix keeps the most important ones.

The same permutation is applied to every layer slice of the group (the producers' outputs, the readers' inputs,
norm layers and depthwise convs), so the full model computes exactly the same function. An attention layer's
heads are a group of their own: whole heads move together (their query, key and value rows and their columns of
the output projection).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..space import SuperModule
from .groups import HF_ATTENTION, Member
from .hf import attention_heads

METHODS = ("l1", "activation")


def _param_dims(m: nn.Module, member: Member) -> list[tuple[str, int]]:
    """``[(parameter or buffer name, dim)]`` that hold the group's channels in layer ``m``."""
    if member.kind == "linear":
        return [("weight", 0), ("bias", 0)] if member.role == "out" else [("weight", 1)]
    if member.kind == "conv1d":  # weight (in, out)
        return [("weight", 1), ("bias", 0)] if member.role == "out" else [("weight", 0)]
    if member.kind == "conv":
        return [("weight", 0), ("bias", 0)] if member.role == "out" else [("weight", 1)]
    if member.kind == "dwconv":
        return [("weight", 0), ("bias", 0)]
    if member.kind == "emb":
        return [("weight", 1)]
    if member.kind == "bn":
        return [("weight", 0), ("bias", 0), ("running_mean", 0), ("running_var", 0)]
    return [("weight", 0), ("bias", 0)]  # ln


def _slices(m: nn.Module, member: Member, perm: torch.Tensor) -> list[tuple[torch.Tensor | None, int, torch.Tensor]]:
    """``[(tensor, dim, index)]``: reorder ``tensor`` along ``dim`` by ``index`` to apply ``perm`` to the group's
    channels (or heads) in layer ``m``."""
    if member.kind in HF_ATTENTION:  # only the heads member names the layer itself; its projections have their own
        return _hf_head_slices(m, member.kind, perm)
    if member.kind != "mha":
        out = []
        for attr, dim in _param_dims(m, member):
            t = getattr(m, attr, None)
            if isinstance(t, torch.Tensor):
                out.append((t, dim, _index(perm, member, t.shape[dim])))
        return out
    if member.role == "in":
        return [(m.in_proj_weight, 1, _index(perm, member, m.in_proj_weight.shape[1]))]
    if member.role == "out":
        idx = _index(perm, member, m.out_proj.weight.shape[0])
        return [(m.out_proj.weight, 0, idx), (m.out_proj.bias, 0, idx)]
    # heads: every head's head_dim rows of q, k and v (three blocks of embed_dim rows), its columns of out_proj
    d, e = m.head_dim, m.embed_dim
    cols = (perm[:, None] * d + torch.arange(d)[None, :]).reshape(-1)
    rows = torch.cat([cols + s * e for s in range(3)])
    return [(m.in_proj_weight, 0, rows), (m.in_proj_bias, 0, rows), (m.out_proj.weight, 1, cols),
            (m.bias_k, 2, cols), (m.bias_v, 2, cols)]


def _head_channels(perm: torch.Tensor, d: int) -> torch.Tensor:
    """The channels of the heads in ``perm`` (``d`` per head), head by head."""
    return (perm[:, None] * d + torch.arange(d)[None, :]).reshape(-1)


def _hf_head_slices(m: nn.Module, kind: str, perm: torch.Tensor) -> list[tuple[Any, int, torch.Tensor]]:
    """Whole heads of a Hugging Face attention layer: their q/k/v outputs (GPT-2: three blocks of ``embed_dim``
    columns of ``c_attn``) and GPT-2's ``c_proj`` input rows (BERT's output dense reads the heads as a width
    member of its own)."""
    d = attention_heads(m)[1]
    cols = _head_channels(perm, d)
    if kind == "gpt2_attn":
        e = m.c_attn.weight.shape[1] // 3
        packed = torch.cat([cols + s * e for s in range(3)])
        return [(m.c_attn.weight, 1, packed), (m.c_attn.bias, 0, packed), (m.c_proj.weight, 0, cols)]
    return [(getattr(m, p).weight if n == "weight" else getattr(m, p).bias, 0, cols)
            for p in ("query", "key", "value") for n in ("weight", "bias")]


def _index(perm: torch.Tensor, member: Member, size: int) -> torch.Tensor:
    """Positions along the layer's dim: the fixed ``offset`` entries, then ``mult`` entries per channel."""
    block = (perm[:, None] * member.mult + torch.arange(member.mult)[None, :]).reshape(-1) + member.offset
    head = torch.arange(member.offset)
    tail = torch.arange(member.offset + block.numel(), size)
    return torch.cat([head, block, tail])


def _l1(m: nn.Module, member: Member) -> torch.Tensor:
    if member.kind in HF_ATTENTION:  # a head: its q/k/v weights (and GPT-2's c_proj rows)
        h, d = attention_heads(m)
        if member.kind == "gpt2_attn":
            qkv = m.c_attn.weight.detach().float().abs()
            return qkv.view(qkv.shape[0], 3, h, d).sum((0, 1, 3)) + m.c_proj.weight.detach().float().abs().view(
                h, d, -1).sum((1, 2))
        return sum(getattr(m, p).weight.detach().float().abs().view(h, d, -1).sum((1, 2))
                   for p in ("query", "key", "value"))
    if member.kind == "mha":
        wo = m.out_proj.weight.detach().float().abs()
        if member.role == "out":
            return wo.sum(1)
        # A head: its query, key and value rows and its columns of the output projection.
        h, d = m.num_heads, m.head_dim
        qkv = m.in_proj_weight.detach().float().abs().view(3, h, d, -1).sum((0, 2, 3))
        return qkv + wo.view(wo.shape[0], h, d).sum((0, 2))
    w = m.weight.detach().float().abs()
    if member.kind in ("emb", "conv1d"):
        return w.sum(0)
    return w.reshape(w.shape[0], -1).sum(1)


def _batches(data: Any, limit: int) -> Iterable[Any]:
    for i, batch in enumerate(data):
        if i >= limit:
            return
        yield batch


def _run(space: SuperModule, batch: Any) -> None:
    if isinstance(batch, dict):
        space(**batch)
    elif isinstance(batch, (list, tuple)):
        # A (inputs, targets) pair from a data loader: feed the inputs.
        space(batch[0]) if len(batch) == 2 and isinstance(batch[1], torch.Tensor) else space(*batch)
    else:
        space(batch)


def importance(space: SuperModule, method: str = "l1", data: Any = None, batches: int = 4) -> dict[str, torch.Tensor]:
    """``{width decision: importance per channel}`` of a converted space (the sum over the group's producers).

    ``l1``: the L1 norm of each output channel's weights (Once-for-All). ``activation``: the mean absolute
    activation of each channel on up to ``batches`` batches of ``data`` (Minitron), measured at the full width.
    Attention heads are ranked by the L1 norm of their weights (query, key and value rows, output-projection
    columns) under either method.
    """
    groups: dict[str, list[Member]] = getattr(space, "width_groups", None) or {}
    producers = {name: [mb for mb in ms if mb.role in ("out", "heads")] for name, ms in groups.items()}
    # A head has no output of its own at a layer's output to measure: heads are ranked by weight either way.
    by_weight = producers if method == "l1" else {
        name: ms for name, ms in producers.items() if any(mb.role == "heads" for mb in ms)
    }
    out = {name: sum(_l1(space.net.get_submodule(mb.path), mb) for mb in ms) for name, ms in by_weight.items()}
    if method == "l1":
        return out
    producers = {name: ms for name, ms in producers.items() if name not in out}
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []

    def hook(name: str, kind: str) -> Any:
        def fn(mod: nn.Module, args: Any, y: Any) -> None:
            if isinstance(y, tuple):  # an attention layer's (output, weights)
                y = y[0]
            dim = 1 if kind == "conv" else y.dim() - 1
            a = y.detach().float().abs().transpose(0, dim).reshape(y.shape[dim], -1).mean(1)
            sums[name] = sums.get(name, 0) + a
            counts[name] = counts.get(name, 0) + 1

        return fn

    for name, ms in producers.items():
        for mb in ms:
            hooks.append(space.net.get_submodule(mb.path).register_forward_hook(hook(name, mb.kind)))
    previous, was_training = space.arch, space.training
    space.set_arch(space.max_arch())
    space.eval()
    try:
        with torch.no_grad():
            n = 0
            for batch in _batches(data, batches):
                _run(space, batch)
                n += 1
        if n == 0:
            raise ValueError("sort_channels(method='activation') got no batches in data")
    finally:
        for h in hooks:
            h.remove()
        space.set_arch(previous)
        space.train(was_training)
    out.update({name: sums[name] / counts[name] for name in sums})
    return out


@torch.no_grad()
def sort_channels(space: SuperModule, data: Any = None, method: str = "l1", batches: int = 4) -> dict[str, list[int]]:
    """Reorder every width group of a converted space by decreasing importance (in place).

    The full model's outputs are unchanged; a narrower width then keeps the most important channels (and fewer
    heads the most important heads). The heads of an attention layer that the example input gave per-head (3-D)
    masks keep their order, which those masks follow; a layer whose heads were reordered refuses 3-D masks.

    Args:
        space: a space made by `supernet.convert`.
        data: for ``method="activation"``: an iterable of batches (tensors, tuples of arguments, dicts of
            keyword arguments, or ``(inputs, targets)`` pairs).
        method: ``"l1"`` (weight magnitude) or ``"activation"`` (mean activation magnitude on ``data``).
        batches: how many batches of ``data`` to use.

    Returns:
        ``{width decision: the permutation applied (old channel or head index per new position)}``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(space, SuperModule) or not hasattr(space, "width_groups"):
        raise TypeError("sort_channels needs a space made by supernet.convert")
    if method == "activation" and data is None:
        raise ValueError("sort_channels(method='activation') needs data: an iterable of input batches")
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be a positive int, got {batches!r}")
    scores = importance(space, method, data, batches)
    done: set[tuple[int, int]] = set()
    perms = {}
    for name, members in space.width_groups.items():
        if name not in scores or any(mb.role == "mask" for mb in members):
            continue  # per-head (3-D) attention masks are made for the heads in their order
        perm = torch.argsort(scores[name].cpu(), descending=True, stable=True)
        perms[name] = perm.tolist()
        for mb in members:
            m = space.net.get_submodule(mb.path)
            if mb.kind == "mha" and mb.role == "heads" and perm.tolist() != sorted(perm.tolist()):
                m.heads_reordered = True  # it then refuses per-head masks, which are made for the first order
            for t, dim, idx in _slices(m, mb, perm):
                if not isinstance(t, torch.Tensor) or (id(t), dim) in done:
                    continue
                done.add((id(t), dim))
                t.copy_(t.index_select(dim, idx.to(t.device)))
    return perms
