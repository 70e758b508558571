"""`converted`: the space factory that a converted model's spec names (``supernet.converting:converted``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .api import ConvertedSpace, convert
from .sorting import METHODS, sort_channels


def converted(
    model: str,
    widths: Sequence[float] = (0.5, 0.75, 1.0),
    depth: bool = True,
    group_widths: Mapping[str, Sequence[float | int]] | None = None,
    pin: Sequence[str] = (),
    exclude: Sequence[str] = (),
    divisor: int = 1,
    sort: Literal["l1", "activation"] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
) -> ConvertedSpace:
    """A converted model as a space that records how to rebuild it: ``module:function`` plus the options.

    Calls ``model`` (``module:function`` returning ``(model, example_input)``, annotated so), converts the model
    with `supernet.convert` and the options given, and, with ``sort``, sorts its channels (`sort_channels`; the
    ``activation`` method measures on the example input). The space's ``spec`` is
    ``{"space": "supernet.converting:converted", "kwargs": {...}}``, so a run trained on it can be searched,
    exported and loaded by name in a new process (`supernet.spaces.build_from_spec` calls this function again;
    the run's or the exported model's weights are then loaded on top).

    Args:
        model: the ``module:function`` that returns ``(model, example_input)``; it should load the pretrained
            weights (it is called again whenever the space is rebuilt).
        widths / depth / group_widths / pin / exclude / divisor: as in `supernet.convert`.
        sort: ``"l1"`` or ``"activation"`` to sort the channels by importance, or None.
        model_kwargs: keyword arguments for the model function.

    Raises:
        ModelFactoryError: the model function cannot be used (see `supernet.converting.named.load_model`).
        ValueError / ConversionError: as `supernet.convert`; a ``sort`` that is not a method.
    """
    if sort is not None and sort not in METHODS:
        raise ValueError(f"sort must be one of {METHODS} or None, got {sort!r}")
    space = convert(model, None, widths, depth, group_widths=group_widths, pin=pin, exclude=exclude,
                    divisor=divisor, model_kwargs=model_kwargs)
    if sort is not None:
        data = [space.example_input] if sort == "activation" else None
        sort_channels(space, data, method=sort)
    assert space.spec is not None
    space.spec["kwargs"]["sort"] = sort
    return space
