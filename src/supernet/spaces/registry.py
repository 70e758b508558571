"""One registry of spaces, so a space can be rebuilt by name from a run's JSON metadata.

A space name is either

- a registered space: the ready ones (``gpt``, ``nb201``, ...) or one of your own registered with
  ``@sn.spaces.register_space("own")`` in the current process, or
- ``module:function``: a function in an importable module (``mypkg.spaces:tiny_mlp``) that returns a
  `SuperModule`. A new process (the CLI, `supernet.training.load_run`, `supernet.load`) imports the module and
  calls the function again, so a run trained on such a space can be searched and exported by name. The
  function must declare that it builds a space: annotate it ``-> sn.SuperModule`` (or decorate it with
  `register_space`). This keeps a ``run.json`` or ``model.json`` handed in by someone else from naming an
  arbitrary function (``os:system``) to be called on load.

`build_space` checks the keyword arguments against the factory's signature and parameter types before calling
it, and reports any failure as a `SpaceError` naming the space (and the keyword, where one is to blame).
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from ..registry import Registry, UnknownNameError, import_named_module, one_line
from ..space import SuperModule
from ..space.mixture import mixture
from ..space.partition import partition
from ..validation import ConfigError, bool_for_number

_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class SpaceError(ConfigError):
    """A space name or its keyword arguments are wrong; the message names the space (and the keyword)."""


class UnknownSpaceError(SpaceError, UnknownNameError):
    """No space has this name (also a `KeyError`, for code that treats it as a failed lookup)."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def _check_space_name(name: object) -> None:
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a space name must be a non-empty string without ':', got {name!r}")


def _space_builder(name: str, factory: Callable[..., SuperModule]) -> Callable[..., SuperModule]:
    """What `SPACES` stores for a factory: a function that calls it, checks the result is a `SuperModule`, reports
    a failure of the factory as a `SpaceError` naming the space, and records ``spec`` on the space."""
    _check_space_name(name)
    if not callable(factory):
        raise TypeError(f"@register_space({name!r}) needs a function that returns a SuperModule, got {factory!r}")
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> SuperModule:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        space = _call(name, factory, bound)
        space.spec = {"space": name, "kwargs": _recorded(signature, bound)}
        return space

    build.__supernet_space__ = name  # type: ignore[attr-defined]
    return build


SPACES: Registry[Callable[..., SuperModule]] = Registry("space", prepare=_space_builder, replace=True)
"""Every registered space factory by name (the ready ones register when `supernet.spaces` imports their files).
Registering a taken name replaces the space, so re-running a notebook cell works."""


def register_space(name: str) -> Callable[[Callable[..., SuperModule]], Callable[..., SuperModule]]:
    """Register a space factory under ``name``; the space it returns records ``spec`` to be rebuilt.

    The registered function checks that the factory returns a `SuperModule`, and reports a failure of the
    factory (a bad value: an empty option list, a negative size) as a `SpaceError` naming the space. The first
    line of the factory's docstring describes the space in ``supernet info``.
    """
    _check_space_name(name)
    return SPACES.register(name)


