"""Make an ordinary PyTorch model searchable: `convert` finds width groups and depth runs by tracing, and
`sort_channels` orders each group's channels by importance so that narrower subnets keep the best ones."""

from .api import ConversionError, ConvertedSpace, convert
from .report import ConvertReport, GroupRow
from .sorting import importance, sort_channels

__all__ = [
    "ConversionError",
    "ConvertReport",
    "ConvertedSpace",
    "GroupRow",
    "convert",
    "importance",
    "sort_channels",
]
