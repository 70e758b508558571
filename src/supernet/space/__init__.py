"""Declaring a search space: choices, entangled layers, operation and depth choices, `SuperModule`."""

from .base import Searchable, contains_searchable, extract_module
from .choice import Choice, Derived, Value, current, derived
from .containers import LayerChoice, Repeat
from .layers import BatchNorm2d, ClassToken, Conv2d, Embedding, LayerNorm, Linear, PositionalEmbedding, attention
from .mixture import Mixture, mixture, mixture_of
from .partition import Partitions, memory_report, partition, partitions_of, split
from .supermodule import (
    ArchError,
    InvalidOptionError,
    MissingDecisionError,
    SuperModule,
    UnknownDecisionError,
    collect_choices,
)

__all__ = [
    "ArchError",
    "BatchNorm2d",
    "Choice",
    "ClassToken",
    "Conv2d",
    "Derived",
    "Embedding",
    "InvalidOptionError",
    "LayerChoice",
    "LayerNorm",
    "Linear",
    "MissingDecisionError",
    "Mixture",
    "Partitions",
    "PositionalEmbedding",
    "Repeat",
    "Searchable",
    "SuperModule",
    "UnknownDecisionError",
    "Value",
    "attention",
    "collect_choices",
    "contains_searchable",
    "current",
    "derived",
    "extract_module",
    "memory_report",
    "mixture",
    "mixture_of",
    "partition",
    "partitions_of",
    "split",
]
