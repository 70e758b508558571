"""Ready search spaces; each factory returns a `SuperModule` and is registered by name.

`build_space` builds any space by name: a registered one or ``module:function`` (see `supernet.spaces.registry`).
"""

from .darts import DARTS_OPS, DARTS_V2, Genotype, darts, darts_network, from_genotype, to_genotype  # noqa: F401
from .gpt import gpt
from .mobilenet import mobilenet
from .nb201 import NB201_OPS, from_nb201_string, nb201, to_nb201_string
from .registry import (
    SPACES,
    SpaceError,
    UnknownSpaceError,
    build_from_spec,
    build_space,
    check_space_kwargs,
    register_space,
    resolve_space,
)
from .vit import vit

__all__ = [
    "SPACES",
    "NB201_OPS",
    "SpaceError",
    "UnknownSpaceError",
    "build_from_spec",
    "build_space",
    "check_space_kwargs",
    "from_nb201_string",
    "gpt",
    "mobilenet",
    "nb201",
    "register_space",
    "resolve_space",
    "to_nb201_string",
    "vit",
]
