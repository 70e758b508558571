"""supernet: weight-sharing neural architecture search in PyTorch.

Declare a search space with `Choice`, entangled layers, `LayerChoice` and `Repeat`; wrap it in
`SuperModule`; then train, search and export subnets. Ready spaces live in `supernet.spaces`.
"""

from . import cost, data, search, spaces, train
from .export import load
from .space import (
    ArchError,
    BatchNorm2d,
    Choice,
    ClassToken,
    Conv2d,
    Embedding,
    InvalidOptionError,
    LayerChoice,
    LayerNorm,
    Linear,
    MissingDecisionError,
    PositionalEmbedding,
    Repeat,
    SuperModule,
    UnknownDecisionError,
    attention,
    derived,
)

__version__ = "0.1.0"

__all__ = [
    "ArchError",
    "BatchNorm2d",
    "Choice",
    "ClassToken",
    "Conv2d",
    "Embedding",
    "InvalidOptionError",
    "LayerChoice",
    "LayerNorm",
    "Linear",
    "MissingDecisionError",
    "PositionalEmbedding",
    "Repeat",
    "SuperModule",
    "UnknownDecisionError",
    "__version__",
    "attention",
    "cost",
    "data",
    "derived",
    "load",
    "search",
    "spaces",
    "train",
]
