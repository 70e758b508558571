"""Training strategies (one file each) and their registry: uniform, fair, sandwich, alpha, progressive, pada, shiftnas,
fewshot, gm (few-shot sub-supernets), mos (mixture of supernets).

Each strategy file registers its class with ``@register_strategy(name)``; importing the files here is what registers
them (in this order, the order of ``supernet train --help``). The differentiable strategies ``darts``, ``gdas`` and
``drnas`` live in `supernet.gradient`, which registers them in the same `STRATEGIES` when it is imported.
"""

from . import uniform, fair, sandwich, alpha, progressive, pada, shiftnas, fewshot, gm, mos  # noqa: I001  (registration order)
from .base import STRATEGIES, StepOutput, Strategy, StrategyOptions, get_strategy, make_strategy, register_strategy

__all__ = [
    "STRATEGIES",
    "StepOutput",
    "Strategy",
    "StrategyOptions",
    "alpha",
    "fair",
    "fewshot",
    "gm",
    "get_strategy",
    "pada",
    "make_strategy",
    "mos",
    "progressive",
    "register_strategy",
    "sandwich",
    "shiftnas",
    "uniform",
]
