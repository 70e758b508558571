"""Make an ordinary PyTorch model searchable: `convert` finds width groups and depth runs by tracing, and
`sort_channels` orders each group's channels by importance so that narrower subnets keep the best ones.

A model given by name (``module:function`` returning ``(model, example_input)``) gives a space that records
``spec = {"space": "supernet.converting:converted", "kwargs": {...}}`` (see `converted`), so runs trained on it can
be searched, exported and loaded by name.
"""

from .api import ConversionError, ConvertedSpace, convert
from .factory import converted
from .named import SPEC_NAME, ModelFactoryError, load_model, model_factory
from .report import AttentionRow, ConvertReport, GroupRow
from .sorting import importance, sort_channels

__all__ = [
    "SPEC_NAME",
    "AttentionRow",
    "ConversionError",
    "ConvertReport",
    "ConvertedSpace",
    "GroupRow",
    "ModelFactoryError",
    "convert",
    "converted",
    "importance",
    "load_model",
    "model_factory",
    "sort_channels",
]
