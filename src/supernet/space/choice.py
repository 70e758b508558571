"""Decisions of a search space: `Choice` and values derived from choices.

A `Choice` is a named categorical decision. Layers take either a plain constant or a *value*: a `Choice`
or an expression built from choices (``embed * mlp_ratio``). Using the same `Choice` object in several
layers makes one shared decision. The active option of every choice is set by `SuperModule.set_arch`.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np


class Value:
    """Something whose concrete value depends on the active options of one or more choices."""

    def leaves(self) -> tuple[Choice, ...]:
        """The choices this value depends on, in first-use order, without repeats."""
        raise NotImplementedError

    def evaluate(self) -> Any:
        """The value under the currently active options."""
        return self.evaluate_with({c: c.current for c in self.leaves()})

    def evaluate_with(self, assignment: Mapping[Choice, Any]) -> Any:
        """The value when each leaf choice takes the option given in ``assignment``."""
        raise NotImplementedError

    def combinations(self) -> list[tuple[dict[Choice, Any], Any]]:
        """Every joint assignment of the leaves with the value it gives (used for sizing and superposition)."""
        leaves = self.leaves()
        out = []
        for combo in itertools.product(*(c.options for c in leaves)):
            assignment = dict(zip(leaves, combo, strict=True))
            out.append((assignment, self.evaluate_with(assignment)))
        return out

    def possible_values(self) -> list[Any]:
        """The distinct values this can take, sorted when comparable."""
        values = list(dict.fromkeys(v for _, v in self.combinations()))
        try:
            return sorted(values)
        except TypeError:
            return values

    def _combine(self, other: Any, op: Callable[[Any, Any], Any], reverse: bool = False) -> Derived:
        args = (other, self) if reverse else (self, other)
        return Derived(op, *args)

    def __mul__(self, other: Any) -> Derived:
        return self._combine(other, operator.mul)

    def __rmul__(self, other: Any) -> Derived:
        return self._combine(other, operator.mul, reverse=True)

    def __add__(self, other: Any) -> Derived:
        return self._combine(other, operator.add)

    def __radd__(self, other: Any) -> Derived:
        return self._combine(other, operator.add, reverse=True)

    def __floordiv__(self, other: Any) -> Derived:
        return self._combine(other, operator.floordiv)


class Choice(Value):
    """A named categorical decision with a fixed tuple of options.

    Args:
        options: the allowed options (ints, floats or strings; at least one, no repeats).
        name: the decision's name in an arch dict. Unnamed choices get a stable name from the module
            path where they are first used when a `SuperModule` is built.
    """

    def __init__(self, options: Iterable[Hashable], name: str | None = None) -> None:
        if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
            raise TypeError(f"Choice {name!r}: options must be a list of options, got {options!r}")
        options = tuple(o.item() if isinstance(o, np.generic) else o for o in options)
        if not options:
            raise ValueError(f"Choice {name or ''} needs at least one option, got none".replace("  ", " "))
        for o in options:
            if not isinstance(o, (int, float, str)) or isinstance(o, bool):
                raise TypeError(f"Choice {name!r}: options must be int, float or str (JSON-serialisable), got {o!r}")
            if isinstance(o, float) and not math.isfinite(o):
                raise ValueError(f"Choice {name!r}: options must be finite numbers (JSON-serialisable), got {o!r}")
        if len(set(options)) != len(options):
            raise ValueError(f"Choice {name!r} has repeated options: {options}")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Choice name must be a non-empty string, got {name!r}")
        self.options: tuple[Any, ...] = options
        self.name: str | None = name
        # Ranking used by largest()/smallest(); numbers rank by value, other options by a size key
        # that LayerChoice sets from the candidates' parameter counts.
        self.size_key: dict[Any, Any] = {}
        self.current: Any = self.largest()

    def leaves(self) -> tuple[Choice, ...]:
        return (self,)

    def evaluate(self) -> Any:
        return self.current

    def evaluate_with(self, assignment: Mapping[Choice, Any]) -> Any:
        return assignment[self]

    def _rank(self, option: Any) -> Any:
        if option in self.size_key:
            return (self.size_key[option], self.options.index(option))
        if isinstance(option, (int, float)):
            return (option, self.options.index(option))
        return (0, self.options.index(option))

    def largest(self) -> Any:
        """The option that gives the biggest network (largest number, or largest candidate op)."""
        return max(self.options, key=self._rank)

    def smallest(self) -> Any:
        """The option that gives the smallest network."""
        return min(self.options, key=self._rank)

    def index(self, option: Any) -> int:
        """Position of ``option`` in `options`."""
        return self.options.index(option)

    def __repr__(self) -> str:
        return f"Choice({list(self.options)!r}, name={self.name!r})"

    # Choices are identified by object: two choices with equal options are different decisions.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


class Derived(Value):
    """A value computed from choices and constants, e.g. ``embed * ratio`` (built by arithmetic on values)."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def leaves(self) -> tuple[Choice, ...]:
        seen: dict[Choice, None] = {}
        for a in self.args:
            if isinstance(a, Value):
                for leaf in a.leaves():
                    seen.setdefault(leaf, None)
        return tuple(seen)

    def evaluate_with(self, assignment: Mapping[Choice, Any]) -> Any:
        return self.fn(*(a.evaluate_with(assignment) if isinstance(a, Value) else a for a in self.args))

    def __repr__(self) -> str:
        name = getattr(self.fn, "__name__", "fn")
        return f"Derived({name}, {', '.join(map(repr, self.args))})"


def derived(fn: Callable[..., Any], *args: Any) -> Derived:
    """A value computed by ``fn`` from choices and constants (for expressions arithmetic cannot write)."""
    return Derived(fn, *args)


def current(value: Any) -> Any:
    """The active value of a constant, a `Choice` or a derived value."""
    return value.evaluate() if isinstance(value, Value) else value


def as_size(v: Any, what: str) -> int:
    """``v`` as an int size, with a clear error when an expression gives a non-integer value."""
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"{what} must be a whole number, got {v}")
        v = int(v)
    if not isinstance(v, int):
        raise TypeError(f"{what} must be an int, got {v!r}")
    return v


def current_int(value: Any, what: str) -> int:
    """The active value as an int size."""
    return as_size(current(value), what)


def max_int(value: Any, what: str) -> int:
    """The largest value a size can take over all options (the size of the shared weight tensor)."""
    if not isinstance(value, Value):
        return current_int(value, what)
    values = value.possible_values()
    for v in values:
        if isinstance(v, float) and not v.is_integer():
            raise ValueError(f"{what} can take the non-integer value {v}; sizes must be whole numbers")
        if not isinstance(v, (int, float)):
            raise TypeError(f"{what} must be numeric, got option {v!r}")
    return int(max(values))


def leaves_of(values: Sequence[Any]) -> tuple[Choice, ...]:
    """All choices behind a sequence of values/constants, in first-use order."""
    seen: dict[Choice, None] = {}
    for v in values:
        if isinstance(v, Value):
            for leaf in v.leaves():
                seen.setdefault(leaf, None)
    return tuple(seen)
