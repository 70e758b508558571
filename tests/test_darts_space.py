"""The DARTS cell space: genotypes, the evaluation network, the mixture, and every strategy on it.

The space-wide checks (exact extraction, params of extracted nets, plain classes, safetensors) run for darts in
tests/test_spaces.py like for every ready space.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from supernet.space import collect_choices
from supernet.space.superposition import superposition
from supernet.spaces import DARTS_OPS, DARTS_V2, Genotype, darts, darts_network, from_genotype, to_genotype
from supernet.spaces.darts import GenotypeError
from supernet.training import train
from supernet.training.strategies import STRATEGIES
from tiny_spaces import tiny_space

# DARTS_V2 as the DARTS code prints it (genotypes.py of the official repository).
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def images(n: int = 8, size: int = 16, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_decisions_are_the_genotype_entries() -> None:
    space = darts(C=4, layers=3)
    names = [f"{t}.node{i}.{d}" for t in ("normal", "reduce") for i in range(4) for d in ("in0", "op0", "in1", "op1")]
    assert sorted(space.choices) == sorted(names)
    assert list(space.choices["normal.node2.in1"]) == [0, 1, 2, 3]  # the two cell inputs and nodes 0, 1
    assert list(space.choices["reduce.node0.op0"]) == list(DARTS_OPS)
    assert "none" not in DARTS_OPS and len(DARTS_OPS) == 7


@pytest.mark.parametrize("seed", range(10))
def test_genotype_round_trip_for_sampled_archs(seed: int) -> None:
    space = darts(C=4, layers=3)
    arch = space.sample(seed=seed)
    g = space.to_genotype(arch)
    assert isinstance(g, Genotype) and len(g.normal) == len(g.reduce) == 8
    assert g.normal_concat == g.reduce_concat == [2, 3, 4, 5]
    for t in ("normal", "reduce"):
        for i in range(4):  # entry order: node i's two (op, input) pairs are entries 2i, 2i + 1
            for j in (0, 1):
                assert getattr(g, t)[2 * i + j] == (arch[f"{t}.node{i}.op{j}"], arch[f"{t}.node{i}.in{j}"])
    assert space.from_genotype(g) == arch
    assert from_genotype(str(g)) == arch  # the string the DARTS code prints parses back
    assert from_genotype(g._asdict()) == arch


def test_published_darts_v2_parses_and_builds_with_the_published_parameter_count() -> None:
    assert from_genotype(DARTS_V2_TEXT) == from_genotype(DARTS_V2)
    assert to_genotype(from_genotype(DARTS_V2)) == DARTS_V2
    net = darts_network(DARTS_V2)  # C=36, 20 cells, auxiliary head: the DARTS CIFAR-10 network
    without_aux = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("auxiliary_head"))
    assert without_aux == 3_349_342  # what the DARTS code prints; the paper's "3.3M"
    assert abs(without_aux - 3.3e6) / 3.3e6 < 0.02
    assert sum(p.numel() for p in net.parameters()) == 3_825_768


def test_evaluation_network_forward_auxiliary_and_drop_path() -> None:
    net = darts_network(DARTS_V2, C=4, layers=5, num_classes=3, drop_path_prob=0.3)
    x, _ = images(4, 32)
    net.train()
    logits, aux = net(x)
    assert logits.shape == aux.shape == (4, 3)
    torch.manual_seed(0)
    a = net(x)[0]
    torch.manual_seed(1)
    assert not torch.allclose(a, net(x)[0])  # drop-path (and BN batch stats) differ between draws in training
    net.eval()
    out = net(x)
    assert isinstance(out, torch.Tensor) and out.shape == (4, 3)
    torch.testing.assert_close(out, net(x))  # deterministic in eval mode: no drop-path
    no_aux = darts_network(DARTS_V2, C=4, layers=5, num_classes=3, auxiliary=False).train()
    assert isinstance(no_aux(x), torch.Tensor)


def test_space_builds_the_evaluation_network_of_an_arch() -> None:
    space = darts(C=4, layers=3)
    arch = space.sample(seed=3)
    net = space.network(arch, C=4, layers=5, auxiliary=False)
    assert net.genotype == space.to_genotype(arch)


@pytest.mark.parametrize(
    ("genotype", "match"),
    [
        ("Genotype(normal=[('sep_conv_3x3', 0)]", "Genotype"),
        ({"normal": [("bogus_op", 0)] * 8, "normal_concat": [2, 3, 4, 5], "reduce": [("max_pool_3x3", 0)] * 8,
          "reduce_concat": [2, 3, 4, 5]}, "bogus_op"),
        ({"normal": [("sep_conv_3x3", 5)] * 8, "normal_concat": [2, 3, 4, 5], "reduce": [("max_pool_3x3", 0)] * 8,
          "reduce_concat": [2, 3, 4, 5]}, "input"),
    ],
)
def test_malformed_genotypes_are_refused_with_the_reason(genotype: object, match: str) -> None:
    with pytest.raises(GenotypeError, match=match):
        from_genotype(genotype)


@pytest.mark.parametrize(("kwargs", "match"), [({"layers": 2}, "layers"), ({"C": 0}, "C"), ({"nodes": True}, "nodes")])
def test_bad_sizes_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        darts(**kwargs)


def test_one_hot_mixture_equals_the_arch_and_passes_gradients_to_every_weight() -> None:
    """A mixture with all mass on the arch's options runs the arch, and the mixture weights get gradients."""
    space = tiny_space("darts", num_classes=3).eval()
    x, _ = images(2, 16, 3)
    arch = space.sample(seed=0)
    space.set_arch(arch)
    with torch.no_grad():
        hard = space(x)
    # a mixture putting all its mass on the arch's options gives the arch's output
    weights = {
        c: torch.tensor([1.0 if o == arch[n] else 0.0 for o in space.choices[n]], requires_grad=True)
        for n, c in collect_choices(space).items()
    }
    with superposition(weights):
        mixed = space(x)
    torch.testing.assert_close(mixed, hard, atol=1e-5, rtol=1e-5)
    mixed.square().sum().backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0 for w in weights.values())


