"""Models named ``module:function``, so that a converted space can be rebuilt by name in a new process.

A space made by ``sn.convert(model, x)`` from a model object has no spec: nothing tells a later process how to
make that model again. Name the model instead, as ``module:function`` (a function that returns
``(model, example_input)``), and the conversion is recorded as an ordinary ``module:function`` space::

    {"space": "supernet.converting:converted", "kwargs": {"model": "mypkg.models:resnet", "widths": [...], ...}}

`supernet.spaces.build_from_spec` (used by ``run.json``, ``model.json``, ``supernet search RUN``,
``supernet export RUN`` and `supernet.load`) then calls `converted` again: it calls the user's function, converts
its model with the same options and sorts the channels the same way; a run's checkpoint (or an exported model's
weights) is loaded on top. The user's function must declare what it returns (``-> tuple[nn.Module, Tensor]``), so
a ``run.json`` handed in by someone else cannot name an arbitrary function (``os:fork``) to be called on load.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..registry import import_named_module

SPEC_NAME = "supernet.converting:converted"
"""The space name a converted model's spec records (`converted`, as ``module:function``)."""

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


class ModelFactoryError(ValueError):
    """A ``module:function`` model name that cannot be used (not importable, not declared, bad return value)."""


def _declares_model(fn: Callable[..., Any]) -> bool:
    """Whether ``fn`` is annotated to return ``tuple[<an nn.Module class>, ...]``."""
    try:
        annotation = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return False
    try:
        annotation = typing.get_type_hints(inspect.unwrap(fn)).get("return", annotation)
    except Exception:  # a name imported only under TYPE_CHECKING: read the text
        pass
    if isinstance(annotation, str):
        text = annotation.replace(" ", "").strip("'\"")
        return bool(re.match(r"^(typing\.)?[Tt]uple\[([\w.]*\.)?\w*Module\b", text))
    if typing.get_origin(annotation) is not tuple:
        return False
    args = typing.get_args(annotation)
    return bool(args) and isinstance(args[0], type) and issubclass(args[0], nn.Module)


def model_factory(name: str) -> Callable[..., Any]:
    """The function a ``module:function`` model name stands for (the module is imported; the working directory
    is searched too).

    Raises:
        ModelFactoryError: a malformed name, a module that cannot be imported, a missing attribute, or a function
            not annotated to return ``tuple[nn.Module, ...]``.
    """
    if not isinstance(name, str):
        raise ModelFactoryError(f"a model is named 'module:function', got {name!r}")
    module_name, colon, attr = name.partition(":")
    if not colon or not _DOTTED.match(module_name) or not _DOTTED.match(attr):
        raise ModelFactoryError(
            f"model {name!r}: expected 'module:function', a function in an importable module that returns "
            "(model, example_input)"
        )
    obj: Any = import_named_module(module_name, lambda message: ModelFactoryError(f"model {name!r}: {message}"))
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelFactoryError(f"model {name!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj) or not _declares_model(obj):
        raise ModelFactoryError(
            f"model {name!r} is not declared as a model factory: annotate its return type, e.g. "
            "def make() -> tuple[nn.Module, torch.Tensor]: ... return model, example_input (so a run or model "
            "file cannot name an arbitrary function to call)"
        )
    return obj


def load_model(name: str, kwargs: Mapping[str, Any] | None = None) -> tuple[nn.Module, Any]:
    """Call the ``module:function`` model factory ``name`` (with ``kwargs``): ``(model, example_input)``.

    Raises:
        ModelFactoryError: as `model_factory`, or the function failed or did not return ``(nn.Module, input)``.
    """
    fn = model_factory(name)
    try:
        out = fn(**dict(kwargs or {}))
    except Exception as err:
        raise ModelFactoryError(f"model {name!r} failed: {type(err).__name__}: {err}") from err
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], nn.Module)):
        raise ModelFactoryError(
            f"model {name!r} must return (model, example_input), got {type(out).__name__}"
            + (f" of {len(out)}" if isinstance(out, tuple) else "")
        )
    return out


