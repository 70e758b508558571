"""The NAS-Bench-201 cell space (Dong & Yang, ICLR 2020) and its official architecture strings.

Macro structure (as in the benchmark's ``TinyNetwork``): a stem Conv3x3(3, C, no bias) + BN, three stages of
``N`` cells with C, 2C and 4C channels separated by a ResNet basic reduction block, then BN + ReLU, global
average pooling and a linear classifier. Every cell is a 4-node DAG; node ``j`` is the sum over ``i < j`` of
``op_{i->j}(node_i)``, and the cell outputs node 3. Each of the 6 edges picks one of `NB201_OPS`.

All 3N cells share one cell topology, so the space has exactly 6 decisions (``edge_{j}_{i}`` for the edge
``i -> j``), listed in the edge order of the official string: 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2. An arch is
``{edge name: op name}``; ``5 ** 6 = 15,625`` archs in all.

The official string of an arch reads node by node, each edge as ``op~input``::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..blocks import Zero
from ..space import Choice, InvalidOptionError, LayerChoice, MissingDecisionError, SuperModule, UnknownDecisionError
from .registry import register_space

NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
"""The five candidate operations of an edge, in the benchmark's order."""

NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
"""The six edges as ``(to node, from node)``, in the order of the official string."""

NB201_EDGE_NAMES: tuple[str, ...] = tuple(f"edge_{j}_{i}" for j, i in NB201_EDGES)
"""The decision name of each edge, in the order of `NB201_EDGES`."""

_NUM_NODES = 4


class NB201StringError(ValueError):
    """A string is not a well-formed NAS-Bench-201 architecture string."""


# ---------------------------------------------------------------------------------------------------------------
# Plain building blocks (they read no choice, so they survive extraction unchanged).


def relu_conv_bn(c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """ReLU -> Conv2d (no bias, 'same' padding) -> BatchNorm2d: the benchmark's ``nor_conv`` block."""
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(c_out, affine=True, track_running_stats=True),
    )


def nb201_op(name: str, channels: int) -> nn.Module:
    """A fresh candidate operation ``name`` (one of `NB201_OPS`) for a cell with ``channels`` channels."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return relu_conv_bn(channels, channels, 1)
    if name == "nor_conv_3x3":
        return relu_conv_bn(channels, channels, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}; expected one of {list(NB201_OPS)}")


class ResidualReduction(nn.Module):
    """The ResNet basic block that halves the resolution between stages.

    ``ReLU-Conv3x3(stride 2)-BN -> ReLU-Conv3x3-BN``, plus a shortcut ``AvgPool2d(2, 2) -> Conv1x1 (no bias)``.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = relu_conv_bn(c_in, c_out, 3, stride=2)
        self.conv_b = relu_conv_bn(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Cell(nn.Module):
    """A 4-node cell: node ``j`` sums ``edges[k](node_i)`` over its incoming edges ``(j, i)``; returns node 3.

    ``edges`` holds one module per entry of `NB201_EDGES`, in that order (in the supernet each is a
    `LayerChoice`; in an extracted network, the chosen plain op).
    """

    def __init__(self, edges: list[nn.Module]) -> None:
        super().__init__()
        if len(edges) != len(NB201_EDGES):
            raise ValueError(f"an NB201 cell needs {len(NB201_EDGES)} edge modules, got {len(edges)}")
        self.edges = nn.ModuleList(edges)
        # Plain int lists (not a loop over a global) keep the cell TorchScript-compatible once extracted.
        self.sources: list[int] = [i for _, i in NB201_EDGES]
        self.targets: list[int] = [j for j, _ in NB201_EDGES]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor] = [x]
        total = x
        # Edges come grouped by target node, sources ascending: source 0 opens a node's sum, j-1 closes it.
        for k, edge in enumerate(self.edges):
            out = edge(nodes[self.sources[k]])
            total = out if self.sources[k] == 0 else total + out
            if self.sources[k] == self.targets[k] - 1:
                nodes.append(total)
        return nodes[-1]


