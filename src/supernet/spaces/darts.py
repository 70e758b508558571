"""The DARTS cell search space (Liu, Simonyan & Yang, ICLR 2019), its genotypes and its evaluation network.

**Supernet** (as the search network of the DARTS code): a stem Conv3x3(3, 3C, no bias) + BN, ``layers`` cells
(reduction cells at ``layers // 3`` and ``2 * layers // 3`` double the channels and halve the resolution),
global average pooling and a linear classifier. A cell preprocesses its two inputs (the outputs of the two
previous cells) with ReLU-Conv1x1-BN, or FactorizedReduce when the previous cell reduced; each of its ``nodes``
(4) intermediate nodes sums two operations applied to two of its predecessors (the two cell inputs and the
earlier nodes); the cell outputs the channel concatenation of all intermediate nodes. Candidate operations are
`DARTS_OPS` (sep_conv 3x3/5x5, dil_conv 3x3/5x5, max/avg_pool 3x3, skip_connect), built as in DARTS' search
network: BN without affine parameters, pools followed by a BN, stride 2 on the edges from the cell inputs of a
reduction cell (skip_connect is then a FactorizedReduce).

**Decisions.** As in DARTS, every normal cell shares one set of decisions and every reduction cell another.
Node ``i`` (0-based) of cell type ``t`` (``normal`` / ``reduce``) has four decisions, one per entry of a
DARTS genotype::

    t.node{i}.in0, t.node{i}.op0, t.node{i}.in1, t.node{i}.op1

``in{j}`` is the predecessor the node's ``j``-th input comes from (``0``, ``1``: the cell inputs; ``k >= 2``:
node ``k - 2``), ``op{j}`` the operation applied to it. So *every* arch dict is a valid DARTS cell pair and maps
one to one onto an official genotype (`to_genotype` / `from_genotype`, entry order kept). Uniform sampling, the
fair / sandwich / progressive strategies, black-box search (Optuna samples each decision independently),
evolution's mutations, arch keys, extraction and export therefore only ever see valid archs: nothing needs
rejection sampling or repair.

**How gradient methods mix it (the reconciliation).** DARTS relaxes a cell as "every edge ``k -> i`` is a
softmax mixture of 8 ops, one of which is ``none``", and only afterwards picks the top-2 edges per node. Here
each edge ``k -> i`` owns one module per op (the same weights as DARTS' mixed op, minus ``none``), shared by the
node's two input slots. Under mixture weights (``sn.gradient``: DARTS softmax, DrNAS Dirichlet, GDAS hard
Gumbel, ProxylessNAS two paths) a node computes

    node_i = sum_k sum_o W[k, o] * op_{k,o}(state_k),   W[k, o] = sum_j p(in_j = k) * p(op_j = o)

running each edge op once (the memory of DARTS' mixed op). This is DARTS' mixture over *all* edges with
edge-normalised weights: the strength of edge ``k -> i`` is ``p(in_0 = k) + p(in_1 = k)`` and the strengths of
a node's edges sum to 2, the relaxed form of "two inputs per node" (PC-DARTS' edge normalisation, with two
slots). ``none`` has no option of its own: its only role in DARTS' mixture is to let an edge fade out, which the
input weights do here; and a genotype never holds ``none`` (DARTS' ``genotype()`` skips it), so an argmax can
never pick a degenerate "none" cell. A hard pick (GDAS, a settled DARTS-PT decision) runs exactly the picked
edge; perturbation selection (DARTS-PT) masks inputs (its topology step) and ops (its operation step) alike.

**Limitations** (stated plainly):

- The two slots of a node are symmetric: ``(in0, op0, in1, op1) = (a, x, b, y)`` and ``(b, y, a, x)`` run the
  same subnet with the same weights but are two arch dicts (two arch keys), so a search may evaluate such a
  pair twice, and an arch may give both slots the same input (a legal genotype, which DARTS' own derivation
  never yields). `DartsSpace.derive_arch` applies DARTS' derivation (two *distinct* strongest edges, best op
  each) to the probabilities a gradient run learnt; the gradient strategies' own ``final_arch`` is the
  per-decision argmax, which may pick one input twice.
- The mixture is not DARTS' exact parameterisation (8 alphas per edge, ``none`` included): the alphas are
  factorised per node into input and op weights, 2 x (i + 2) + 2 x 7 numbers for node ``i``.
- Extracted subnets are the search network's cells (BN without affine parameters); the network one trains from
  scratch after the search is `darts_network` (more cells and channels, auxiliary head, drop-path).

**Evaluation network** (`darts_network`, the DARTS code's ``NetworkCIFAR``): the same macro structure built from
a genotype with affine BN, ``C = 36`` and ``layers = 20`` by default, an auxiliary head after cell
``2 * layers // 3`` (returning ``(logits, aux_logits)`` in training mode) and drop-path on every non-identity op
in training. The published DARTS_V2 genotype gives 3,349,342 parameters without the auxiliary head (the figure
the DARTS code prints and the paper's 3.3M) and 3,825,768 with it (CIFAR-10).
"""

