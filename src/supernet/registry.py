"""One registry mechanism for every method family: spaces, training strategies, gradient mixers, search
algorithms, proxies, predictors.

Each family owns one `Registry` instance, and each method file registers itself with ``@REGISTRY.register(name)``
when its family's package imports it (explicitly, in that package's ``__init__``). The command line's choices and
``--help`` lists, config validation and ``supernet info`` are all read from the registries, so a new method is one
new file. A user registers their own methods the same way from their own module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that no method of the family is registered under (the message lists the registered ones).

    A ``KeyError`` for code that looks names up like a dict, and a ``ValueError`` for everything that treats a bad
    name as bad input (config validation, the command line).
    """

    def __str__(self) -> str:  # KeyError quotes its message; this is a sentence
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Named methods of one family, in registration order.

    Args:
        family: what the family is called in messages ("training strategy", "search algorithm", ...).
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: register the class or function under ``name`` (a second registration needs ``replace``)."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"a {self.family} name must be a non-empty string without surrounding spaces: {name!r}")

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj and not replace:
                raise ValueError(
                    f"{self.family} {name!r} is already registered ({_qualname(self._entries[name])}); "
                    "pick another name or pass replace=True"
                )
            self._entries[name] = obj
            return obj

        return add

    def add(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Register ``obj`` under ``name`` without decorator syntax."""
        return self.register(name, replace=replace)(obj)

    def get(self, name: str) -> T:
        """The method registered under ``name``.

        Raises:
            UnknownNameError: naming the family and listing every registered name.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.family} {name!r}; expected one of {', '.join(self._entries) or '(none registered)'}"
            ) from None

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests and plug-ins that replace a method)."""
        self.get(name)
        del self._entries[name]

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, method)`` pairs in registration order."""
        return list(self._entries.items())

    def describe(self) -> dict[str, str]:
        """``{name: first line of the method's docstring}``: what ``supernet info`` and ``--help`` show."""
        return {name: summary(obj) for name, obj in self._entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}: {', '.join(self._entries)})"


def summary(obj: Any) -> str:
    """The first line of ``obj``'s docstring (empty if it has none)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", "")
    name = getattr(obj, "__qualname__", type(obj).__name__)
    return f"{module}.{name}" if module else name