class NB201Network(nn.Module):
    """Stem, cells and reduction blocks, BN + ReLU, global average pool, classifier; returns logits."""

    def __init__(self, stem: nn.Module, cells: nn.Module, lastact: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.stem, self.cells, self.lastact, self.classifier = stem, cells, lastact, classifier
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


# ---------------------------------------------------------------------------------------------------------------
# Official architecture strings.


def _check_arch(arch: Mapping[str, Any]) -> dict[str, str]:
    """``arch`` in edge order, or a specific error naming the offending decision."""
    if not isinstance(arch, Mapping):
        raise TypeError(f"an NB201 arch must be a dict {{edge name: op name}}, got {type(arch).__name__}")
    for name in arch:
        if name not in NB201_EDGE_NAMES:
            raise UnknownDecisionError(f"unknown decision {name!r}; NB201 decisions are: {', '.join(NB201_EDGE_NAMES)}")
    out = {}
    for name in NB201_EDGE_NAMES:
        if name not in arch:
            raise MissingDecisionError(f"missing decision {name!r} (options: {list(NB201_OPS)})")
        op = arch[name]
        if not isinstance(op, str) or op not in NB201_OPS:
            raise InvalidOptionError(f"decision {name!r} does not allow {op!r}; allowed options: {list(NB201_OPS)}")
        out[name] = op
    return out


def to_nb201_string(arch: Mapping[str, Any]) -> str:
    """The official NAS-Bench-201 string of ``arch`` (``{edge name: op name}``, all 6 edges).

    Raises:
        UnknownDecisionError, MissingDecisionError, InvalidOptionError: naming the decision at fault.
    """
    arch = _check_arch(arch)
    nodes = []
    for j in range(1, _NUM_NODES):
        nodes.append("|" + "|".join(f"{arch[f'edge_{j}_{i}']}~{i}" for i in range(j)) + "|")
    return "+".join(nodes)


def from_nb201_string(s: str) -> dict[str, str]:
    """The arch ``{edge name: op name}`` (in edge order) of an official NAS-Bench-201 string.

    Surrounding whitespace is ignored. The string must have three ``+``-separated nodes; node ``j`` lists its
    ``j`` incoming edges as ``|op~0|op~1|...|`` with the inputs in increasing order.

    Raises:
        NB201StringError: the string is malformed (the message says where and what was expected).
    """
    if not isinstance(s, str):
        raise NB201StringError(f"an NB201 arch string must be a str, got {type(s).__name__}")
    text = s.strip()
    example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    parts = text.split("+")
    if len(parts) != _NUM_NODES - 1:
        raise NB201StringError(
            f"NB201 string {s!r} has {len(parts)} '+'-separated node(s); expected {_NUM_NODES - 1}, e.g. {example}"
        )
    arch: dict[str, str] = {}
    for j, part in enumerate(parts, start=1):
        if len(part) < 2 or not part.startswith("|") or not part.endswith("|"):
            raise NB201StringError(f"node {j} of NB201 string {s!r} is {part!r}; expected '|op~0|...|' between bars")
        tokens = part[1:-1].split("|")
        if len(tokens) != j:
            raise NB201StringError(f"node {j} of NB201 string {s!r} has {len(tokens)} edge(s) {part!r}; expected {j}")
        for i, token in enumerate(tokens):
            op, sep, src = token.partition("~")
            if not sep:
                raise NB201StringError(f"edge {token!r} in node {j} of NB201 string {s!r} lacks '~'; expected 'op~{i}'")
            if src != str(i):
                raise NB201StringError(
                    f"edge {token!r} in node {j} of NB201 string {s!r} has input {src!r}; expected {i} "
                    f"(node {j}'s edges list inputs 0..{j - 1} in order)"
                )
            if op not in NB201_OPS:
                raise NB201StringError(
                    f"edge {token!r} in node {j} of NB201 string {s!r} has unknown op {op!r}; "
                    f"expected one of {list(NB201_OPS)}"
                )
            arch[f"edge_{j}_{i}"] = op
    return {name: arch[name] for name in NB201_EDGE_NAMES}


# ---------------------------------------------------------------------------------------------------------------
# The space.


class NB201Space(SuperModule):
    """The NAS-Bench-201 supernet: a `SuperModule` that also speaks the official arch strings."""

    def to_nb201_string(self, arch: Mapping[str, Any] | None = None) -> str:
        """The official string of ``arch`` (default: the active arch); the arch is validated first."""
        return to_nb201_string(self.validate(self.arch if arch is None else arch))

    def from_nb201_string(self, s: str) -> dict[str, str]:
        """The arch dict of an official string, in this space's decision order."""
        return self.validate(from_nb201_string(s))


def _edge_choices(channels: int) -> list[Choice]:
    """The 6 shared edge decisions, each ranked by its candidates' parameter count (for max/min arch)."""
    sizes = {op: sum(p.numel() for p in nb201_op(op, channels).parameters()) for op in NB201_OPS}
    choices = []
    for name in NB201_EDGE_NAMES:
        c = Choice(NB201_OPS, name=name)
        c.size_key = dict(sizes)
        c.current = c.largest()
        choices.append(c)
    return choices


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"nb201: {what} must be a positive int, got {value!r}")
    return value


@register_space("nb201")
def nb201(C: int = 16, N: int = 5, num_classes: int = 10) -> NB201Space:
    """The NAS-Bench-201 cell space exactly as in the benchmark (3 stages of ``N`` cells, widths C, 2C, 4C).

    Args:
        C: channels of the first stage (the benchmark uses 16).
        N: cells per stage (the benchmark uses 5).
        num_classes: classifier outputs (10 for CIFAR-10, 100 for CIFAR-100, 120 for ImageNet16-120).

    Decisions: ``edge_1_0, edge_2_0, edge_2_1, edge_3_0, edge_3_1, edge_3_2`` shared by every cell, each one
    of `NB201_OPS`. Each candidate op owns its weights (one copy per cell and op). The max arch is all
    ``nor_conv_3x3``, the min arch all ``none``. Inputs are ``(batch, 3, H, W)`` images (H, W divisible by 4);
    the output is logits ``(batch, num_classes)``.
    """
    C = _positive_int(C, "C")
    N = _positive_int(N, "N")
    num_classes = _positive_int(num_classes, "num_classes")
    choices = _edge_choices(C)

    def cell(channels: int) -> NB201Cell:
        return NB201Cell([LayerChoice({op: nb201_op(op, channels) for op in NB201_OPS}, choice=c) for c in choices])

    layers: list[nn.Module] = []
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage > 0:
            layers.append(ResidualReduction(width // 2, width))
        layers.extend(cell(width) for _ in range(N))
    net = NB201Network(
        stem=nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C)),
        cells=nn.Sequential(*layers),
        lastact=nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=False)),
        classifier=nn.Linear(4 * C, num_classes),
    )
    return NB201Space(net)