from __future__ import annotations

import ast
import operator
from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..blocks import Zero
from ..space import Choice, SuperModule
from ..space.base import Searchable, extract_module
from ..space.superposition import mix_of
from .registry import register_space

Genotype = namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
"""The DARTS code's genotype: ``normal`` / ``reduce`` list ``(op, input)`` pairs, two per intermediate node
(input ``0``, ``1``: the cell inputs, ``k >= 2``: node ``k - 2``); ``*_concat`` lists the states concatenated
into the cell output (``[2, 3, 4, 5]`` for 4 nodes)."""

DARTS_OPS: tuple[str, ...] = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
"""The candidate operations of the space: DARTS' ``PRIMITIVES`` in their order, without ``none``."""

DARTS_PRIMITIVES: tuple[str, ...] = ("none", *DARTS_OPS)
"""DARTS' ``PRIMITIVES`` (the columns of its alpha matrices, used by `genotype_from_edge_weights`)."""

EVAL_OPS: tuple[str, ...] = (*DARTS_PRIMITIVES, "sep_conv_7x7", "conv_7x1_1x7")
"""Every op name the evaluation network builds (the DARTS code's ``OPS``: also NASNet / AmoebaNet genotypes)."""

CELL_TYPES: tuple[str, ...] = ("normal", "reduce")

DARTS_V1 = Genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
    reduce_concat=[2, 3, 4, 5],
)
"""The published first-order DARTS cell (``DARTS_V1`` in the DARTS code's ``genotypes.py``)."""

DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)
"""The published second-order DARTS cell (``DARTS_V2`` = ``DARTS``; 2.76% CIFAR-10 error, 3.3M parameters)."""


class GenotypeError(ValueError):
    """A genotype is malformed, or does not fit the space or network it is given to (the message says where)."""


