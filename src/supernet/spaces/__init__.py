"""Ready search spaces; each factory returns a `SuperModule` and is registered by name."""

from .gpt import gpt
from .mobilenet import mobilenet
from .nb201 import NB201_OPS, from_nb201_string, nb201, to_nb201_string
from .registry import SPACES, build_space, register_space
from .vit import vit

__all__ = [
    "SPACES",
    "build_space",
    "NB201_OPS",
    "from_nb201_string",
    "gpt",
    "mobilenet",
    "nb201",
    "register_space",
    "to_nb201_string",
    "vit",
]
