"""One registry mechanism for every method family: spaces, training strategies, gradient mixers, search
algorithms, proxies, predictors.

Each family owns one `Registry` instance, and each method file registers itself with ``@REGISTRY.register(name)``
when its family's package imports it (explicitly, in that package's ``__init__``). The command line's choices and
``--help`` lists, config validation and ``supernet info`` are all read from the registries, so a new method is one
new file. A user registers their own methods the same way from their own module.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_MISSING: Any = object()


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
        family: what the family is called in messages ("strategy", "search algorithm", ...).
        prepare: called as ``prepare(name, obj)`` when a method is registered; checks it (raising ``TypeError`` or
            ``ValueError``) and returns what the registry stores and the decorator returns (``obj`` itself, or a
            wrapper around it). Entries set with ``registry[name] = obj`` are stored as given.
        replace: the family's default for `register`: whether registering a taken name replaces the method
            (spaces, so that re-running a notebook cell works) or is an error (every other family).
    """

    def __init__(
        self, family: str, *, prepare: Callable[[str, T], T] | None = None, replace: bool = False
    ) -> None:
        self.family = family
        self._prepare = prepare
        self._replace = replace
        self._entries: dict[str, T] = {}

    def register(self, name: str, *, replace: bool | None = None) -> Callable[[T], T]:
        """Decorator: register the class or function under ``name``.

        Registering the same object twice is harmless; another object under a taken name is an error unless
        ``replace`` (default: the family's setting).
        """
        self.check_name(name)
        replace = self._replace if replace is None else replace

        def add(obj: T) -> T:
            old = self._entries.get(name, _MISSING)
            if old is obj:
                return obj
            if old is not _MISSING and not replace and getattr(old, "__wrapped__", None) is not obj:
                raise ValueError(
                    f"{self.family} {name!r} is already registered ({_qualname(old)}); "
                    "pick another name or pass replace=True"
                )
            stored = self._prepare(name, obj) if self._prepare is not None else obj
            self._entries[name] = stored
            return stored

        return add

    def check_name(self, name: object) -> None:
        """Raise ``ValueError`` unless ``name`` is a non-empty string without surrounding spaces."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"a {self.family} name must be a non-empty string without surrounding spaces: {name!r}")

    def add(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Register ``obj`` under ``name`` without decorator syntax."""
        return self.register(name, replace=replace)(obj)

    def get(self, name: str, default: Any = _MISSING) -> T:
        """The method registered under ``name`` (or ``default``, when given and ``name`` is not registered).

        Raises:
            UnknownNameError: naming the family and listing every registered name (without ``default``).
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            if default is not _MISSING:
                return default
            raise UnknownNameError(
                f"unknown {self.family} {name!r}; expected one of {', '.join(self._entries) or '(none registered)'}"
            ) from None

    def remove(self, name: str) -> None:
        """Unregister ``name`` (tests and plug-ins that replace a method)."""
        self.get(name)
        del self._entries[name]

    def keys(self) -> list[str]:
        """Registered names (as `names`; lets ``dict(registry)`` and ``{**registry}`` work)."""
        return self.names()

    def values(self) -> list[T]:
        """Registered methods in registration order."""
        return list(self._entries.values())

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

    def __setitem__(self, name: str, obj: T) -> None:
        """Store ``obj`` under ``name`` as given, replacing any entry (dict semantics; pytest's
        ``monkeypatch.setitem`` restores entries this way). Use `register` to add a method."""
        self.check_name(name)
        self._entries[name] = obj

    def __delitem__(self, name: str) -> None:
        self.remove(name)

    def __repr__(self) -> str:
        return f"Registry({self.family!r}: {', '.join(self._entries)})"


@contextmanager
def cwd_on_path() -> Iterator[None]:
    """Let ``module`` / ``module:function`` names find modules in the working directory (the console script's
    ``sys.path`` does not hold it), without leaving it on ``sys.path``."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def one_line(err: BaseException, limit: int = 400) -> str:
    """An exception's message on one line, shortened to ``limit`` characters (its type name if it has none)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def import_named_module(module_name: str, fail: Callable[[str], Exception]) -> ModuleType:
    """Import the module of a ``module:function`` name a user gave (the working directory is searched too).

    Any failure raises ``fail(message)``, the message saying what went wrong: the module does not exist (with the
    fix), or importing it raised (its error on one line).
    """
    try:
        with cwd_on_path():
            return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        missing = err.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise fail(
                f"cannot import module {module_name!r} (no module named {missing!r}); put its directory on "
                "PYTHONPATH or run from the directory that holds it"
            ) from None
        raise fail(f"importing module {module_name!r} failed: {one_line(err)}") from err
    except Exception as err:
        raise fail(f"importing module {module_name!r} failed: {type(err).__name__}: {one_line(err)}") from err


def load_plugins(modules: str | Iterable[str] | None, where: str = "plugins") -> list[str]:
    """Import modules that register methods of their own (a config's ``plugins:``, ``SUPERNET_PLUGINS``).

    A plug-in module registers with the public decorators (``@sn.training.register_strategy("mine")``,
    ``@sn.proxies.register_proxy``, ``@sn.spaces.register_space``...) when imported; nothing else is needed. The
    working directory is searched too (the console script's ``sys.path`` does not hold it).

    Args:
        modules: dotted module names, as a list or one string separated by commas (empty: nothing to do).
        where: what named them, for error messages.

    Returns:
        The module names imported.

    Raises:
        ValueError: a name is not a dotted module name, or importing it failed (the message names the module).
    """
    if modules is None:
        return []
    names = [m.strip() for m in modules.split(",")] if isinstance(modules, str) else list(modules)
    out: list[str] = []
    for name in names:
        if name == "":
            continue
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{where}: {name!r} is not a module name (expected e.g. mypkg.methods)")
        try:
            with cwd_on_path():
                importlib.import_module(name)
        except Exception as err:
            raise ValueError(f"{where}: importing plug-in module {name!r} failed: {type(err).__name__}: {err}") from err
        out.append(name)
    return out


def summary(obj: Any) -> str:
    """The first line of ``obj``'s docstring without reST backquotes (empty if it has none)."""
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].strip().replace("`", "") if doc.strip() else ""


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", "")
    name = getattr(obj, "__qualname__", type(obj).__name__)
    return f"{module}.{name}" if module else name