# ---------------------------------------------------------------------------------------------------------------
# Plain building blocks, as in the DARTS code (they read no choice, so they survive extraction unchanged). Each
# keeps the DARTS attribute names (``op``, ``conv_1``...), so an evaluation network's state-dict keys are those of
# the DARTS code.


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d (no bias) -> BatchNorm2d: the cell's input preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU -> dilated depthwise conv -> pointwise conv -> BN (``dil_conv_KxK``)."""

    def __init__(
        self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, dilation: int, affine: bool = True
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked (ReLU -> depthwise conv -> pointwise conv -> BN), the first with the stride (``sep_conv_KxK``)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(c_in, affine=affine),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, kernel_size=1, padding=0, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """ReLU, then two stride-2 1x1 convs (the second on the input shifted by one pixel) concatenated, then BN.

    Halves the resolution (even input sizes); ``c_out`` must be even.
    """

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


def darts_op(name: str, channels: int, stride: int, affine: bool = True, search: bool = False) -> nn.Module:
    """A fresh operation ``name`` (one of `EVAL_OPS`) on ``channels`` channels, as the DARTS code builds it.

    Args:
        name: the op name.
        channels: input = output channels.
        stride: 1, or 2 on the edges from the inputs of a reduction cell.
        affine: BN with learnable scale and shift (the evaluation network) or without (the search network).
        search: the search network's variant: pools are followed by a BatchNorm2d (DARTS' ``MixedOp``).
    """
    if name == "none":
        return Zero(stride)
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        pool: nn.Module = (
            nn.MaxPool2d(3, stride=stride, padding=1)
            if name == "max_pool_3x3"
            else nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        )
        return nn.Sequential(pool, nn.BatchNorm2d(channels, affine=False)) if search else pool
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels, affine=affine)
    if name in ("sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7"):
        k = int(name[-1])
        return SepConv(channels, channels, k, stride, k // 2, affine=affine)
    if name in ("dil_conv_3x3", "dil_conv_5x5"):
        k = int(name[-1])
        return DilConv(channels, channels, k, stride, k - 1, 2, affine=affine)
    if name == "conv_7x1_1x7":
        return nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(channels, channels, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(channels, channels, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(channels, affine=affine),
        )
    raise ValueError(f"unknown DARTS op {name!r}; expected one of {list(EVAL_OPS)}")


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole examples of ``x`` with probability ``drop_prob`` and scale the kept ones by ``1 / (1 - p)``."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


# ---------------------------------------------------------------------------------------------------------------
# The supernet: cells whose nodes choose two inputs and an op for each.


def _weight_product(a: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor | float:
    return a * b


def _support(choice: Choice) -> list[tuple[int, torch.Tensor | float]]:
    """``(option index, weight)`` of the options of ``choice`` that run: the active one with weight 1 outside a
    mixture, the picked one (straight-through weight) for a hard pick, every one (or the sampled paths) otherwise."""
    mix = mix_of(choice)
    if mix is None:
        return [(choice.index(choice.current), 1.0)]
    if mix.index is not None:
        return [(mix.index, mix.weights[mix.index])]
    indices = mix.paths if mix.paths is not None else range(len(choice.options))
    return [(i, mix.weights[i]) for i in indices]


class DartsNode(Searchable):
    """An intermediate node of a supernet cell: two (input, op) slots over shared per-edge operations.

    Args:
        edges: for each predecessor ``k`` (cell inputs, then earlier nodes), ``{op name: module}`` of the ops on
            the edge ``k -> node`` (both slots use these same modules).
        inputs: the ``in0`` and ``in1`` decisions (options: predecessor indices).
        ops: the ``op0`` and ``op1`` decisions (options: op names, the keys of every ``edges`` entry).

    Outside a mixture the node computes ``op0(state[in0]) + op1(state[in1])``; under mixture weights it runs each
    edge op with non-zero weight once, weighted by ``sum_j p(in_j = k) p(op_j = o)`` (see the module docstring).
    """

    def __init__(self, edges: Sequence[Mapping[str, nn.Module]], inputs: tuple[Choice, Choice],
                 ops: tuple[Choice, Choice]) -> None:
        super().__init__()
        if len(edges) < 1:
            raise ValueError("a DARTS node needs at least one predecessor")
        self.edges = nn.ModuleList([nn.ModuleDict(dict(e)) for e in edges])
        for c in inputs:
            if tuple(c.options) != tuple(range(len(edges))):
                raise ValueError(f"input decision {c.name!r} must have options 0..{len(edges) - 1}, got {c.options}")
        for c in ops:
            missing = [o for o in c.options if any(o not in e for e in self.edges)]
            if missing:
                raise ValueError(f"op decision {c.name!r} has options without a module on every edge: {missing}")
        self.in0, self.in1 = inputs
        self.op0, self.op1 = ops

    def search_values(self) -> dict[str, Any]:
        return {"in0": self.in0, "op0": self.op0, "in1": self.in1, "op1": self.op1}

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        slots = ((self.in0, self.op0), (self.in1, self.op1))
        if all(mix_of(c) is None for slot in slots for c in slot):
            k0, k1 = self.in0.current, self.in1.current
            return self.edges[k0][self.op0.current](states[k0]) + self.edges[k1][self.op1.current](states[k1])
        weights: dict[tuple[int, str], torch.Tensor | float] = {}
        for inp, op in slots:
            for k, wk in _support(inp):
                for o, wo in _support(op):
                    key = (inp.options[k], op.options[o])
                    w = _weight_product(wk, wo)
                    weights[key] = w if key not in weights else weights[key] + w
        out: torch.Tensor | None = None
        for (k, name), w in weights.items():
            y = self.edges[k][name](states[k])
            term = y * (w.to(y.dtype) if isinstance(w, torch.Tensor) else w)
            out = term if out is None else out + term
        assert out is not None
        return out

    def extract(self) -> CellNode:
        k0, k1 = int(self.in0.current), int(self.in1.current)
        return CellNode(
            extract_module(self.edges[k0][self.op0.current]), k0,
            extract_module(self.edges[k1][self.op1.current]), k1,
        )


class CellNode(nn.Module):
    """A node of an extracted cell: ``op_a(states[index_a]) + op_b(states[index_b])``."""

    def __init__(self, op_a: nn.Module, index_a: int, op_b: nn.Module, index_b: int) -> None:
        super().__init__()
        self.op_a, self.op_b = op_a, op_b
        self.index_a: int = index_a
        self.index_b: int = index_b

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.op_a(states[self.index_a]) + self.op_b(states[self.index_b])


class SearchCell(nn.Module):
    """A cell of the supernet (or of a subnet extracted from it): preprocess both inputs, run the nodes in order
    (each sees every earlier state), concatenate the intermediate nodes along the channels."""

    def __init__(self, preprocess0: nn.Module, preprocess1: nn.Module, nodes: Sequence[nn.Module],
                 reduction: bool) -> None:
        super().__init__()
        self.preprocess0, self.preprocess1 = preprocess0, preprocess1
        self.nodes = nn.ModuleList(nodes)
        self.reduction: bool = reduction

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in self.nodes:
            states.append(node(states))
        return torch.cat(states[2:], dim=1)


class SearchNetwork(nn.Module):
    """Stem, cells (each fed the outputs of the two previous cells), global average pool, classifier."""

    def __init__(self, stem: nn.Module, cells: Sequence[nn.Module], classifier: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(torch.flatten(self.global_pooling(s1), 1))


# ---------------------------------------------------------------------------------------------------------------
# Genotypes.


def decision_names(nodes: int = 4) -> list[str]:
    """The decision names of the space in its order: normal cell nodes, then reduction cell nodes."""
    return [f"{t}.node{i}.{d}" for t in CELL_TYPES for i in range(nodes) for d in ("in0", "op0", "in1", "op1")]


def _index(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise GenotypeError(f"{what} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise GenotypeError(f"{what} must be an int, got {value!r}") from None


def _string_genotype(text: str) -> Genotype:
    """Parse ``Genotype(normal=[...], normal_concat=..., ...)`` (as the DARTS code prints it; ``range(a, b)`` allowed)
    without evaluating code."""
    example = "Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=...)"
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as err:
        raise GenotypeError(f"genotype string is not Python syntax ({err.msg}); expected {example}") from None
    func = tree.func if isinstance(tree, ast.Call) else None
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name != "Genotype":
        raise GenotypeError(f"genotype string must be a Genotype(...) call, expected {example}")
    assert isinstance(tree, ast.Call)

    def literal(node: ast.expr, field: str) -> Any:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            if node.keywords or not 1 <= len(node.args) <= 3:
                raise GenotypeError(f"genotype field {field!r}: range(...) takes 1 to 3 positional ints")
            args = [literal(a, field) for a in node.args]
            return list(range(*(_index(a, f"genotype field {field!r}: range argument") for a in args)))
        try:
            return ast.literal_eval(node)
        except ValueError:
            raise GenotypeError(f"genotype field {field!r} is not a literal: {ast.unparse(node)}") from None

    if len(tree.args) > len(Genotype._fields):
        raise GenotypeError(f"Genotype takes {len(Genotype._fields)} fields, got {len(tree.args)} positional values")
    fields = {f: literal(a, f) for f, a in zip(Genotype._fields, tree.args, strict=False)}
    for kw in tree.keywords:
        if kw.arg not in Genotype._fields:
            raise GenotypeError(f"unknown genotype field {kw.arg!r}; fields: {', '.join(Genotype._fields)}")
        if kw.arg in fields:
            raise GenotypeError(f"genotype field {kw.arg!r} given twice")
        fields[kw.arg] = literal(kw.value, kw.arg)
    return _from_fields(fields)


def _from_fields(fields: Mapping[str, Any]) -> Genotype:
    missing = [f for f in Genotype._fields if f not in fields]
    if missing:
        raise GenotypeError(f"genotype lacks field(s) {missing}; a genotype has {', '.join(Genotype._fields)}")
    extra = [f for f in fields if f not in Genotype._fields]
    if extra:
        raise GenotypeError(f"unknown genotype field(s) {extra}; fields: {', '.join(Genotype._fields)}")
    return Genotype(**{f: fields[f] for f in Genotype._fields})


def as_genotype(genotype: Any) -> Genotype:
    """``genotype`` as a `Genotype` of plain lists: a genotype namedtuple (ours or the DARTS code's), any object
    with its four fields, a dict of them (e.g. read back from JSON) or the string the DARTS code prints.

    Entries become ``(op, input)`` tuples and concat lists of ints; each cell type must list an even number (at
    least 2) of entries, inputs in range for their node, ops among `EVAL_OPS`, concat distinct existing states.

    Raises:
        GenotypeError: what is malformed, naming the cell type and node or field.
    """
    if isinstance(genotype, str):
        genotype = _string_genotype(genotype)
    elif isinstance(genotype, Mapping):
        genotype = _from_fields(genotype)
    elif not isinstance(genotype, Genotype):
        if not all(hasattr(genotype, f) for f in Genotype._fields):
            raise GenotypeError(
                f"a genotype must be a Genotype, a dict or a 'Genotype(...)' string with fields "
                f"{', '.join(Genotype._fields)}; got {type(genotype).__name__}"
            )
        genotype = Genotype(*(getattr(genotype, f) for f in Genotype._fields))
    out: dict[str, Any] = {}
    for t in CELL_TYPES:
        entries = getattr(genotype, t)
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
            raise GenotypeError(f"genotype field {t!r} must be a list of (op, input) pairs, got {entries!r}")
        if len(entries) < 2 or len(entries) % 2:
            raise GenotypeError(
                f"genotype field {t!r} has {len(entries)} entries; it needs two (op, input) pairs per node"
            )
        cell = []
        for n, entry in enumerate(entries):
            node = n // 2
            where = f"genotype {t} node {node} entry {n % 2} {entry!r}"
            if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
                raise GenotypeError(f"{where}: expected an (op, input) pair")
            op, src = entry
            if not isinstance(op, str) or op not in EVAL_OPS:
                raise GenotypeError(f"{where}: unknown op {op!r}; expected one of {list(EVAL_OPS)}")
            src = _index(src, f"{where}: the input")
            if not 0 <= src < node + 2:
                raise GenotypeError(
                    f"{where}: input {src} out of range; node {node} takes 0, 1 (the cell inputs) or an earlier "
                    f"node (2..{node + 1})" if node else f"{where}: input {src} out of range; node 0 takes 0 or 1"
                )
            cell.append((op, src))
        steps = len(entries) // 2
        concat = getattr(genotype, f"{t}_concat")
        if isinstance(concat, (str, bytes)) or not isinstance(concat, (Sequence, range)):
            raise GenotypeError(f"genotype field '{t}_concat' must be a list of state indices, got {concat!r}")
        concat = [_index(c, f"genotype field '{t}_concat' entry") for c in concat]
        if not concat or len(set(concat)) != len(concat) or not all(0 <= c < steps + 2 for c in concat):
            raise GenotypeError(
                f"genotype field '{t}_concat' is {concat}; it must list distinct states among 0..{steps + 1} "
                f"(e.g. {list(range(2, steps + 2))})"
            )
        out[t], out[f"{t}_concat"] = cell, concat
    return Genotype(**out)


def to_genotype(arch: Mapping[str, Any], nodes: int = 4) -> Genotype:
    """The official genotype of ``arch`` (``{decision: option}`` of the DARTS space with ``nodes`` nodes).

    Node ``i`` of cell type ``t`` contributes ``(t.node{i}.op0, t.node{i}.in0), (t.node{i}.op1, t.node{i}.in1)``;
    both concat lists are ``[2, ..., nodes + 1]``.

    Raises:
        GenotypeError: a decision is missing or holds an invalid option.
    """
    if not isinstance(arch, Mapping):
        raise GenotypeError(f"an arch must be a dict {{decision: option}}, got {type(arch).__name__}")
    cells: dict[str, list[tuple[str, int]]] = {}
    for t in CELL_TYPES:
        cell = []
        for i in range(nodes):
            for j in (0, 1):
                op_name, in_name = f"{t}.node{i}.op{j}", f"{t}.node{i}.in{j}"
                if op_name not in arch or in_name not in arch:
                    raise GenotypeError(f"arch lacks decision {op_name if op_name not in arch else in_name!r}")
                op, src = arch[op_name], arch[in_name]
                if op not in DARTS_OPS:
                    raise GenotypeError(f"decision {op_name!r} is {op!r}; expected one of {list(DARTS_OPS)}")
                src = _index(src, f"decision {in_name!r}")
                if not 0 <= src < i + 2:
                    raise GenotypeError(f"decision {in_name!r} is {src}; node {i} takes inputs 0..{i + 1}")
                cell.append((op, src))
        cells[t] = cell
    concat = list(range(2, nodes + 2))
    return Genotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=list(concat))


def from_genotype(genotype: Any, nodes: int = 4) -> dict[str, Any]:
    """The arch dict (in the space's decision order) of a genotype of the DARTS space with ``nodes`` nodes.

    ``genotype`` may be anything `as_genotype` takes. The entry order is kept, so
    ``to_genotype(from_genotype(g)) == g`` for every genotype of the space.

    Raises:
        GenotypeError: the genotype is malformed, has another number of nodes, an op outside `DARTS_OPS`
            (``none``, ``sep_conv_7x7``... can still be built by `darts_network`) or a concat other than
            ``[2, ..., nodes + 1]``.
    """
    g = as_genotype(genotype)
    arch: dict[str, Any] = {}
    for t in CELL_TYPES:
        entries = getattr(g, t)
        if len(entries) != 2 * nodes:
            raise GenotypeError(
                f"genotype {t} cell has {len(entries) // 2} nodes; this DARTS space has {nodes} "
                f"({2 * nodes} (op, input) entries)"
            )
        concat = getattr(g, f"{t}_concat")
        if concat != list(range(2, nodes + 2)):
            raise GenotypeError(
                f"genotype field '{t}_concat' is {concat}; the DARTS space concatenates every node: "
                f"{list(range(2, nodes + 2))} (darts_network builds other concats)"
            )
        for n, (op, src) in enumerate(entries):
            i, j = divmod(n, 2)
            if op not in DARTS_OPS:
                raise GenotypeError(
                    f"genotype {t} node {i} entry {j} {(op, src)!r}: op {op!r} is not in the DARTS search space "
                    f"{list(DARTS_OPS)} (darts_network can still build it)"
                )
            arch[f"{t}.node{i}.in{j}"] = src
            arch[f"{t}.node{i}.op{j}"] = op
    return {name: arch[name] for name in decision_names(nodes)}


def _top_two(weights: Sequence[Sequence[float]], ops: Sequence[str]) -> list[tuple[str, int]]:
    """DARTS' derivation for one node: the two predecessors whose strongest non-``none`` op weighs most (strongest
    first, ties to the lower index), each with its best non-``none`` op."""
    def best(k: int) -> int:
        row = weights[k]
        return max((o for o in range(len(ops)) if ops[o] != "none"), key=lambda o: (row[o], -o))

    edges = sorted(range(len(weights)), key=lambda k: -weights[k][best(k)])[:2]
    return [(ops[best(k)], k) for k in edges]


def genotype_from_edge_weights(normal: Any, reduce: Any, nodes: int = 4) -> Genotype:
    """A genotype from DARTS-style per-edge op weights, by DARTS' own rule (``Network.genotype()``).

    Args:
        normal, reduce: ``(edges, 8)`` arrays (``edges = 2 + 3 + ... = 14`` for 4 nodes), rows in DARTS' edge
            order (node 0's predecessors 0, 1, then node 1's 0, 1, 2, ...), columns in `DARTS_PRIMITIVES` order
            (e.g. ``softmax(alphas_normal)`` of a DARTS run).
        nodes: intermediate nodes per cell.

    For each node: the two predecessors whose strongest op other than ``none`` weighs most, each with that op.
    """
    cells = {}
    for t, w in (("normal", normal), ("reduce", reduce)):
        rows = torch.as_tensor(w, dtype=torch.float64)
        expected = sum(i + 2 for i in range(nodes))
        if rows.shape != (expected, len(DARTS_PRIMITIVES)):
            raise GenotypeError(
                f"{t} edge weights have shape {tuple(rows.shape)}; expected ({expected}, {len(DARTS_PRIMITIVES)})"
            )
        gene, start = [], 0
        for i in range(nodes):
            gene += _top_two(rows[start: start + i + 2].tolist(), DARTS_PRIMITIVES)
            start += i + 2
        cells[t] = gene
    concat = list(range(2, nodes + 2))
    return Genotype(normal=cells["normal"], normal_concat=concat, reduce=cells["reduce"], reduce_concat=list(concat))


# ---------------------------------------------------------------------------------------------------------------
# The space.


class DartsSpace(SuperModule):
    """The DARTS supernet: a `SuperModule` that also speaks DARTS genotypes."""

    nodes: int = 4

    def to_genotype(self, arch: Mapping[str, Any] | None = None) -> Genotype:
        """The official genotype of ``arch`` (default: the active arch); the arch is validated first."""
        return to_genotype(self.validate(self.arch if arch is None else arch), self.nodes)

    def from_genotype(self, genotype: Any) -> dict[str, Any]:
        """The arch dict of a genotype (a `Genotype`, a dict, or the string the DARTS code prints)."""
        return self.validate(from_genotype(genotype, self.nodes))

    def derive_arch(self, probs: Mapping[str, Sequence[float]]) -> dict[str, Any]:
        """The arch DARTS' derivation picks from learnt option probabilities.

        Args:
            probs: ``{decision: probabilities of its options}`` for every decision, e.g.
                ``run.strategy.alphas.probs(run.strategy.mixer)`` or the last entry of a gradient run's alpha
                history.

        Each edge ``k -> i`` weighs op ``o`` by ``sum_j p(in_j = k) p(op_j = o)`` (the weights the mixture ran
        with); each node then keeps its two strongest *distinct* predecessors, strongest first, each with its
        best op (DARTS' ``genotype()``). Unlike a per-decision argmax this never gives a node one input twice.
        """
        arch: dict[str, Any] = {}
        for t in CELL_TYPES:
            for i in range(self.nodes):
                names = [f"{t}.node{i}.{d}" for d in ("in0", "op0", "in1", "op1")]
                p = {}
                for n in names:
                    options = self.choices[n]
                    if n not in probs:
                        raise KeyError(f"probs lack decision {n!r}")
                    if len(probs[n]) != len(options):
                        raise ValueError(f"probs[{n!r}] has {len(probs[n])} entries; {n!r} has {len(options)} options")
                    p[n] = [float(v) for v in probs[n]]
                w = [
                    [sum(p[names[2 * j]][k] * p[names[2 * j + 1]][o] for j in (0, 1)) for o in range(len(DARTS_OPS))]
                    for k in range(i + 2)
                ]
                (op_a, k_a), (op_b, k_b) = _top_two(w, DARTS_OPS)
                arch.update({names[0]: k_a, names[1]: op_a, names[2]: k_b, names[3]: op_b})
        return self.validate(arch)

    def network(self, arch: Mapping[str, Any] | None = None, **kwargs: Any) -> DartsNetwork:
        """The evaluation network of ``arch`` (default: the active arch): `darts_network` of its genotype."""
        return darts_network(self.to_genotype(arch), **kwargs)


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"darts: {what} must be an int >= {minimum}, got {value!r}")
    return value


def _reduction_cells(layers: int) -> tuple[int, int]:
    return layers // 3, 2 * layers // 3


@register_space("darts")
def darts(C: int = 16, layers: int = 8, num_classes: int = 10, nodes: int = 4) -> DartsSpace:
    """The DARTS cell space: normal and reduction cells whose nodes pick two inputs and an op for each.

    Args:
        C: channels of the first cells (DARTS searches with 16); the stem has ``3 * C``, reduction cells double.
        layers: cells (DARTS searches with 8); reduction cells at ``layers // 3`` and ``2 * layers // 3``. At least
            3, so that both cell types exist.
        num_classes: classifier outputs.
        nodes: intermediate nodes per cell (DARTS: 4).

    Decisions (shared by every cell of a type): ``{normal,reduce}.node{i}.{in0,op0,in1,op1}`` for ``i < nodes``;
    ``in`` is a predecessor index ``0..i+1``, ``op`` one of `DARTS_OPS`. Each edge ``k -> i`` owns one module per
    op, used by both slots. The max arch is every slot ``sep_conv_5x5`` on the latest predecessor; the min arch
    every slot ``max_pool_3x3`` on input 0. Inputs are ``(batch, 3, H, W)`` images with H, W divisible by 4; the
    output is logits ``(batch, num_classes)``. See the module docstring for how gradient methods mix the space.
    """
    C = _positive_int(C, "C")
    layers = _positive_int(layers, "layers", 3)
    num_classes = _positive_int(num_classes, "num_classes")
    nodes = _positive_int(nodes, "nodes")
    reductions = _reduction_cells(layers)
    sizes = {op: sum(p.numel() for p in darts_op(op, C, 1, affine=False, search=True).parameters()) for op in DARTS_OPS}
    choices: dict[str, Choice] = {}
    for name in decision_names(nodes):
        i = int(name.split(".")[1][4:])
        c = Choice(tuple(range(i + 2)) if ".in" in name else DARTS_OPS, name=name)
        if ".op" in name:
            c.size_key = dict(sizes)
        c.current = c.largest()
        choices[name] = c

    def cell(c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> SearchCell:
        t = "reduce" if reduction else "normal"
        pre0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        pre1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        node_modules = []
        for i in range(nodes):
            edges = [
                {op: darts_op(op, c, 2 if reduction and k < 2 else 1, affine=False, search=True) for op in DARTS_OPS}
                for k in range(i + 2)
            ]
            node_modules.append(DartsNode(
                edges,
                (choices[f"{t}.node{i}.in0"], choices[f"{t}.node{i}.in1"]),
                (choices[f"{t}.node{i}.op0"], choices[f"{t}.node{i}.op1"]),
            ))
        return SearchCell(pre0, pre1, node_modules, reduction)

    c_curr = 3 * C
    stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
    c_pp, c_p, c_curr = c_curr, c_curr, C
    cells, reduction_prev = [], False
    for i in range(layers):
        reduction = i in reductions
        if reduction:
            c_curr *= 2
        cells.append(cell(c_pp, c_p, c_curr, reduction, reduction_prev))
        reduction_prev = reduction
        c_pp, c_p = c_p, nodes * c_curr
    space = DartsSpace(SearchNetwork(stem, cells, nn.Linear(c_p, num_classes)))
    space.nodes = nodes
    return space


# ---------------------------------------------------------------------------------------------------------------
# The evaluation network built from a genotype (the DARTS code's NetworkCIFAR).


class EvalCell(nn.Module):
    """A cell of the evaluation network, compiled from the genotype's entries for its type."""

    def __init__(self, entries: Sequence[tuple[str, int]], concat: Sequence[int], c_pp: int, c_p: int, c: int,
                 reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        self.reduction = reduction
        self._steps = len(entries) // 2
        self._concat = list(concat)
        self.multiplier = len(self._concat)
        self._ops = nn.ModuleList(
            [darts_op(name, c, 2 if reduction and index < 2 else 1, affine=True) for name, index in entries]
        )
        self._indices = [index for _, index in entries]

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self._steps):
            op_a, op_b = self._ops[2 * i], self._ops[2 * i + 1]
            h_a = op_a(states[self._indices[2 * i]])
            h_b = op_b(states[self._indices[2 * i + 1]])
            if self.training and drop_prob > 0.0:
                if not isinstance(op_a, nn.Identity):
                    h_a = drop_path(h_a, drop_prob)
                if not isinstance(op_b, nn.Identity):
                    h_b = drop_path(h_b, drop_prob)
            states.append(h_a + h_b)
        return torch.cat([states[i] for i in self._concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """The auxiliary classifier on the 8x8 feature map after cell ``2 * layers // 3`` (32x32 inputs).

    As in the DARTS code, except that its first ReLU is not in place (the DARTS one rectifies the cell output in
    place; every consumer of that output starts with a ReLU, so the results agree).
    """

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class DartsNetwork(nn.Module):
    """The evaluation network of a genotype (the DARTS code's ``NetworkCIFAR``); see `darts_network`.

    Attributes:
        genotype: the genotype it was built from.
        drop_path_prob: drop-path probability used in training mode (the DARTS code raises it linearly from 0
            over training: set it before each epoch).
    """

    def __init__(self, genotype: Genotype, C: int, layers: int, num_classes: int, auxiliary: bool,
                 drop_path_prob: float) -> None:
        super().__init__()
        self.genotype = genotype
        self._layers = layers
        self._auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        c_curr = 3 * C
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = c_p
        for i in range(layers):
            reduction = i in _reduction_cells(layers)
            if reduction:
                c_curr *= 2
            t = "reduce" if reduction else "normal"
            cell = EvalCell(getattr(genotype, t), getattr(genotype, f"{t}_concat"), c_pp, c_p, c_curr, reduction,
                            reduction_prev)
            reduction_prev = reduction
            self.cells.append(cell)
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self.auxiliary_index:
                c_aux = c_p
        if auxiliary:
            self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, num_classes)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    @property
    def auxiliary_index(self) -> int:
        """The cell after which the auxiliary head reads the features (``2 * layers // 3``)."""
        return 2 * self._layers // 3

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits; in training mode with the auxiliary head, ``(logits, auxiliary logits)``."""
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.auxiliary_index and self._auxiliary and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        return (logits, aux) if aux is not None else logits


def darts_network(
    genotype: Any,
    C: int = 36,
    layers: int = 20,
    num_classes: int = 10,
    auxiliary: bool = True,
    drop_path_prob: float = 0.2,
) -> DartsNetwork:
    """The network trained from scratch after a DARTS search (the DARTS code's CIFAR ``NetworkCIFAR``).

    Args:
        genotype: a `Genotype` (e.g. `DARTS_V2`, or ``space.to_genotype(arch)``), a dict of its fields or the
            string the DARTS code prints; any number of nodes, any op of `EVAL_OPS`, any concat.
        C: channels of the first cells (36 for the DARTS CIFAR-10 network); the stem has ``3 * C``.
        layers: cells (20); reduction cells at ``layers // 3`` and ``2 * layers // 3``.
        num_classes: classifier outputs.
        auxiliary: add the auxiliary head after cell ``2 * layers // 3`` (its parameters are named
            ``auxiliary_head.*``; the DARTS code leaves them out of the parameter count it prints).
        drop_path_prob: probability of dropping each non-identity op's output per example, in training only
            (attribute ``drop_path_prob``; the DARTS code schedules it from 0 to 0.2 over the epochs).

    Returns:
        A plain ``nn.Module``: in training mode with ``auxiliary``, ``forward`` returns ``(logits, aux_logits)``;
        otherwise the logits. Inputs are 32x32 images (the auxiliary head assumes an 8x8 map at its cell;
        without it, any size divisible by 4).

    Raises:
        GenotypeError: the genotype is malformed (the message says where).
        ValueError: a non-positive size or a drop-path probability outside [0, 1).
    """
    g = as_genotype(genotype)
    C = _positive_int(C, "C")
    layers = _positive_int(layers, "layers")
    num_classes = _positive_int(num_classes, "num_classes")
    if isinstance(drop_path_prob, bool) or not isinstance(drop_path_prob, (int, float)) or not 0 <= drop_path_prob < 1:
        raise ValueError(f"darts_network: drop_path_prob must be a number in [0, 1), got {drop_path_prob!r}")
    return DartsNetwork(g, C, layers, num_classes, bool(auxiliary), float(drop_path_prob))