def test_derive_arch_keeps_two_distinct_strongest_inputs() -> None:
    space = darts(C=4, layers=3, nodes=2)
    probs = {n: [1.0 / len(c)] * len(c) for n, c in space.choices.items()}
    # node 1 of the normal cell: both slots prefer input 2 (node 0); DARTS' derivation must take a second input
    probs["normal.node1.in0"] = [0.0, 0.1, 0.9]
    probs["normal.node1.in1"] = [0.05, 0.05, 0.9]
    probs["normal.node1.op0"] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    arch = space.derive_arch(probs)
    inputs = {arch["normal.node1.in0"], arch["normal.node1.in1"]}
    assert inputs == {2, 1}
    assert arch["normal.node1.in0"] == 2  # the strongest first
    with pytest.raises(KeyError, match=r"normal\.node0\.in0"):
        space.derive_arch({k: v for k, v in probs.items() if k != "normal.node0.in0"})


def _cells_data(classes: int = 4) -> tuple:
    x, y = images(48, 16, classes, seed=1)
    return (x[:32], y[:32]), (x[32:], y[32:])


@pytest.mark.parametrize(
    "strategy",
    sorted(set(STRATEGIES) - {"mos"}),  # mos mixes entangled sizes: the darts space has none
)
def test_every_strategy_runs_a_few_steps(strategy: str, tmp_path: Path) -> None:
    space = tiny_space("darts", num_classes=4)
    cfg = {"steps": 2, "batch_size": 8, "progress": False, "eval_batches": 1, "seed": 0, "tensorboard": False}
    run = train(space, _cells_data(), strategy=strategy, config=cfg, run_dir=tmp_path / strategy)
    assert all(math.isfinite(h["loss"]) for h in run.history)
    if run.final_arch is not None:
        assert space.validate(run.final_arch) == run.final_arch


def test_darts_pt_selection_settles_every_decision(tmp_path: Path) -> None:
    space = tiny_space("darts", num_classes=4)
    opts = {"selection": "perturbation", "selection_interval": 1, "selection_batches": 1}
    steps = 2 + len(space.choices)
    cfg = {"steps": steps, "batch_size": 8, "progress": False, "eval_batches": 1, "seed": 0, "tensorboard": False,
           "strategy": "darts", "strategy_options": opts}
    run = train(space, _cells_data(), strategy="darts", config=cfg, run_dir=tmp_path / "pt")
    assert sorted(e["decision"] for e in run.strategy.selection_log) == sorted(space.choices)
    assert space.validate(run.final_arch) == run.final_arch
