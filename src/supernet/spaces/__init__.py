"""Ready search spaces; each factory returns a `SuperModule` and is registered by name."""

from .gpt import gpt
from .registry import SPACES, build_space, register_space
from .vit import vit

__all__ = ["SPACES", "build_space", "gpt", "register_space", "vit"]
