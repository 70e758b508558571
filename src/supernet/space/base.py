"""The base of every searchable module, and extraction of a plain network from a supernet."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from .choice import Value

#: What a search value controls. Progressive shrinking (OFA) opens the space kind by kind in this order.
Kind = Literal["kernel", "depth", "width", "other"]
KINDS: tuple[Kind, ...] = ("kernel", "depth", "width", "other")


class Searchable(nn.Module):
    """A module whose behaviour depends on choices.

    Subclasses list the values (choices or expressions) they read in `search_values`, declare in
    `value_kinds` what each controls (``kernel``, ``depth``, ``width``; undeclared values are ``other``) and
    build a plain PyTorch equivalent of themselves under the active arch in `extract`.
    """

    value_kinds: ClassVar[dict[str, Kind]] = {}

    def search_values(self) -> dict[str, Any]:
        """``{attribute: value}`` for every constructor argument that may hold a `Choice`."""
        return {}

    def slice_values(self) -> tuple[Any, ...]:
        """The values that size this layer's parameters, in the order `sliced` takes their sizes (none here)."""
        return ()

    def sliced(self, sizes: Sequence[int]) -> Sequence[torch.Tensor | None]:
        """Views of the parameters the layer uses when its `slice_values` take ``sizes`` (every option is a
        prefix or centred window of the largest tensor, so a smaller option's views lie inside a larger one's)."""
        return ()

    def value_kind(self, attr: str) -> Kind:
        """What the search value ``attr`` controls: its entry in `value_kinds`, else ``"other"``."""
        return self.value_kinds.get(attr, "other")

    def decision_name(self, path: str, attr: str) -> str:
        """The name an unnamed choice gets when it is first found here (``path`` is the module path)."""
        return f"{path}.{attr}" if path else attr

    def extract(self) -> nn.Module:
        """A standalone module of standard torch layers, equal to this one under the active arch."""
        raise NotImplementedError


class NetWrapper(Searchable):
    """A searchable module around a whole network (sub-supernets, mixtures of supernets): attributes it does not
    have are looked up on the wrapped network (e.g. a GPT's ``block_size``)."""

    def wrapped(self) -> nn.Module:
        """The wrapped network (read from ``self._modules`` directly, never through attribute lookup)."""
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_"):
                raise
            return getattr(self.wrapped(), name)


def copy_param(t: Any) -> Any:
    """A detached, contiguous copy of a tensor slice as a Parameter (None stays None)."""
    if t is None:
        return None
    return nn.Parameter(t.detach().clone().contiguous(), requires_grad=t.requires_grad)


def extract_module(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with every searchable part replaced by its plain equivalent under the active arch.

    Modules that are not searchable keep their class (a user's own blocks stay the user's own blocks);
    their parameters and buffers are copied, so the result shares no storage with the supernet.
    """
    if isinstance(module, Searchable):
        # Fresh torch layers start in training mode: give them the supernet's mode.
        return module.extract().train(module.training)
    new = copy.copy(module)
    new._parameters = OrderedDict(
        (k, None if p is None else nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad))
        for k, p in module._parameters.items()
    )
    new._buffers = OrderedDict((k, None if b is None else b.detach().clone()) for k, b in module._buffers.items())
    new._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    new._modules = OrderedDict((k, None if m is None else extract_module(m)) for k, m in module._modules.items())
    for key, val in list(new.__dict__.items()):
        # Own hook registries (with the hooks present now): code that registers hooks on the copy later (Hugging
        # Face's output capturing) must not register them on the supernet too, nor the other way round.
        if "hooks" in key and isinstance(val, dict):
            new.__dict__[key] = type(val)(val)
    for key, val in list(new.__dict__.items()):
        if isinstance(val, Value):
            raise TypeError(
                f"{type(module).__name__}.{key} holds a search-space value; only supernet layers "
                "(sn.Linear, sn.Conv2d, ..., LayerChoice, Repeat) may read choices"
            )
    return new


def contains_searchable(module: nn.Module) -> bool:
    """Whether any submodule of ``module`` (itself included) depends on choices."""
    return any(isinstance(m, Searchable) for m in module.modules())