def _call(name: str, factory: Callable[..., Any], bound: inspect.BoundArguments) -> SuperModule:
    """Call a factory; any failure becomes a `SpaceError` naming the space; the result must be a space."""
    try:
        space = factory(*bound.args, **bound.kwargs)
    except SpaceError:
        raise
    except Exception as err:
        problem = one_line(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {one_line(err)}"
        raise SpaceError(
            f"space {name!r} could not be built from ({_show(bound.arguments)}): {problem}"
        ) from err
    if not isinstance(space, SuperModule):
        raise SpaceError(
            f"space {name!r} returned a {type(space).__name__}, not a supernet.SuperModule "
            "(wrap the network: return sn.SuperModule(net))"
        )
    return space


def _show(kwargs: Mapping[str, Any], limit: int = 800) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value: Any) -> Any:
    """Tuples as lists, recursively (what JSON would give back)."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _recorded(signature: inspect.Signature, bound: inspect.BoundArguments, given: set[str] | None = None) -> dict:
    """The keyword arguments to rebuild the space with (``**kwargs`` flattened, ``*args`` dropped).

    With ``given``, defaults (names not in ``given``) are recorded only when JSON can hold them.
    """
    out: dict[str, Any] = {}
    for key, value in bound.arguments.items():
        kind = signature.parameters[key].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update({k: _jsonable(v) for k, v in value.items()})
        elif kind in _KEYWORD_KINDS:
            if given is not None and key not in given and not _json_ok(value):
                continue
            out[key] = _jsonable(value)
    return out


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


# --- names --------------------------------------------------------------------------------------------------------


def _import(name: str, module_name: str) -> Any:
    return import_named_module(module_name, lambda message: SpaceError(f"space {name!r}: {message}"))


def _returns_space(fn: Any) -> bool:
    """Whether ``fn`` declares that it builds a space (a SuperModule class, ``-> SuperModule``, registered)."""
    if isinstance(fn, type):
        return issubclass(fn, SuperModule)
    if getattr(fn, "__supernet_space__", None):
        return True
    try:
        annotation = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return False
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(inspect.unwrap(fn)).get("return", annotation)
        except Exception:  # e.g. a name imported only under TYPE_CHECKING
            pass
    if isinstance(annotation, str):
        return annotation.strip("'\" ").rsplit(".", 1)[-1] == "SuperModule"
    return isinstance(annotation, type) and issubclass(annotation, SuperModule)


def resolve_space(name: str) -> Callable[..., SuperModule]:
    """The factory a space name stands for: a registered space, or ``module:function`` (imported).

    Raises:
        UnknownSpaceError: not registered and not of the form ``module:function``.
        SpaceError: the module cannot be imported, has no such attribute, or it is not a space factory.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownSpaceError(f"a space name must be a non-empty string, got {name!r}")
    if name in SPACES:
        return SPACES[name]
    module_name, colon, attr = name.partition(":")
    if not colon or not _DOTTED.match(module_name) or not _DOTTED.match(attr):
        raise UnknownSpaceError(
            f"unknown space {name!r}; ready spaces: {', '.join(sorted(SPACES))}; a space of your own is named "
            "'module:function' (a function returning a SuperModule) or registered with "
            "@supernet.spaces.register_space"
        )
    obj: Any = _import(name, module_name)
    path = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SpaceError(f"space {name!r}: {path!r} has no attribute {part!r}")
        obj = getattr(obj, part)
        path += (":" if path == module_name else ".") + part
    if not callable(obj):
        raise SpaceError(f"space {name!r}: {path} is a {type(obj).__name__}, not a function that builds a space")
    if not _returns_space(obj):
        raise SpaceError(
            f"space {name!r}: {path} is not declared as a space factory: annotate its return type "
            "(def fn(...) -> sn.SuperModule:) so a run or model file cannot name an arbitrary function to call"
        )
    return obj


# --- keyword arguments --------------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("collections.abc.", "")


@functools.lru_cache(maxsize=256)
def _adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # an annotation pydantic cannot check (a forward reference, a generic class...)
        return None


