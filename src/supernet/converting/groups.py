"""Width groups: which channel dimensions of a traced model must keep one size together.

Every layer that makes new channels (a Linear's or Conv2d's outputs, an Embedding's dim) starts a group; the
groups flow through the graph as *tags* on one dimension of each tensor. Residual additions, multiplications and
attention products join groups; depthwise convs and norm layers belong to the group they run on; flatten and
concatenation keep a group on a part of a dimension (``offset + mult * width``). An ``nn.MultiheadAttention``
reads one group (its query, key and value share the projection's input columns), makes a new one (its output
projection) and has a group of its own for its heads; so do Hugging Face's ``GPT2Attention`` and
``BertSelfAttention`` (see `supernet.converting.hf`), whose heads group also tags BERT's attention output
(``mult`` = head dim). Whatever the analysis cannot follow (an unknown op, a split into heads by other code, a
fixed tensor added to the channels, a branch on a width, the model's output) *pins* the group: it keeps its full
width and the reason is reported.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .hf import attention_heads, attention_kind, is_conv1d
from .trace import Trace


@dataclass(frozen=True)
class Tag:
    """Dimension ``dim`` of a tensor holds ``offset`` fixed entries, then ``mult`` entries per channel of group
    ``gid`` (channel-major), and nothing else."""

    gid: int
    dim: int
    offset: int = 0
    mult: int = 1


@dataclass
class Member:
    """One use of a group by a layer: ``role`` is ``out`` (the layer makes the channels), ``in`` (it reads
    them), ``dw`` (a depthwise conv on them), ``norm`` (a norm layer on them), ``heads`` (the group counts an
    attention layer's heads) or ``mask`` (the attention layer is given per-head masks, in head order)."""

    path: str
    # linear, conv1d (a transposed linear: Hugging Face's Conv1D), conv, dwconv, bn, ln, emb, mha, gpt2_attn,
    # bert_attn (Hugging Face attention layers; their input and output members name their projections)
    kind: str
    role: str
    offset: int = 0
    mult: int = 1


class UnionFind:
    """Groups with a size, members and pin reasons, merged by `union`."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.members: dict[int, list[Member]] = {}
        self.pins: dict[int, list[str]] = {}

    def new(self, size: int, member: Member) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.size.append(size)
        self.members[gid] = [member]
        self.pins[gid] = []
        return gid

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] += self.members.pop(rb)
        self.pins[ra] += self.pins.pop(rb)
        return ra

    def pin(self, g: int, reason: str) -> None:
        r = self.find(g)
        if reason not in self.pins[r]:
            self.pins[r].append(reason)

    def pinned(self, g: int) -> bool:
        return bool(self.pins[self.find(g)])

    def roots(self) -> list[int]:
        return sorted(self.members)

    def add_member(self, g: int, member: Member) -> None:
        self.members[self.find(g)].append(member)


@dataclass
class Slot:
    """A convertible layer and the tags of its input and output."""

    path: str
    kind: str
    module: nn.Module
    inp: Tag | None = None
    out: int | None = None  # the group a producer makes
    heads: int | None = None  # the head-count group of an attention layer
    seen: bool = False


@dataclass
class Analysis:
    """What the analysis found: groups, convertible layers, layers left fixed, tags of every node."""

    groups: UnionFind
    slots: dict[str, Slot]
    fixed: dict[str, str]
    tags: dict[fx.Node, Any]
    deps: dict[fx.Node, set[tuple[fx.Node, int | None]]]
    data_guards: list[str] = field(default_factory=list)

    def group_of(self, path: str, role: str) -> int | None:
        """The root of the group whose member is ``(path, role)``."""
        for root, members in self.groups.members.items():
            if any(m.path == path and m.role == role for m in members):
                return root
        return None


_PASS_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.LeakyReLU, nn.ELU,
    nn.Mish, nn.Softplus, nn.Softmax, nn.LogSoftmax, nn.Dropout, nn.Identity,
)
_SPATIAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.Dropout2d,
    nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)
_ELEMENTWISE_FUNCS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow, operator.iadd,
    operator.isub, operator.imul, operator.itruediv, operator.neg, operator.abs, torch.add, torch.sub, torch.mul,
    torch.div, torch.pow, torch.relu, torch.sigmoid, torch.tanh, torch.exp, torch.sqrt, torch.rsqrt, torch.where,
    torch.maximum, torch.minimum, torch.clamp, torch.erf, torch.abs, torch.neg, torch.masked_fill, F.relu,
    F.relu6, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.leaky_relu, F.elu, F.mish, F.softplus, F.dropout,
    F.sigmoid, F.tanh, torch.softmax, torch.log_softmax, F.softmax, F.log_softmax,
}
_ELEMENTWISE_METHODS = {
    "add", "sub", "mul", "div", "pow", "masked_fill", "add_", "sub_", "mul_", "div_", "masked_fill_", "relu",
    "sigmoid", "tanh", "exp", "sqrt", "rsqrt", "clamp", "clamp_", "abs", "neg", "relu_", "sigmoid_", "softmax",
    "log_softmax", "__add__", "__radd__", "__mul__", "__rmul__", "__sub__", "__rsub__", "__truediv__",
    "__rtruediv__", "where",
}
_SELF_ONLY_METHODS = {"contiguous", "clone", "float", "double", "half", "bfloat16", "to", "type_as", "detach",
                      "requires_grad_", "cpu", "cuda", "type"}
_REDUCE_FUNCS = {torch.mean, torch.sum, torch.amax, torch.amin, torch.std, torch.var, torch.logsumexp}
_REDUCE_METHODS = {"mean", "sum", "amax", "amin", "std", "var", "logsumexp"}
_PERMUTE_METHODS = {"permute", "transpose"}
_RESHAPE_METHODS = {"view", "reshape", "flatten", "unsqueeze", "squeeze", "unflatten", "expand", "view_as",
                    "reshape_as", "expand_as"}
_RESHAPE_FUNCS = {torch.flatten, torch.reshape, torch.unsqueeze, torch.squeeze}
_SPATIAL_FUNCS = {F.interpolate, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d}
_CAT_FUNCS = {torch.cat, torch.concat, torch.concatenate}
_SPLIT_FUNCS = {torch.split, torch.chunk, torch.unbind}
_SPLIT_METHODS = {"split", "chunk", "unbind"}
_MATMUL_FUNCS = {operator.matmul, torch.matmul, torch.bmm}
_MATMUL_METHODS = {"matmul", "bmm"}
_SIZE_METHODS = {"size", "numel"}


def convertible(m: nn.Module) -> tuple[str | None, str]:
    """``(kind, "")`` for a layer the converter can make searchable, else ``(None, reason)`` (``reason`` empty
    for layers that are not candidates at all)."""
    if type(m) is nn.Linear:
        return "linear", ""
    if is_conv1d(m):
        return "conv1d", ""
    if type(m) is nn.Conv2d:
        if m.padding_mode != "zeros":
            return None, f"Conv2d with padding_mode={m.padding_mode!r}"
        if m.groups == 1:
            return "conv", ""
        if m.groups == m.in_channels == m.out_channels:
            return "dwconv", ""
        return None, f"grouped Conv2d (groups={m.groups}) that is not depthwise"
    if type(m) is nn.BatchNorm2d:
        if m.momentum is None:
            return None, "BatchNorm2d with momentum=None"
        return "bn", ""
    if type(m) is nn.LayerNorm:
        if len(m.normalized_shape) != 1 or not m.elementwise_affine:
            return None, "LayerNorm over several dims or without affine parameters"
        return "ln", ""
    if type(m) is nn.Embedding:
        if m.max_norm is not None or m.scale_grad_by_freq or m.sparse:
            return None, "Embedding with max_norm/scale_grad_by_freq/sparse"
        return "emb", ""
    if type(m) is nn.MultiheadAttention:
        if not m._qkv_same_embed_dim:
            return None, "MultiheadAttention with kdim/vdim other than embed_dim"
        return "mha", ""
    hf = attention_kind(m)
    if hf is not None:
        return hf, ""
    return None, ""


#: Hugging Face attention layers: their projections (input side, output side) as ``(name, member kind)``.
HF_ATTENTION: dict[str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]] = {
    "gpt2_attn": ((("c_attn", "conv1d"),), (("c_proj", "conv1d"),)),
    "bert_attn": ((("query", "linear"), ("key", "linear"), ("value", "linear")), ()),
}


def is_known_leaf(m: nn.Module) -> bool:
    """Layers the analysis knows (convertible, shape-preserving, pooling, flatten)."""
    return (
        convertible(m)[0] is not None
        or isinstance(m, _PASS_MODULES + _SPATIAL_MODULES + (nn.Flatten, nn.Unflatten))
    )


def _norm_dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


class Analyser:
    """Walks a `Trace` once, computing the tag of every node and the groups."""

    def __init__(self, tr: Trace, root: nn.Module, opaque: dict[str, str]) -> None:
        self.tr, self.root, self.opaque = tr, root, opaque
        self.g = UnionFind()
        self.tags: dict[fx.Node, Any] = {}
        self.deps: dict[fx.Node, set[tuple[fx.Node, int | None]]] = {}
        self.data: set[fx.Node] = set()
        self.sizes: dict[fx.Node, list[tuple[fx.Node, int]]] = {}  # a torch.Size node: (tensor, dim) per entry
        self.slots: dict[str, Slot] = {}
        self.fixed: dict[str, str] = dict(opaque)

    # --- helpers ---------------------------------------------------------------------------------------
    def val(self, n: Any) -> Any:
        return self.tr.values.get(n) if isinstance(n, fx.Node) else n

    def is_tensor(self, n: Any) -> bool:
        return isinstance(n, fx.Node) and isinstance(self.tr.values.get(n), torch.Tensor)

    def tag(self, n: Any) -> Tag | None:
        t = self.tags.get(n) if isinstance(n, fx.Node) else None
        return t if isinstance(t, Tag) else None

    def drop(self, tag: Tag | None, reason: str) -> None:
        if tag is not None:
            self.g.pin(tag.gid, reason)

    def drop_all(self, nodes: Iterable[Any], reason: str) -> None:
        for n in nodes:
            t = self.tags.get(n) if isinstance(n, fx.Node) else None
            for x in t if isinstance(t, list) else [t]:
                self.drop(x if isinstance(x, Tag) else None, reason)

    def unify(self, tags: Sequence[Tag], dim: int, reason: str) -> Tag | None:
        if not tags:
            return None
        first = tags[0]
        if any((t.offset, t.mult) != (first.offset, first.mult) for t in tags):
            for t in tags:
                self.drop(t, reason + " (the groups sit at different positions)")
            return None
        gid = first.gid
        for t in tags[1:]:
            gid = self.g.union(gid, t.gid)
        return Tag(self.g.find(gid), dim, first.offset, first.mult)

    # --- the walk --------------------------------------------------------------------------------------
    def run(self) -> Analysis:
        for node in self.tr.nodes:
            if node.op == "output":
                self.drop_all(_flatten_nodes(node.args), "reaches the model's output")
                continue
            self.visit(node)
        self.check_params()
        guards = self.check_guards()
        return Analysis(self.g, self.slots, self.fixed, self.tags, self.deps, guards)

    def visit(self, node: fx.Node) -> None:
        v = self.val(node)
        if not isinstance(v, (torch.Tensor, list, tuple)) or (
            isinstance(v, (list, tuple)) and not any(isinstance(x, torch.Tensor) for x in v)
        ):
            self.visit_scalar(node)
            return
        if node.op in ("placeholder", "get_attr"):
            self.tags[node] = None
            return
        if node.op == "call_module":
            self.tags[node] = self.visit_module(node)
            return
        self.tags[node] = self.visit_op(node)

    def visit_scalar(self, node: fx.Node) -> None:
        deps: set[tuple[fx.Node, int | None]] = set()
        args = _flatten_nodes((node.args, node.kwargs))
        if node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
            deps = {(node.args[0], None)}
            if self.is_tensor(node.args[0]):
                self.sizes[node] = [(node.args[0], d) for d in range(self.val(node.args[0]).dim())]
        elif node.op == "call_method" and node.target in _SIZE_METHODS:
            x = node.args[0]
            d = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            rank = self.val(x).dim() if self.is_tensor(x) else 0
            deps = {(x, None if d is None or node.target == "numel" else _norm_dim(d, rank))}
            if d is None and node.target == "size" and self.is_tensor(x):
                self.sizes[node] = [(x, i) for i in range(rank)]
        elif node.op == "call_function" and node.target is operator.getitem and node.args[0] in self.sizes and (
            isinstance(node.args[1], (int, slice))
        ):
            # Entries of a shape: ``x.shape[-1]`` depends on one dim, ``x.shape[:-1]`` on all but the last.
            entries = self.sizes[node.args[0]]
            idx = node.args[1]
            picked = entries[idx] if isinstance(idx, slice) else [entries[idx]]
            if isinstance(idx, slice):
                self.sizes[node] = list(picked)
            deps = set(picked)
        elif node.op == "call_function" and node.target is operator.getitem and isinstance(node.args[1], int):
            src = node.args[0]
            sd = self.deps.get(src, set())
            if len(sd) == 1 and next(iter(sd))[1] is None and isinstance(self.val(src), torch.Size):
                x = next(iter(sd))[0]
                deps = {(x, _norm_dim(node.args[1], len(self.val(src))))}
            else:
                deps = set(sd)
            if src in self.data:
                self.data.add(node)
        elif (node.op == "call_method" and node.target in ("dim", "ndimension", "is_floating_point")) or (
            node.op == "call_function"
            and (
                (node.target is getattr and node.args[1] in ("ndim", "dtype", "device"))
                or node.target in (torch.is_floating_point, torch.is_complex)
            )
        ):
            deps = set()  # facts of the dtype or rank, never of a width or of the values
        else:
            for a in args:
                if self.is_tensor(a):
                    self.data.add(node)
                deps |= self.deps.get(a, set())
                if a in self.data:
                    self.data.add(node)
        self.deps[node] = deps
        self.tags[node] = None

    # --- modules ---------------------------------------------------------------------------------------
    def visit_module(self, node: fx.Node) -> Any:
        path = str(node.target)
        m = self.root.get_submodule(path)
        xs = [a for a in _flatten_nodes((node.args, node.kwargs)) if self.is_tensor(a)]
        x = node.args[0] if node.args else None
        kind, why = convertible(m)
        if path in self.opaque:
            self.drop_all(xs, f"read by {path}, which is left fixed")
            return None
        if kind is None:
            if isinstance(m, _PASS_MODULES):
                return self.tag(x)
            if isinstance(m, _SPATIAL_MODULES):
                return self.channel_dim1(x, f"{type(m).__name__} {path}")
            if isinstance(m, (nn.Flatten, nn.Unflatten)):
                return self.reshape(node, x)
            self.fixed.setdefault(path, why or f"{type(m).__name__} is not supported")
            self.drop_all(xs, f"read by {path} ({type(m).__name__}), which is left fixed")
            return None
        if kind == "mha":
            return self.visit_mha(node, path, m)
        if kind in HF_ATTENTION:
            return self.visit_hf_attention(node, path, m, kind)
        if len(xs) != 1 or x is not xs[0] or node.kwargs:
            self.fixed.setdefault(path, "called with other arguments than one tensor")
            self.drop_all(xs, f"read by {path}, which is left fixed")
            return None
        slot = self.slots.get(path)
        if slot is None:
            slot = self.slots[path] = Slot(path, kind, m)
        rank = self.val(x).dim()
        t = self.tag(x)
        want = rank - 1 if kind in ("linear", "conv1d", "ln") else 1
        if kind == "emb":
            self.drop(t, f"indexes the Embedding {path}")
            t = None
        elif t is not None and t.dim != want:
            if kind == "ln" or (kind == "bn"):
                return t  # normalisation over other dims: the channels pass through
            self.drop(t, f"{path} reads another dimension than the tagged one")
            t = None
        if kind in ("conv", "dwconv", "bn") and t is not None and t.mult != 1:
            self.drop(t, f"{path} reads channels that were flattened")
            t = None
        if kind != "emb":
            role = {"linear": "in", "conv1d": "in", "conv": "in", "dwconv": "dw", "bn": "norm", "ln": "norm"}[kind]
            self.slot_input(slot, t, role)
        slot.seen = True
        out_rank = self.val(node).dim()
        if kind in ("linear", "conv1d", "conv", "emb"):
            if slot.out is None:
                size = {"linear": "out_features", "conv1d": "nf", "conv": "out_channels", "emb": "embedding_dim"}[kind]
                slot.out = self.g.new(getattr(m, size), Member(path, kind, "out"))
            return Tag(self.g.find(slot.out), out_rank - 1 if kind != "conv" else 1)
        if slot.inp is None:
            return None
        return Tag(self.g.find(slot.inp.gid), want if kind != "ln" else out_rank - 1, slot.inp.offset,
                   slot.inp.mult)

    def slot_input(self, slot: Slot, t: Tag | None, role: str, readers: Sequence[tuple[str, str]] = ()) -> None:
        """The input slot of a layer: every call of the layer reads the same width (``readers``: the
        ``(path, kind)`` members that read it, when not the layer itself)."""
        path = slot.path
        if not slot.seen:
            slot.inp = t
            if t is not None:
                for p, k in readers or [(path, slot.kind)]:
                    self.g.add_member(t.gid, Member(p, k, role, t.offset, t.mult))
        elif (slot.inp is None) != (t is None):
            self.drop(t, f"{path} is called on several widths")
            self.drop(slot.inp, f"{path} is called on several widths")
        elif t is not None and slot.inp is not None:
            slot.inp = self.unify([slot.inp, t], t.dim, f"{path} is called on several inputs")

    def visit_mha(self, node: fx.Node, path: str, m: nn.MultiheadAttention) -> Any:
        """An ``nn.MultiheadAttention`` call: q, k and v join one group (the input columns of the packed
        projection); the output is a new group (the output projection's rows) and the heads are a group too
        (per-head attention weights carry it)."""
        try:
            bound = inspect.signature(m.forward).bind(*node.args, **node.kwargs)
        except TypeError as err:
            self.fixed.setdefault(path, f"called with arguments MultiheadAttention does not take ({err})")
            self.drop_all(_flatten_nodes((node.args, node.kwargs)), f"read by {path}, which is left fixed")
            return _untagged(self.val(node))
        bound.apply_defaults()
        a = bound.arguments
        qkv = [a["query"], a["key"], a["value"]]
        if not all(self.is_tensor(x) and self.val(x).dim() in (2, 3) for x in qkv):
            self.fixed.setdefault(path, "called on query/key/value that are not 2-D or 3-D tensors")
            self.drop_all(_flatten_nodes((node.args, node.kwargs)), f"read by {path}, which is left fixed")
            return _untagged(self.val(node))
        slot = self.slots.get(path)
        if slot is None:
            slot = self.slots[path] = Slot(path, "mha", m)
        # Masks are read whole (a 3-D mask holds every head's: the layer picks the active heads' itself).
        self.drop_all([a["key_padding_mask"], a["attn_mask"]], f"read as an attention mask by {path}")
        tags: list[Tag | None] = []
        for x in dict.fromkeys(qkv):  # q, k, v are often one tensor
            t = self.tag(x)
            if t is not None and t.dim != self.val(x).dim() - 1:
                self.drop(t, f"{path} reads another dimension than the tagged one")
                t = None
            tags.append(t)
        known = [t for t in tags if t is not None]
        t = None
        if known and len(known) < len(tags):
            for u in known:
                self.drop(u, f"read by {path} together with a fixed tensor (query, key and value share its "
                             "projection's input width)")
        elif known:
            t = self.unify(known, known[0].dim, f"query/key/value of {path}")
        self.slot_input(slot, t, "in")
        slot.seen = True
        if slot.out is None:
            slot.out = self.g.new(m.embed_dim, Member(path, "mha", "out"))
            slot.heads = self.g.new(m.num_heads, Member(path, "mha", "heads"))
        mask = self.val(a["attn_mask"])
        heads_members = self.g.members[self.g.find(slot.heads)]
        if isinstance(mask, torch.Tensor) and mask.dim() == 3 and Member(path, "mha", "mask") not in heads_members:
            # Per-head masks are made for the heads in their order: sorting must leave that order alone.
            self.g.add_member(slot.heads, Member(path, "mha", "mask"))
        out, weights = self.val(node)
        w_tag = None
        if isinstance(weights, torch.Tensor) and not self.val(a["average_attn_weights"]):
            w_tag = Tag(self.g.find(slot.heads), weights.dim() - 3)  # (N, heads, L, S) or (heads, L, S)
        return [Tag(self.g.find(slot.out), out.dim() - 1), w_tag]

    def visit_hf_attention(self, node: fx.Node, path: str, m: nn.Module, kind: str) -> Any:
        """A Hugging Face attention layer (``GPT2Attention``, ``BertSelfAttention``) called on hidden states
        ``(batch, length, width)``: its projections read the width's group; its heads are a group (its q/k/v
        rows, GPT-2's ``c_proj`` input rows, BERT's output channels: ``head_dim`` per head); GPT-2's output
        projection makes a new group. Masks and other tensors are read whole."""
        x = node.args[0] if node.args else node.kwargs.get("hidden_states")
        others = [a for a in _flatten_nodes((node.args, node.kwargs)) if self.is_tensor(a) and a is not x]
        out = self.val(node)
        ok = (
            self.is_tensor(x) and self.val(x).dim() == 3 and isinstance(out, tuple) and len(out) >= 1
            and isinstance(out[0], torch.Tensor) and out[0].dim() == 3
            and not (kind == "gpt2_attn" and node.kwargs.get("encoder_hidden_states") is not None)
        )
        if not ok:
            self.fixed.setdefault(path, "called on other arguments than hidden states (batch, length, width)")
            self.drop_all(_flatten_nodes((node.args, node.kwargs)), f"read by {path}, which is left fixed")
            return _untagged(out)
        slot = self.slots.get(path)
        if slot is None:
            slot = self.slots[path] = Slot(path, kind, m)
        self.drop_all(others, f"read as an attention mask by {path}")
        t = self.tag(x)
        if t is not None and t.dim != 2:
            self.drop(t, f"{path} reads another dimension than the tagged one")
            t = None
        readers, writers = HF_ATTENTION[kind]
        self.slot_input(slot, t, "in", [(f"{path}.{name}", k) for name, k in readers])
        slot.seen = True
        n_heads, d = attention_heads(m)
        if slot.heads is None:
            slot.heads = self.g.new(n_heads, Member(path, kind, "heads"))
            for name, k in writers:
                slot.out = self.g.new(m.get_submodule(name).weight.shape[1], Member(f"{path}.{name}", k, "out"))
        heads = self.g.find(slot.heads)
        for a in others:
            v = self.val(a)
            if v.dim() == 4 and v.shape[1] == n_heads > 1 and Member(path, kind, "mask") not in self.g.members[heads]:
                # Per-head masks are made for the heads in their order: sorting must leave that order alone.
                self.g.add_member(heads, Member(path, kind, "mask"))
        y = Tag(self.g.find(slot.out), 2) if slot.out is not None else Tag(heads, 2, 0, d)
        tags: list[Tag | None] = [y]
        for extra in out[1:]:  # attention weights (batch, heads, length, length), when the layer returns them
            tags.append(Tag(heads, 1) if isinstance(extra, torch.Tensor) and extra.dim() == 4 else None)
            if isinstance(extra, torch.Tensor) and extra.dim() != 4:
                self.drop(tags[0], f"{path} returns a tensor the converter does not follow")
        return tags

    def channel_dim1(self, x: Any, what: str) -> Tag | None:
        t = self.tag(x)
        if t is None:
            return None
        if t.dim != 1 or self.val(x).dim() < 3:
            self.drop(t, f"{what} works on the tagged dimension")
            return None
        return t

    # --- functions and methods -------------------------------------------------------------------------
    def visit_op(self, node: fx.Node) -> Any:
        fn, name = (node.target, None) if node.op == "call_function" else (None, str(node.target))
        args = list(node.args)
        ins = [a for a in _flatten_nodes((node.args, node.kwargs)) if self.is_tensor(a)]
        x = args[0] if args else None
        if fn is operator.getitem:
            return self.getitem(node, x, args[1])
        if fn in _ELEMENTWISE_FUNCS or name in _ELEMENTWISE_METHODS:
            return self.broadcast(node, ins)
        if name in _SELF_ONLY_METHODS:
            return self.tag(x)
        if fn in _REDUCE_FUNCS or name in _REDUCE_METHODS:
            return self.reduce(node, x)
        if name in _PERMUTE_METHODS or fn in (torch.transpose, torch.permute):
            return self.permute(node, x)
        if name in _RESHAPE_METHODS or fn in _RESHAPE_FUNCS:
            return self.reshape(node, x)
        if fn in _SPATIAL_FUNCS:
            return self.channel_dim1(x, getattr(fn, "__name__", "pooling"))
        if fn is F.pad:
            return self.pad(node, x)
        if fn in _CAT_FUNCS:
            return self.cat(node)
        if fn is torch.stack:
            return self.stack(node)
        if fn in _SPLIT_FUNCS or name in _SPLIT_METHODS:
            return self.split(node, x)
        if fn in _MATMUL_FUNCS or name in _MATMUL_METHODS:
            return self.matmul(node, args[0], args[1])
        if fn is F.scaled_dot_product_attention:
            return self.sdpa(node)
        label = getattr(fn, "__name__", None) or name
        self.drop_all(ins, f"goes through `{label}`, which the converter does not follow ({node.name})")
        return _untagged(self.val(node))

    def broadcast(self, node: fx.Node, ins: list[fx.Node]) -> Tag | None:
        out = self.val(node)
        if not isinstance(out, torch.Tensor):
            self.drop_all(ins, f"{node.name} does not give a tensor")
            return None
        rank = out.dim()
        per_dim: dict[int, list[Tag]] = {}
        for a in ins:
            t = self.tag(a)
            if t is not None:
                per_dim.setdefault(t.dim + rank - self.val(a).dim(), []).append(t)
        result: Tag | None = None
        for od, tags in sorted(per_dim.items()):
            reason = f"combined element-wise with a fixed tensor in {node.name}"
            fixed = False
            for a in ins:
                va = self.val(a)
                ad = od - (rank - va.dim())
                if ad < 0 or va.shape[ad] == 1:
                    continue
                t = self.tag(a)
                if t is None or t.dim != ad:
                    fixed = True
            u = self.unify(tags, od, f"joined in {node.name}")
            if u is None:
                continue
            if fixed:
                self.drop(u, reason)
                continue
            if result is not None:
                self.drop(u, f"{node.name} has two searchable dimensions")
                self.drop(result, f"{node.name} has two searchable dimensions")
                result = None
                continue
            result = u
        return result

    def reduce(self, node: fx.Node, x: Any) -> Tag | None:
        t = self.tag(x)
        if t is None:
            return None
        rank = self.val(x).dim()
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if dim is None:
            return None
        dims = {_norm_dim(d, rank) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
        if not all(isinstance(d, int) for d in dims):
            self.drop(t, f"{node.name} reduces over computed dims")
            return None
        if t.dim in dims:
            return None  # a reduction over the channels: a subnet reduces over fewer
        return Tag(t.gid, t.dim if keep else t.dim - sum(d < t.dim for d in dims), t.offset, t.mult)

    def permute(self, node: fx.Node, x: Any) -> Tag | None:
        t = self.tag(x)
        if t is None:
            return None
        rank = self.val(x).dim()
        rest = list(node.args[1:])
        if node.target in ("transpose",) or node.target is torch.transpose:
            a, b = (_norm_dim(int(d), rank) for d in rest[:2])
            perm = list(range(rank))
            perm[a], perm[b] = perm[b], perm[a]
        else:
            dims = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
            perm = [_norm_dim(int(d), rank) for d in dims]
        return Tag(t.gid, perm.index(t.dim), t.offset, t.mult)

    def reshape(self, node: fx.Node, x: Any) -> Tag | None:
        t = self.tag(x)
        if t is None:
            return None
        ins, out = tuple(self.val(x).shape), tuple(self.val(node).shape)
        p = math.prod(ins[: t.dim])
        size = ins[t.dim]
        for e in range(len(out)):
            if math.prod(out[:e]) == p and out[e] != 1:
                if out[e] == size:
                    return Tag(t.gid, e, t.offset, t.mult)
                for k in range(t.dim + 2, len(ins) + 1):
                    if math.prod(ins[t.dim : k]) == out[e]:
                        r = math.prod(ins[t.dim + 1 : k])
                        return Tag(t.gid, e, t.offset * r, t.mult * r)
                break
        self.drop(t, f"{node.name} reshapes the channels (e.g. into heads)")
        return None

    def pad(self, node: fx.Node, x: Any) -> Tag | None:
        t = self.tag(x)
        if t is None:
            return None
        pads = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        rank = self.val(x).dim()
        if t.dim >= rank - len(pads) // 2:
            self.drop(t, f"{node.name} pads the channels")
            return None
        return t

    def getitem(self, node: fx.Node, x: Any, idx: Any) -> Any:
        src = self.tags.get(x)
        if not isinstance(self.val(x), torch.Tensor):
            if isinstance(src, list) and isinstance(idx, int):
                return src[idx]
            return None
        t = self.tag(x)
        if t is None:
            return None
        rank = self.val(x).dim()
        items = list(idx) if isinstance(idx, tuple) else [idx]
        if any(isinstance(i, (fx.Node, list, torch.Tensor)) and not isinstance(self.val(i), slice) for i in items):
            self.drop(t, f"{node.name} indexes with tensors or computed indices")
            return None
        n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
        expanded: list[Any] = []
        for i in items:
            if i is Ellipsis:
                expanded += [slice(None)] * (rank - n_real)
            else:
                expanded.append(i)
        in_d, out_d = 0, 0
        for i in expanded:
            if i is None:
                out_d += 1
                continue
            if in_d == t.dim:
                if isinstance(i, slice) and i == slice(None):
                    return Tag(t.gid, out_d, t.offset, t.mult)
                self.drop(t, f"{node.name} selects some of the channels")
                return None
            in_d += 1
            if not isinstance(i, int):
                out_d += 1
        return Tag(t.gid, out_d + (t.dim - in_d), t.offset, t.mult)

    def cat(self, node: fx.Node) -> Tag | None:
        xs = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        xs = list(xs)
        rank = self.val(node).dim()
        dim = _norm_dim(dim, rank)
        along = [self.tag(a) for a in xs]
        others: list[Tag] = []
        for a in xs:
            t = self.tag(a)
            if t is not None and t.dim != dim:
                others.append(t)
        result = None
        if others:
            # Concatenating along another dim: the tagged dims must agree like an element-wise op.
            result = self.broadcast(node, [a for a in xs if self.tag(a) is None or self.tag(a).dim != dim])
        tagged_along = [(i, t) for i, t in enumerate(along) if t is not None and t.dim == dim]
        if not tagged_along:
            return result
        last_i, last = tagged_along[-1]
        for i, t in tagged_along:
            if i != len(xs) - 1:
                self.drop(t, f"concatenated before other tensors in {node.name} (only the last part may shrink)")
        if last_i != len(xs) - 1:
            return result
        offset = sum(self.val(a).shape[dim] for a in xs[:-1])
        if result is not None:
            self.drop(last, f"{node.name} has two searchable dimensions")
            return result
        return Tag(last.gid, dim, last.offset + offset, last.mult)

    def stack(self, node: fx.Node) -> Tag | None:
        xs = list(node.args[0] if node.args else node.kwargs.get("tensors"))
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = self.val(node).dim()
        dim = _norm_dim(dim, rank)
        tags = [self.tag(a) for a in xs]
        if all(t is None for t in tags):
            return None
        if any(t is None for t in tags):
            self.drop_all(xs, f"stacked with fixed tensors in {node.name}")
            return None
        d = tags[0].dim
        if any(t.dim != d for t in tags):
            self.drop_all(xs, f"stacked along different dims in {node.name}")
            return None
        u = self.unify(tags, d + (1 if d >= dim else 0), f"stacked in {node.name}")
        return u

    def split(self, node: fx.Node, x: Any) -> Any:
        t = self.tag(x)
        out = self.val(node)
        if t is None:
            return [None] * len(out)
        rank = self.val(x).dim()
        if node.target in ("unbind",) or node.target is torch.unbind:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        else:
            dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        dim = _norm_dim(dim, rank)
        if dim == t.dim:
            self.drop(t, f"{node.name} splits the channels")
            return [None] * len(out)
        if node.target in ("unbind",) or node.target is torch.unbind:
            return [Tag(t.gid, t.dim - (1 if dim < t.dim else 0), t.offset, t.mult)] * len(out)
        return [t] * len(out)

    def matmul(self, node: fx.Node, a: Any, b: Any) -> Tag | None:
        if not (self.is_tensor(a) and self.is_tensor(b)) or self.val(a).dim() < 2 or self.val(b).dim() < 2:
            self.drop_all([a, b], f"{node.name}: matmul of vectors or with constants")
            return None
        va, vb, rank = self.val(a), self.val(b), self.val(node).dim()
        ta, tb = self.tag(a), self.tag(b)
        result: Tag | None = None
        ka = ta if ta is not None and ta.dim == va.dim() - 1 else None
        kb = tb if tb is not None and tb.dim == vb.dim() - 2 else None
        if ka is not None and kb is not None:
            self.unify([ka, kb], 0, f"contracted in {node.name}")
        elif ka is not None or kb is not None:
            self.drop(ka or kb, f"contracted with a fixed tensor in {node.name}")
        if ta is not None and ta is not ka:
            if ta.dim == va.dim() - 2:
                result = Tag(ta.gid, rank - 2, ta.offset, ta.mult)
            else:
                self.drop(ta, f"a batch dim of {node.name}")
        if tb is not None and tb is not kb:
            if tb.dim == vb.dim() - 1 and result is None:
                result = Tag(tb.gid, rank - 1, tb.offset, tb.mult)
            else:
                self.drop(tb, f"a batch dim of {node.name}")
        return result

    def sdpa(self, node: fx.Node) -> Tag | None:
        q, k, v = node.args[:3]
        tq, tk, tv = self.tag(q), self.tag(k), self.tag(v)
        last = [t for t in (tq, tk) if t is not None and t.dim == self.val(q).dim() - 1]
        for t in (tq, tk, tv):
            if t is not None and t.dim != self.val(q).dim() - 1:
                self.drop(t, f"a batch dim of {node.name}")
        if len(last) == 2:
            self.unify(last, 0, f"q/k of {node.name}")
        elif last:
            self.drop(last[0], f"q/k widths of {node.name} differ in kind")
        if tv is not None and tv.dim == self.val(v).dim() - 1:
            return Tag(tv.gid, self.val(node).dim() - 1, tv.offset, tv.mult)
        return None

    # --- after the walk --------------------------------------------------------------------------------
    def param_dims(self, slot: Slot) -> dict[str, list[Tag | None]]:
        """``{param name (dotted for a submodule's): [tag or None per dim]}`` of a convertible layer."""
        out = Tag(self.g.find(slot.out), 0) if slot.out is not None else None
        inp = slot.inp
        if slot.kind == "mha":
            # Rows of the packed projection are 3 blocks of heads x head_dim: a Tag of the head group marks
            # them (only compared between layers that share the tensor, which slice it alike).
            d = slot.module.head_dim
            heads = Tag(self.g.find(slot.heads), 0, 0, d) if slot.heads is not None else None
            return {"in_proj_weight": [heads, inp], "in_proj_bias": [heads], "out_proj.weight": [out, heads],
                    "out_proj.bias": [out], "bias_k": [None, None, heads], "bias_v": [None, None, heads]}
        if slot.kind in HF_ATTENTION:
            d = attention_heads(slot.module)[1]
            heads = Tag(self.g.find(slot.heads), 0, 0, d) if slot.heads is not None else None
            if slot.kind == "gpt2_attn":
                return {"c_attn.weight": [inp, heads], "c_attn.bias": [heads], "c_proj.weight": [heads, out],
                        "c_proj.bias": [out]}
            return {f"{p}.{n}": dims for p in ("query", "key", "value")
                    for n, dims in (("weight", [heads, inp]), ("bias", [heads]))}
        if slot.kind == "linear":
            return {"weight": [out, inp], "bias": [out]}
        if slot.kind == "conv1d":
            return {"weight": [inp, out], "bias": [out]}
        if slot.kind == "conv":
            return {"weight": [out, inp, None, None], "bias": [out]}
        if slot.kind == "emb":
            return {"weight": [None, out]}
        if slot.kind == "dwconv":
            return {"weight": [inp, None, None, None], "bias": [inp]}
        return {"weight": [inp], "bias": [inp], "running_mean": [inp], "running_var": [inp]}

    def check_params(self) -> None:
        """Layers that share a weight (a tied embedding and head) must slice it alike; a weight read elsewhere
        (directly in the forward code, or by a layer left fixed) keeps its full size."""
        users: dict[int, list[list[Tag | None]]] = {}
        for slot in self.slots.values():
            for name, dims in self.param_dims(slot).items():
                p = _attr(slot.module, name)
                if isinstance(p, torch.Tensor):
                    users.setdefault(id(p), []).append(dims)
        elsewhere: dict[int, str] = {}
        for node in self.tr.nodes:
            # A read nothing uses (torch's fast-path checks collect weights to test their flags) is harmless.
            if node.op == "get_attr" and node.users:
                elsewhere[id(self.val(node))] = f"read directly as {node.target}"
        # The projections inside a Hugging Face attention layer belong to its slot.
        inside = tuple(p + "." for p, s in self.slots.items() if s.kind in HF_ATTENTION)
        for path, m in self.root.named_modules():
            if path.startswith(inside) and path not in self.fixed:
                continue
            if path in self.fixed or (path not in self.slots and convertible(m)[0] is not None):
                for p in m.parameters():
                    elsewhere.setdefault(id(p), f"also used by {path}, which is left fixed")
        for pid, uses in users.items():
            if pid in elsewhere:
                for dims in uses:
                    for t in dims:
                        self.drop(t, f"its weight is {elsewhere[pid]}")
                continue
            if len(uses) < 2:
                continue
            for d in range(len(uses[0])):
                tags = [u[d] for u in uses]
                if all(t is None for t in tags):
                    continue
                if any(t is None for t in tags):
                    for t in tags:
                        self.drop(t, "a weight shared with a layer that keeps that size")
                    continue
                self.unify([t for t in tags if t is not None], 0, "a shared (tied) weight")

    def check_guards(self) -> list[str]:
        """Pin widths that traced control flow branched on; return the modules that branched on tensor values."""
        data = []
        for guard in self.tr.guards:
            node = guard.node
            if guard.kind == "len" and isinstance(self.val(node), torch.Size):
                continue  # len(x.shape) is the rank, not a size
            if guard.kind in ("len", "iter") and self.is_tensor(node):
                self.guard_size(node, 0, guard.module)  # len() of a tensor is the size of its first dim
                continue
            if self.is_tensor(node) or node in self.data:
                data.append(guard.module)  # bool() of a value computed from tensor values
                continue
            for x, d in self.deps.get(node, set()):
                self.guard_size(x, d, guard.module)
        return data

    def guard_size(self, x: fx.Node, d: int | None, module: str) -> None:
        t = self.tag(x)
        if t is not None and (d is None or d == t.dim):
            self.drop(t, f"the forward code of {module or 'the model'} branches on this width")


def _attr(m: nn.Module, dotted: str) -> Any:
    for part in dotted.split("."):
        m = getattr(m, part, None)
    return m


def _untagged(v: Any) -> Any:
    return [None] * len(v) if isinstance(v, (list, tuple)) else None


def _flatten_nodes(a: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(a, lambda n: out.append(n) or n)
    return out


def analyse(tr: Trace, root: nn.Module, opaque: dict[str, str]) -> Analysis:
    """Tags, groups and convertible layers of a traced model (``opaque``: ``{path: reason}`` left fixed)."""
    return Analyser(tr, root, opaque).run()
