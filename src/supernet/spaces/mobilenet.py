"""A Once-for-All / MobileNetV3-like space of inverted-residual (MBConv) networks, sized for small images.

The network is made of plain blocks (`MBConv`, `SqueezeExcite`, `MobileNet`) whose children are entangled
layers, so the same classes serve the supernet and the network extracted from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..space import BatchNorm2d, Choice, Conv2d, Linear, Repeat, SuperModule, derived
from ..space.choice import Value
from .registry import register_space

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "hswish": nn.Hardswish}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor`` (at least ``divisor``), never 10 % below it.

    The usual MobileNet channel rounding, used for the squeeze-excitation width.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _se_width(channels: int) -> int:
    return make_divisible(channels / 4)


class SqueezeExcite(nn.Module):
    """Squeeze-excitation: global average pool, 1x1 reduce + ReLU, 1x1 expand + hard sigmoid, rescale the input."""

    def __init__(self, reduce: nn.Module, expand: nn.Module) -> None:
        super().__init__()
        self.reduce, self.act, self.expand, self.gate = reduce, nn.ReLU(), expand, nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class MBConv(nn.Module):
    """Inverted residual: expand (1x1 conv-BN-act), depthwise (kxk conv-BN-act), SE, project (1x1 conv-BN).

    ``expand`` and ``se`` may be ``nn.Identity``. With ``residual`` the input is added to the output.
    """

    def __init__(
        self, expand: nn.Module, depthwise: nn.Module, se: nn.Module, project: nn.Module, residual: bool
    ) -> None:
        super().__init__()
        self.expand, self.depthwise, self.se, self.project = expand, depthwise, se, project
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class MobileNet(nn.Module):
    """Stem, a first fixed MBConv, the stages, a final 1x1 conv, global average pool, dropout, classifier."""

    def __init__(
        self,
        stem: nn.Module,
        first: nn.Module,
        stages: nn.Module,
        final: nn.Module,
        classifier: nn.Module,
        dropout: float,
    ) -> None:
        super().__init__()
        self.stem, self.first, self.stages, self.final = stem, first, stages, final
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final(self.stages(self.first(self.stem(x))))
        return self.classifier(self.dropout(x.mean((2, 3))))


def _conv_bn(
    c_in: int | Value, c_out: int | Value, kernel: int | Value, stride: int, act: str | None, depthwise: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [
        Conv2d(c_in, c_out, kernel, stride=stride, bias=False, depthwise=depthwise),
        BatchNorm2d(c_out),
    ]
    if act is not None:
        layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


def mbconv(c_in: int, c_out: int, kernel: int | Value, expand: int | Value, stride: int, act: str, se: bool) -> MBConv:
    """One MBConv block; ``kernel`` and ``expand`` may be choices (hidden width ``expand * c_in``)."""
    hidden = expand * c_in
    no_expand = not isinstance(expand, Value) and expand == 1
    squeeze = derived(_se_width, hidden) if isinstance(hidden, Value) else _se_width(hidden)
    return MBConv(
        nn.Identity() if no_expand else _conv_bn(c_in, hidden, 1, 1, act),
        _conv_bn(hidden, hidden, kernel, stride, act, depthwise=True),
        SqueezeExcite(Conv2d(hidden, squeeze, 1), Conv2d(squeeze, hidden, 1)) if se else nn.Identity(),
        _conv_bn(hidden, c_out, 1, 1, None),
        residual=stride == 1 and c_in == c_out,
    )


def _check_options(name: str, options: Sequence[int], low: int) -> tuple[int, ...]:
    options = tuple(options)
    if not options or any(isinstance(o, bool) or not isinstance(o, int) or o < low for o in options):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= {low}, got {options!r}")
    return options


def _per_stage(name: str, values: Sequence[Any], n: int) -> tuple[Any, ...]:
    values = tuple(values)
    if len(values) != n:
        raise ValueError(f"{name} needs one entry per stage ({n} stages from widths[1:]), got {len(values)}: {values}")
    return values


@register_space("mobilenet")
def mobilenet(
    num_classes: int = 10,
    image_size: int = 32,
    in_channels: int = 3,
    widths: Sequence[int] = (16, 24, 32, 64, 96),
    strides: Sequence[int] = (2, 2, 2, 1),
    stem_stride: int = 1,
    depths: Sequence[int] = (2, 3, 4),
    kernel_sizes: Sequence[int] = (3, 5, 7),
    expand_ratios: Sequence[int] = (3, 4, 6),
    activations: Sequence[str] = ("relu", "relu", "hswish", "hswish"),
    use_se: Sequence[bool] = (False, True, False, True),
    feature_dim: int = 256,
    dropout: float = 0.0,
) -> SuperModule:
    """A Once-for-All / MobileNetV3-like space: per stage a depth, per block a kernel size and an expand ratio.

    Layout: stem (3x3 conv, stride ``stem_stride``, BN, hard swish) to ``widths[0]`` channels; a fixed MBConv
    with expand ratio 1 (3x3 depthwise, ReLU, residual); then one stage per entry of ``widths[1:]``, each a
    `Repeat` of ``max(depths)`` MBConv blocks of which the first ``stageN.depth`` run. The first block of a
    stage changes the channel count and applies the stage's stride; the others keep both and add a residual.
    Finally a 1x1 conv to ``feature_dim`` (BN, hard swish), global average pool, dropout and a linear classifier.

    An MBConv block is 1x1 expand conv (hidden = ``expand * in_channels``) + BN + act, kxk depthwise conv
    (smaller kernels are the centred window of the largest) + BN + act, optional squeeze-excitation
    (reduce to ``make_divisible(hidden / 4, 8)``, ReLU, expand, hard sigmoid), 1x1 project conv + BN.
    All layers are entangled: every option is a prefix / centred slice of the largest weight, BN running
    statistics included. The per-stage ``activations`` ("relu" / "hswish") and ``use_se`` default to the
    MobileNetV3 pattern of OFA's stages (ReLU early, hard swish late, SE on every other stage).

    Decisions (stable names): ``stage{s}.depth``, ``stage{s}.block{b}.kernel``, ``stage{s}.block{b}.expand``
    for ``b < max(depths)`` (decisions of blocks beyond the active depth are inactive).

    Args:
        num_classes: classifier outputs.
        image_size: input height/width (square); must survive the total downsampling.
        in_channels: input channels.
        widths: stem width, then one output width per stage.
        strides: stride of each stage's first block (one per stage).
        stem_stride: stride of the stem conv (1 for 32x32 inputs, 2 for ImageNet-sized ones).
        depths: depth options of every stage (each between 1 and 4 is usual; at least 1).
        kernel_sizes: depthwise kernel options (odd).
        expand_ratios: expand ratio options (ints, at least 1).
        activations: activation of each stage ("relu" or "hswish").
        use_se: whether each stage's blocks use squeeze-excitation.
        feature_dim: channels of the final 1x1 conv before pooling.
        dropout: dropout before the classifier.

    With the defaults (10 classes) the largest arch has 1,549,986 parameters and 67.5 MFLOPs on a 32x32 image,
    the smallest 247,322 parameters and 13.6 MFLOPs. The default strides follow the first four stages of
    MobileNetV3-Large (2, 2, 2, 1) with a stride-1 stem, so 32x32 inputs end at 4x4.
    """
    widths = _check_options("widths", widths, 1)
    if len(widths) < 2:
        raise ValueError(f"widths needs the stem width and at least one stage width, got {widths}")
    n_stages = len(widths) - 1
    strides = _per_stage("strides", _check_options("strides", strides, 1), n_stages)
    activations = _per_stage("activations", activations, n_stages)
    use_se = _per_stage("use_se", use_se, n_stages)
    for a in activations:
        if a not in ACTIVATIONS:
            raise ValueError(f"unknown activation {a!r}; expected one of {sorted(ACTIVATIONS)}")
    depths = _check_options("depths", depths, 1)
    kernel_sizes = _check_options("kernel_sizes", kernel_sizes, 1)
    if any(k % 2 == 0 for k in kernel_sizes):
        raise ValueError(f"kernel_sizes must be odd (centred windows of the largest), got {kernel_sizes}")
    expand_ratios = _check_options("expand_ratios", expand_ratios, 1)
    for name, v in (
        ("num_classes", num_classes),
        ("image_size", image_size),
        ("in_channels", in_channels),
        ("stem_stride", stem_stride),
        ("feature_dim", feature_dim),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    downsample = stem_stride
    for s in strides:
        downsample *= s
    if image_size < downsample:
        raise ValueError(f"image_size {image_size} is smaller than the total downsampling {downsample} of the strides")

    stem = _conv_bn(in_channels, widths[0], 3, stem_stride, "hswish")
    first = mbconv(widths[0], widths[0], 3, 1, 1, "relu", se=False)
    stages = []
    for s in range(n_stages):
        blocks = [
            mbconv(
                widths[s] if b == 0 else widths[s + 1],
                widths[s + 1],
                Choice(kernel_sizes, name=f"stage{s}.block{b}.kernel"),
                Choice(expand_ratios, name=f"stage{s}.block{b}.expand"),
                strides[s] if b == 0 else 1,
                activations[s],
                se=bool(use_se[s]),
            )
            for b in range(max(depths))
        ]
        stages.append(Repeat(blocks, Choice(depths, name=f"stage{s}.depth")))
    final = _conv_bn(widths[-1], feature_dim, 1, 1, "hswish")
    net = MobileNet(stem, first, nn.Sequential(*stages), final, Linear(feature_dim, num_classes), dropout)
    return SuperModule(net)