def _check_value(name: str, key: str, annotation: Any, value: Any) -> Any:
    """``value`` checked against ``annotation`` (returned coerced only where the coercion changes it)."""
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return value
    expected = _type_name(annotation)
    if bool_for_number(annotation, value):
        raise SpaceError(f"space {name!r}: keyword {key!r}: expected {expected}, not a boolean (got {value!r})")
    try:
        adapter = _adapter(annotation)
    except TypeError:  # an unhashable annotation
        adapter = None
    if adapter is None:
        return value
    try:
        checked = adapter.validate_python(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = "".join(f"[{p!r}]" for p in first.get("loc", ()))
        raise SpaceError(
            f"space {name!r}: keyword {key!r}{where}: expected {expected}: {first.get('msg')} (got {value!r})"
        ) from None
    except Exception:  # a validator that cannot judge this value: let the factory do it
        return value
    try:
        equal = _jsonable(checked) == _jsonable(value)
    except Exception:
        equal = False
    return value if type(equal) is bool and equal else checked


def _factory_signature(name: str, factory: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        raise SpaceError(f"space {name!r}: cannot read the signature of its factory") from None
    try:
        hints = typing.get_type_hints(inspect.unwrap(factory))
    except Exception:
        hints = {}
    return signature, hints


def check_space_kwargs(
    name: str, kwargs: Mapping[str, Any], factory: Callable[..., SuperModule] | None = None
) -> dict[str, Any]:
    """Check keyword arguments against a space factory's signature and parameter types.

    Args:
        name: the space name (registered or ``module:function``).
        kwargs: the keyword arguments (e.g. a config's ``space.kwargs``).
        factory: the factory, if already resolved.

    Returns:
        The arguments to call the factory with: the given ones, with strings coerced to numbers where the
        annotation asks for a number (``"64"`` -> 64); other values are passed unchanged.

    Raises:
        SpaceError: an unknown keyword (listing the accepted ones), a wrong type or a missing required
            keyword, naming the space and the keyword.
    """
    if factory is None:
        factory = resolve_space(name)
    if not isinstance(kwargs, Mapping):
        raise SpaceError(f"space {name!r}: kwargs must be a mapping of keyword arguments, got {type(kwargs).__name__}")
    signature, hints = _factory_signature(name, factory)
    params = signature.parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = [p.name for p in params.values() if p.kind in _KEYWORD_KINDS]
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        param = params.get(key) if isinstance(key, str) else None
        if param is None or param.kind not in _KEYWORD_KINDS:
            if accepts_any and isinstance(key, str) and param is None:
                out[key] = value
                continue
            raise SpaceError(
                f"space {name!r}: unknown keyword {key!r}; accepted keywords: {', '.join(accepted) or '(none)'}"
            )
        out[key] = _check_value(name, key, hints.get(key, param.annotation), value)
    missing = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and p.name not in out
    ]
    if missing:
        raise SpaceError(f"space {name!r}: missing required keyword {missing[0]!r} (needs: {', '.join(missing)})")
    return out


def build_from_spec(spec: Mapping[str, Any]) -> SuperModule:
    """The space a ``space.spec`` describes (as recorded in ``run.json`` / ``model.json``): `build_space` of its
    name and keyword arguments, partitioned again (`supernet.space.partition`) when the spec records partitions,
    made a mixture of supernets again (`supernet.space.mixture`) when it records one.

    Raises:
        SpaceError: as `build_space`, or a spec that is not ``{"space": name, "kwargs": {...}, ...}``.
    """
    if not isinstance(spec, Mapping) or not isinstance(spec.get("space"), str):
        raise SpaceError(f"a space spec must be {{'space': name, 'kwargs': {{...}}}}, got {spec!r}")
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise SpaceError(f"space {spec['space']!r}: 'kwargs' must be a mapping, got {kwargs!r}")
    space = build_space(spec["space"], **kwargs)
    count = spec.get("partitions")
    if count is not None:
        if type(count) is not int or count < 1:
            raise SpaceError(f"space {spec['space']!r}: 'partitions' must be a positive integer, got {count!r}")
        partition(space, count)
    mixed = spec.get("mixture")
    if mixed is not None:
        if not isinstance(mixed, Mapping) or set(mixed) != {"experts", "hidden"}:
            raise SpaceError(f"space {spec['space']!r}: 'mixture' must be {{'experts': K, 'hidden': H}}, got {mixed!r}")
        mixture(space, int(mixed["experts"]), int(mixed["hidden"]))
    return space


def build_space(name: str, **kwargs: Any) -> SuperModule:
    """Build a space by name: a registered space or ``module:function`` (``kwargs`` as in ``space.spec``).

    The keyword arguments are checked against the factory's signature and types first (`check_space_kwargs`).
    The space records ``spec = {"space": name, "kwargs": {...}}`` so a new process can rebuild it.

    Raises:
        UnknownSpaceError: no such space (a `KeyError` too).
        SpaceError: the module/function cannot be used, an argument is unknown or of the wrong type, or the
            factory rejected the values (the message names the space and, where it can, the keyword).
    """
    factory = resolve_space(name)
    call_kwargs = check_space_kwargs(name, kwargs, factory)
    if name in SPACES:
        return factory(**call_kwargs)
    signature, _ = _factory_signature(name, factory)
    bound = signature.bind(**call_kwargs)
    bound.apply_defaults()
    space = _call(name, factory, bound)
    space.spec = {"space": name, "kwargs": _recorded(signature, bound, given=set(call_kwargs))}
    return space
