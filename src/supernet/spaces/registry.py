"""One registry of ready spaces, so a space can be rebuilt by name from a run's JSON metadata."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..space import SuperModule

SPACES: dict[str, Callable[..., SuperModule]] = {}


def register_space(name: str) -> Callable[[Callable[..., SuperModule]], Callable[..., SuperModule]]:
    """Register a space factory under ``name``; the space it returns records ``spec`` to be rebuilt."""

    def wrap(factory: Callable[..., SuperModule]) -> Callable[..., SuperModule]:
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def build(*args: Any, **kwargs: Any) -> SuperModule:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            space = factory(*bound.args, **bound.kwargs)
            space.spec = {"space": name, "kwargs": _jsonable(dict(bound.arguments))}
            return space

        SPACES[name] = build
        return build

    return wrap


def _jsonable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}


def build_space(name: str, **kwargs: Any) -> SuperModule:
    """Build a registered space by name (``kwargs`` as recorded in ``space.spec``)."""
    if name not in SPACES:
        raise KeyError(f"unknown space {name!r}; ready spaces: {', '.join(sorted(SPACES))}")
    return SPACES[name](**kwargs)
