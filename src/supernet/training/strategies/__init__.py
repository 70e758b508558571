"""Training strategies (one file each) and their registry: uniform, fair, sandwich, alpha, progressive."""

from . import alpha, fair, progressive, sandwich, uniform
from .base import STRATEGIES, StepOutput, Strategy, StrategyOptions, get_strategy, make_strategy, register_strategy

__all__ = [
    "STRATEGIES",
    "StepOutput",
    "Strategy",
    "StrategyOptions",
    "alpha",
    "fair",
    "get_strategy",
    "make_strategy",
    "progressive",
    "register_strategy",
    "sandwich",
    "uniform",
]
