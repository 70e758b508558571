"""Small plain blocks used by both supernets and the networks extracted from them.

Nothing here reads a choice: an extracted network is made of standard torch layers plus these blocks, so it
can be saved, scripted or exported without the search code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Zero(nn.Module):
    """The 'none' operation: zeros shaped like the input (with an optional spatial stride)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class SelfAttention(nn.Module):
    """Multi-head self-attention from four projections; the head count follows the width of ``q``.

    Head size is fixed (``head_dim``), so a choice of head count changes the width of q/k/v
    (``heads * head_dim``) while the embedding dim may differ: this is the AutoFormer convention.
    """

    def __init__(self, q: nn.Module, k: nn.Module, v: nn.Module, proj: nn.Module, head_dim: int, causal: bool) -> None:
        super().__init__()
        self.q, self.k, self.v, self.proj = q, k, v, proj
        self.head_dim = head_dim
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.q(x), self.k(x), self.v(x)
        heads = q.shape[-1] // self.head_dim
        q, k, v = (z.view(b, t, heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(b, t, heads * self.head_dim))


class PositionalEmbedding(nn.Module):
    """Adds a learned position embedding to a ``(batch, length, dim)`` input."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(length, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.weight.shape[0]:
            raise ValueError(f"sequence length {t} exceeds the {self.weight.shape[0]} learned positions")
        return x + self.weight[:t]


class ClassToken(nn.Module):
    """Prepends a learned class token to a ``(batch, length, dim)`` input."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)


def _float_mask(mask: torch.Tensor | None, dtype: torch.dtype, what: str) -> torch.Tensor | None:
    """A boolean mask (True: not allowed to attend) as an additive float mask; a float mask as it is."""
    if mask is None:
        return None
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))
    if not torch.is_floating_point(mask):
        raise TypeError(f"only bool and floating-point {what} are supported, got {mask.dtype}")
    return mask


