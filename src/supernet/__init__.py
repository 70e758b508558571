"""supernet: weight-sharing neural architecture search in PyTorch.

Declare a search space with `Choice`, entangled layers, `LayerChoice` and `Repeat`; wrap it in
`SuperModule`; then train, search and export subnets. Ready spaces live in `supernet.spaces`.
"""

# Importing each family's package registers its methods; `gradient` registers the training strategies darts,
# gdas and drnas, so ``sn.train(..., strategy="drnas")`` works after ``import supernet``.
from . import bench, blocks, converting, cost, data, files, gradient, proxies, registry, searching, spaces, training
from .converting import convert, sort_channels
from .export import export, load
from .reporting import report
from .searching import search
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
from .training import train
from .version import __version__


def __getattr__(name: str) -> object:
    # LightGBM is slow to import: load `supernet.predictors` (and `estimate`, which uses it) on first use.
    if name in ("predictors", "estimate"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'supernet' has no attribute {name!r}")

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
    "bench",
    "blocks",
    "convert",
    "converting",
    "cost",
    "data",
    "derived",
    "estimate",
    "export",
    "gradient",
    "load",
    "predictors",
    "proxies",
    "registry",
    "report",
    "reporting",
    "files",
    "search",
    "searching",
    "sort_channels",
    "spaces",
    "train",
    "training",
]
