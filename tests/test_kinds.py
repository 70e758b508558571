"""Decision kinds (kernel / depth / width / other): declared by the searchable layers, pinned for every ready space."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import supernet as sn
from supernet.space import Searchable, current
from supernet.training import decision_kinds

# The kinds of every ready space's decisions (default arguments), as the name-guessing version gave them.
NB201 = {f"edge_{j}_{i}": "other" for j, i in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))}
MOBILENET = {
    name: kind
    for s in range(4)
    for name, kind in (
        (f"stage{s}.depth", "depth"),
        *((f"stage{s}.block{b}.{what}", kind) for b in range(4) for what, kind in (("expand", "width"),
                                                                                   ("kernel", "kernel"))),
    )
}
TRANSFORMER = {
    "embed_dim": "width",
    "depth": "depth",
    **{f"layers.{i}.{what}": "width" for i in range(4) for what in ("heads", "mlp_ratio")},
}
PINNED: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "nb201": ({}, NB201),
    "mobilenet": ({}, MOBILENET),
    "gpt": ({"vocab_size": 65, "block_size": 64}, TRANSFORMER),
    "vit": ({}, TRANSFORMER),
}


@pytest.mark.parametrize("name", list(PINNED))
def test_ready_space_kinds_are_pinned(name):
    kwargs, expected = PINNED[name]
    space = sn.spaces.build_space(name, **kwargs)
    kinds = decision_kinds(space)
    assert kinds == expected
    assert list(kinds) == list(space.decisions)  # the space's order


def test_layers_declare_the_kind_of_each_search_value():
    c = sn.Choice([4, 8])
    k = sn.Choice([3, 5])
    layers: list[tuple[Searchable, dict[str, str]]] = [
        (sn.Linear(c, c), {"in_features": "width", "out_features": "width"}),
        (sn.Conv2d(c, c, k), {"in_channels": "width", "out_channels": "width", "kernel_size": "kernel"}),
        (sn.BatchNorm2d(c), {"num_features": "width"}),
        (sn.LayerNorm(c), {"normalized_shape": "width"}),
        (sn.Embedding(10, c), {"embedding_dim": "width"}),
        (sn.PositionalEmbedding(4, c), {"dim": "width"}),
        (sn.ClassToken(c), {"dim": "width"}),
        (sn.Repeat([nn.Identity(), nn.Identity()], depth=sn.Choice([1, 2])), {"depth": "depth"}),
        (sn.LayerChoice({"a": nn.Identity(), "b": nn.ReLU()}), {"choice": "other"}),
    ]
    for layer, expected in layers:
        assert set(layer.search_values()) == set(expected), type(layer).__name__
        assert {attr: layer.value_kind(attr) for attr in layer.search_values()} == expected, type(layer).__name__


class _Scale(Searchable):
    """A user's searchable layer: multiplies by a searchable factor and declares its kind."""

    value_kinds: ClassVar[dict[str, Any]] = {"factor": "width"}

    def __init__(self, factor: Any, kernel_shift: Any) -> None:
        super().__init__()
        self.factor, self.kernel_shift = factor, kernel_shift

    def search_values(self) -> dict[str, Any]:
        return {"factor": self.factor, "kernel_shift": self.kernel_shift}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * current(self.factor) + current(self.kernel_shift)

    def extract(self) -> nn.Module:
        return nn.Identity()


def test_user_layers_declare_kinds_and_undeclared_values_are_other():
    space = sn.SuperModule(nn.Sequential(_Scale(sn.Choice([1, 2], name="f"), sn.Choice([0, 1], name="shift"))))
    # No guessing from attribute names: an undeclared value is "other" whatever it is called.
    assert decision_kinds(space) == {"f": "width", "shift": "other"}


def test_a_choice_used_in_several_roles_takes_the_first_of_kernel_depth_width_other():
    shared = sn.Choice([3, 5], name="shared")
    width = sn.Choice([4, 8], name="width")
    net = nn.Sequential(
        sn.Conv2d(3, width, shared),
        sn.Repeat([nn.Identity() for _ in range(5)], depth=shared),
        sn.Conv2d(width, shared, 1),
    )
    assert decision_kinds(sn.SuperModule(net)) == {"width": "width", "shared": "kernel"}
    net2 = nn.Sequential(sn.Linear(3, width), sn.Repeat([nn.Identity() for _ in range(8)], depth=width))
    assert decision_kinds(sn.SuperModule(net2)) == {"width": "depth"}


def test_derived_values_give_their_kind_to_every_leaf():
    embed = sn.Choice([8, 16], name="embed")
    ratio = sn.Choice([2, 3], name="ratio")
    space = sn.SuperModule(nn.Sequential(sn.Linear(4, embed), sn.Linear(embed, embed * ratio)))
    assert decision_kinds(space) == {"embed": "width", "ratio": "width"}


def test_overrides_win_and_are_validated():
    space = sn.spaces.build_space("nb201", C=4, N=1)
    kinds = decision_kinds(space, {"edge_1_0": "width"})
    assert kinds["edge_1_0"] == "width" and kinds["edge_2_0"] == "other"
    with pytest.raises(ValueError, match="unknown decision 'nope'"):
        decision_kinds(space, {"nope": "width"})
    with pytest.raises(ValueError, match="must be one of"):
        decision_kinds(space, {"edge_1_0": "colour"})