def multi_head_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    heads: int,
    head_dim: int,
    in_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    in_biases: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor | None,
    bias_k: torch.Tensor | None = None,
    bias_v: torch.Tensor | None = None,
    add_zero_attn: bool = False,
    dropout: float = 0.0,
    training: bool = False,
    batch_first: bool = False,
    mask_heads: int | None = None,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``nn.MultiheadAttention``'s computation (``F.multi_head_attention_forward``, step for step) with a head
    width ``heads * head_dim`` that need not equal the model width.

    ``in_weights`` are the query, key and value projections, each ``(heads * head_dim, in_features)``;
    ``out_weight`` is ``(out_features, heads * head_dim)``. A 3-D ``attn_mask`` holds ``batch * heads`` masks, or
    ``batch * mask_heads`` masks made for a layer with more heads, of which those of the first ``heads`` are used.
    Returns ``(output, weights)`` as ``nn.MultiheadAttention`` does (weights None unless ``need_weights``).
    """
    is_batched = query.dim() == 3
    if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
        raise ValueError(
            f"query, key and value must all be 2-D (unbatched) or 3-D, got {query.dim()}-D, {key.dim()}-D and "
            f"{value.dim()}-D"
        )
    key_padding_mask = _float_mask(key_padding_mask, query.dtype, "key_padding_mask")
    if batch_first and is_batched:
        query, key, value = (x.transpose(1, 0) for x in (query, key, value))
    if not is_batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, _ = query.shape
    src_len = key.shape[0]
    width = heads * head_dim

    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint.")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None  # scaled_dot_product_attention applies the causal mask itself
    else:
        attn_mask = _float_mask(attn_mask, query.dtype, "attn_mask")
        if key_padding_mask is not None:
            is_causal = False  # the merged mask is no longer causal

    bq, bk, bv = in_biases if in_biases is not None else (None, None, None)
    q = F.linear(query, in_weights[0], bq)
    k = F.linear(key, in_weights[1], bk)
    v = F.linear(value, in_weights[2], bv)

    if attn_mask is not None:
        if attn_mask.dim() == 2:
            if attn_mask.shape != (tgt_len, src_len):
                raise RuntimeError(
                    f"The shape of the 2D attn_mask is {attn_mask.shape}, but should be {(tgt_len, src_len)}."
                )
            attn_mask = attn_mask.unsqueeze(0)
        elif attn_mask.dim() == 3:
            stored = attn_mask.shape[0] // bsz if bsz else 0
            if attn_mask.shape[1:] != (tgt_len, src_len) or stored * bsz != attn_mask.shape[0] or stored not in (
                heads, mask_heads
            ):
                raise RuntimeError(
                    f"The shape of the 3D attn_mask is {attn_mask.shape}, but should be "
                    f"{(bsz * heads, tgt_len, src_len)}"
                    + (f" or {(bsz * mask_heads, tgt_len, src_len)}" if mask_heads not in (None, heads) else "")
                    + "."
                )
            if stored != heads:  # masks made for more heads: those of the heads kept
                attn_mask = attn_mask.view(bsz, stored, tgt_len, src_len)[:, :heads].reshape(
                    bsz * heads, tgt_len, src_len
                )
        else:
            raise RuntimeError(f"attn_mask's dimension {attn_mask.dim()} is not supported")

    if bias_k is not None and bias_v is not None:
        k = torch.cat([k, bias_k.repeat(1, bsz, 1)])
        v = torch.cat([v, bias_v.repeat(1, bsz, 1)])
        if attn_mask is not None:
            attn_mask = F.pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = F.pad(key_padding_mask, (0, 1))
    elif bias_k is not None or bias_v is not None:
        raise ValueError("bias_k and bias_v must both be given or both be None")

    q = q.view(tgt_len, bsz * heads, head_dim).transpose(0, 1)
    k = k.view(k.shape[0], bsz * heads, head_dim).transpose(0, 1)
    v = v.view(v.shape[0], bsz * heads, head_dim).transpose(0, 1)

    if add_zero_attn:
        zeros = (bsz * heads, 1, head_dim)
        k = torch.cat([k, torch.zeros(zeros, dtype=k.dtype, device=k.device)], dim=1)
        v = torch.cat([v, torch.zeros(zeros, dtype=v.dtype, device=v.device)], dim=1)
        if attn_mask is not None:
            attn_mask = F.pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = F.pad(key_padding_mask, (0, 1))

    src_len = k.size(1)
    if key_padding_mask is not None:
        if key_padding_mask.shape != (bsz, src_len):
            raise RuntimeError(f"expected key_padding_mask of shape {(bsz, src_len)}, got {key_padding_mask.shape}")
        key_padding_mask = (
            key_padding_mask.view(bsz, 1, 1, src_len).expand(-1, heads, -1, -1).reshape(bsz * heads, 1, src_len)
        )
        attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask

    dropout_p = dropout if training else 0.0
    weights: torch.Tensor | None = None
    if need_weights:
        q_scaled = q * math.sqrt(1.0 / float(head_dim))
        if attn_mask is not None:
            scores = torch.baddbmm(attn_mask, q_scaled, k.transpose(-2, -1))
        else:
            scores = torch.bmm(q_scaled, k.transpose(-2, -1))
        scores = F.softmax(scores, dim=-1)
        if dropout_p > 0.0:
            scores = F.dropout(scores, p=dropout_p)
        out = torch.bmm(scores, v).transpose(0, 1).reshape(tgt_len * bsz, width)
        weights = scores.view(bsz, heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(dim=1)
    else:
        if attn_mask is not None:
            if attn_mask.size(0) == 1 and attn_mask.dim() == 3:
                attn_mask = attn_mask.unsqueeze(0)
            else:
                attn_mask = attn_mask.view(bsz, heads, -1, src_len)
        q = q.view(bsz, heads, tgt_len, head_dim)
        k = k.view(bsz, heads, src_len, head_dim)
        v = v.view(bsz, heads, src_len, head_dim)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
        out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, width)
    out = F.linear(out, out_weight, out_bias).view(tgt_len, bsz, -1)
    if not is_batched:
        out = out.squeeze(1)
        weights = None if weights is None else weights.squeeze(0)
    elif batch_first:
        out = out.transpose(1, 0)
    return out, weights


class MultiheadAttention(nn.Module):
    """``nn.MultiheadAttention`` whose heads may be narrower than its model width: the query, key and value
    projections map ``in_features`` to ``heads * head_dim`` and the output projection maps that to
    ``out_features``; the forward signature and outputs are ``nn.MultiheadAttention``'s.

    It is what a converted ``nn.MultiheadAttention`` extracts to (with fewer heads or a narrower model width, or
    with all of them: it always runs the unfused computation, so FLOPs and latency compare across subnets).
    Parameters are stored as ``nn.MultiheadAttention`` stores them (``in_proj_weight`` packs q, k, v;
    ``out_proj``), so their names match. A 3-D ``attn_mask`` may hold masks for ``mask_heads`` heads (those of
    the original layer): the first ``heads`` are used.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        heads: int,
        head_dim: int,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        dropout: float = 0.0,
        batch_first: bool = False,
        mask_heads: int | None = None,
    ) -> None:
        super().__init__()
        width = heads * head_dim
        self.in_features, self.out_features = in_features, out_features
        self.num_heads, self.head_dim, self.mask_heads = heads, head_dim, mask_heads or heads
        # nn.MultiheadAttention's attributes, for code that reads them. _qkv_same_embed_dim=False keeps torch's
        # fused kernels (nn.TransformerEncoderLayer's fast path), which assume heads * head_dim == embed_dim, off.
        self.embed_dim, self.kdim, self.vdim = out_features, in_features, in_features
        self._qkv_same_embed_dim = False
        self.batch_first, self.dropout, self.add_zero_attn = batch_first, dropout, add_zero_attn
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, in_features))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width)) if bias else None
        self.out_proj = nn.Linear(width, out_features, bias=bias)
        self.bias_k = nn.Parameter(torch.zeros(1, 1, width)) if add_bias_kv else None
        self.bias_v = nn.Parameter(torch.zeros(1, 1, width)) if add_bias_kv else None
        nn.init.xavier_uniform_(self.in_proj_weight)

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
        wq, wk, wv = self.in_proj_weight.chunk(3)
        biases = None if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        return multi_head_attention(
            query, key, value, heads=self.num_heads, head_dim=self.head_dim, in_weights=(wq, wk, wv),
            in_biases=biases, out_weight=self.out_proj.weight, out_bias=self.out_proj.bias, bias_k=self.bias_k,
            bias_v=self.bias_v, add_zero_attn=self.add_zero_attn, dropout=self.dropout, training=self.training,
            batch_first=self.batch_first, mask_heads=self.mask_heads, key_padding_mask=key_padding_mask,
            need_weights=need_weights, attn_mask=attn_mask, average_attn_weights=average_attn_weights,
            is_causal=is_causal,
        )

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, heads={self.num_heads}, "
                f"head_dim={self.head_dim}, batch_first={self.batch_first}")
