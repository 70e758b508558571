"""`SuperModule`: a search space wrapped around an ordinary network built from searchable layers."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Searchable, extract_module
from .choice import Choice, Value


class ArchError(ValueError):
    """An arch dict does not fit the space."""


class UnknownDecisionError(ArchError):
    """The arch names a decision the space does not have."""


class MissingDecisionError(ArchError):
    """The arch lacks a decision of the space."""


class InvalidOptionError(ArchError):
    """The arch gives a decision an option it does not allow."""


def collect_choices(net: nn.Module) -> dict[str, Choice]:
    """Every decision in ``net`` in a stable order (module order, then argument order), naming unnamed ones."""
    found: dict[Choice, None] = {}
    for path, module in net.named_modules():
        if not isinstance(module, Searchable):
            continue
        for attr, value in module.search_values().items():
            if not isinstance(value, Value):
                continue
            new = [c for c in value.leaves() if c not in found]
            unnamed = [c for c in new if c.name is None]
            for i, c in enumerate(unnamed):
                base = module.decision_name(path, attr)
                c.name = base if len(unnamed) == 1 else f"{base}.{i}"
            for c in new:
                found[c] = None
    by_name: dict[str, Choice] = {}
    for c in found:
        if c.name in by_name:
            raise ValueError(
                f"two different Choice objects are both named {c.name!r}: reuse one Choice object to share "
                "a decision, or give them different names"
            )
        by_name[c.name] = c
    return by_name


def _scalar(name: str, option: Any, options: tuple[Any, ...]) -> Any:
    """A numpy scalar, or a one-element array or tensor, as the plain Python value it holds.

    Raises:
        InvalidOptionError: a multi-element (or empty) array or tensor.
    """
    if isinstance(option, np.generic):  # before the plain types: np.float64 is a float
        return option.item()
    if isinstance(option, (str, int, float)):
        return option
    if isinstance(option, (np.ndarray, torch.Tensor)):
        size = option.size if isinstance(option, np.ndarray) else option.numel()
        if size != 1:
            raise InvalidOptionError(
                f"decision {name!r} takes one option, got a {type(option).__name__} of shape "
                f"{tuple(option.shape)}; allowed options: {list(options)}"
            )
        return option.item()
    return option


def _same_option(allowed: Any, option: Any) -> bool:
    """``allowed == option`` for plain values; never True for bools or for values whose ``==`` is not a bool."""
    if type(allowed) is bool or isinstance(option, bool):
        return False
    try:
        equal = allowed == option
    except Exception:
        return False
    return type(equal) in (bool, np.bool_) and bool(equal)


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SuperModule(nn.Module):
    """A search space: an ``nn.Module`` built from `Choice`, entangled layers, `LayerChoice` and `Repeat`.

    ``SuperModule(net)`` finds every decision in ``net``; ``forward`` runs the active subnet.

    Args:
        net: the network (any module; its searchable parts define the decisions).
        spec: how to rebuild this space, e.g. ``{"space": "gpt", "kwargs": {...}}`` (set by ready spaces).
    """

    def __init__(self, net: nn.Module, spec: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.net = net
        self.spec = spec
        self._decisions = collect_choices(net)

    @property
    def decisions(self) -> dict[str, Choice]:
        """``{name: Choice}`` in the space's stable order."""
        return dict(self._decisions)

    @property
    def choices(self) -> dict[str, tuple[Any, ...]]:
        """``{decision name: tuple of options}`` in a stable order."""
        return {name: c.options for name, c in self._decisions.items()}

    @property
    def arch(self) -> dict[str, Any]:
        """The active arch."""
        return {name: c.current for name, c in self._decisions.items()}

    def num_archs(self) -> int:
        """How many distinct arch dicts the space has (inactive decisions counted too)."""
        n = 1
        for c in self._decisions.values():
            n *= len(c.options)
        return n

    def validate(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Check an arch dict against the space and return it in the space's order.

        An option may also be a numpy scalar or a one-element array or tensor (its ``.item()`` is used); the
        returned dict holds the space's own plain options.

        Raises:
            UnknownDecisionError, MissingDecisionError, InvalidOptionError: each naming the decision (a
                multi-element array or tensor is an `InvalidOptionError`).
        """
        if not isinstance(arch, Mapping):
            raise ArchError(f"an arch must be a dict {{decision: option}}, got {type(arch).__name__}")
        for name in arch:
            if not isinstance(name, str) or name not in self._decisions:
                raise UnknownDecisionError(
                    f"unknown decision {_short_repr(name)}; this space's decisions are: {', '.join(self._decisions)}"
                )
        out = {}
        for name, c in self._decisions.items():
            if name not in arch:
                raise MissingDecisionError(f"missing decision {name!r} (options: {list(c.options)})")
            option = _scalar(name, arch[name], c.options)
            match = [o for o in c.options if _same_option(o, option)]
            if isinstance(option, bool) or not match:
                raise InvalidOptionError(
                    f"decision {name!r} does not allow {_short_repr(option)}; allowed options: {list(c.options)}"
                )
            out[name] = match[0]
        return out

    def set_arch(self, arch: Mapping[str, Any]) -> None:
        """Make ``forward`` run the subnet ``arch`` (validated first; nothing changes on error)."""
        arch = self.validate(arch)
        for name, option in arch.items():
            self._decisions[name].current = option

    def sample(self, seed: int | None = None, rng: random.Random | None = None) -> dict[str, Any]:
        """A uniformly random arch (reproducible with ``seed``, or drawn from ``rng``)."""
        rng = rng if rng is not None else random.Random(seed)
        return {name: rng.choice(c.options) for name, c in self._decisions.items()}

    def max_arch(self) -> dict[str, Any]:
        """The largest arch: every decision at its largest option."""
        return {name: c.largest() for name, c in self._decisions.items()}

    def min_arch(self) -> dict[str, Any]:
        """The smallest arch: every decision at its smallest option."""
        return {name: c.smallest() for name, c in self._decisions.items()}

    def extract(self, arch: Mapping[str, Any] | None = None) -> nn.Module:
        """A standalone copy of subnet ``arch`` (default: the active one) made of plain torch layers.

        The result has the same outputs as this supernet under ``arch``, shares no storage with it, and
        contains no supernet classes. It is in the same train/eval mode as the supernet. The supernet's
        active arch is left unchanged.
        """
        if arch is None:
            return extract_module(self.net)
        previous = self.arch
        self.set_arch(arch)
        try:
            return extract_module(self.net)
        finally:
            self.set_arch(previous)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.net(*args, **kwargs)
