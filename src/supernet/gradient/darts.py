"""``darts``: DARTS (Liu et al., 2019) — softmax mixture weights, first- or second-order bilevel updates."""

from __future__ import annotations

from ..training.strategies.base import register_strategy
from .base import GradientStrategy
from .mixers import Mixer, SoftmaxMixer


@register_strategy("darts")
class DARTS(GradientStrategy):
    """DARTS: softmax(alpha) mixes every option; bilevel alpha updates of first or second order.

    Mixture weights ``softmax(alpha)``; entangled choices use weight superposition (TangleNAS).
    """

    def make_mixer(self) -> Mixer:
        return SoftmaxMixer()
