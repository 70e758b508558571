"""Validating settings: readable `ConfigError` messages, and no boolean where a number is expected.

Every config model of the library (training, pipeline, search settings, space arguments) validates through
`validate_model`, so bad input always names the key, what was expected and what was given.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator


class ConfigError(ValueError):
    """A configuration has an unknown key, a wrong type or a value out of range (the message names the key)."""


def format_validation_error(err: ValidationError, where: str) -> str:
    """One readable line per problem: ``where: 'key.sub': what was expected (got ...)``."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e.get("loc", ())) or "(top level)"
        if e.get("type") == "extra_forbidden":
            lines.append(f"{where}: unknown key {loc!r}")
        else:
            got = e.get("input")
            msg = str(e.get("msg", "")).removeprefix("Value error, ")  # pydantic's prefix for validator errors
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            lines.append(f"{where}: {loc!r}: {msg}{shown}")
    return "\n".join(lines)


RECORDED: dict[str, Any] = {"recorded": True}
"""Validation context of a config read back from an earlier run's files (``validate_model(..., context=RECORDED)``):
its strategy name need not be registered in this process (a plug-in that is not imported here), since rebuilding
the trained supernet does not need the strategy."""


def validate_model(
    model: type[BaseModel],
    data: Mapping[str, Any] | BaseModel | None,
    where: str,
    context: Mapping[str, Any] | None = None,
) -> Any:
    """``model.model_validate(data)`` that raises `ConfigError` naming the bad key and listing allowed keys.

    ``context`` is passed to the validators (`RECORDED` for a config an earlier run wrote).
    """
    if isinstance(data, model):
        return data
    if data is None:
        data = {}
    if isinstance(data, BaseModel):
        data = data.model_dump()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return model.model_validate(dict(data), context=dict(context) if context is not None else None)
    except ValidationError as err:
        msg = format_validation_error(err, where)
        for e in err.errors():
            if e.get("type") == "extra_forbidden":
                section = _section_model(model, tuple(e.get("loc", ()))[:-1])
                if section is not None:
                    prefix = ".".join(str(p) for p in tuple(e.get("loc", ()))[:-1])
                    label = f"allowed keys in {prefix!r}" if prefix else "allowed keys"
                    line = f"\n{where}: {label}: {', '.join(section.model_fields)}"
                    if line not in msg:
                        msg += line
        raise ConfigError(msg) from None


def _section_model(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model at ``loc`` inside ``model`` (``("search",)`` -> `SearchConfig`), if every step is a model."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.Collection,
    collections.abc.Iterable,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _union_args(annotation: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return typing.get_args(annotation)
    return None


def _strip(annotation: Any) -> Any:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _takes_bool(annotation: Any) -> bool:
    """Whether a bool is a legitimate value of ``annotation`` (bool, Any, object, a Literal with a bool...)."""
    annotation = _strip(annotation)
    if annotation in (bool, Any, object) or isinstance(annotation, (str, typing.TypeVar)):
        return True  # unresolved string annotations and type variables are not checked
    union = _union_args(annotation)
    if union is not None:
        return any(_takes_bool(a) for a in union)
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    return False


def _is_number(annotation: Any) -> bool:
    annotation = _strip(annotation)
    union = _union_args(annotation)
    if union is not None:
        return any(_is_number(a) for a in union)
    return isinstance(annotation, type) and issubclass(annotation, (int, float)) and annotation is not bool


def bool_for_number(annotation: Any, value: Any) -> bool:
    """True when ``value`` is, or holds where ``annotation`` wants a number, a boolean.

    pydantic (like Python) treats ``True`` as the integer 1, so ``steps: true`` would train one step; configs
    and space arguments reject that. Containers are checked element-wise (``tuple[float, float]``,
    ``Sequence[int]``, ``dict[str, float]``); annotations that accept a bool (``bool``, ``Any``) never complain.
    """
    try:
        return _bool_for_number(annotation, value)
    except Exception:  # an exotic annotation: leave the judgement to pydantic
        return False


def _bool_for_number(annotation: Any, value: Any) -> bool:
    annotation = _strip(annotation)
    if isinstance(value, (bool, np.bool_)):
        return _is_number(annotation) and not _takes_bool(annotation)
    if _takes_bool(annotation):
        return False
    union = _union_args(annotation)
    if union is not None:
        return any(_bool_for_number(a, value) for a in union if a is not type(None))
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _SEQUENCES and isinstance(value, (list, tuple, set, frozenset)) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return any(_bool_for_number(a, v) for a, v in zip(args, value, strict=False))
        return any(_bool_for_number(args[0], v) for v in value)
    if origin in _MAPPINGS and isinstance(value, Mapping) and len(args) == 2:
        return any(_bool_for_number(args[1], v) for v in value.values())
    return False


class NoBoolNumbers(BaseModel):
    """Base of the config models: a boolean is not accepted where a number is expected (``steps: true``)."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and bool_for_number(field.annotation, value):
            raise ValueError("expected a number, not a boolean")
        return value


class Strict(NoBoolNumbers):
    """Base of config sections: unknown keys, booleans for numbers and inf/nan are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
