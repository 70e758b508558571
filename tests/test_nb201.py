"""The NAS-Bench-201 space: structure, official strings, exact extraction, parameter counts vs the benchmark."""

from __future__ import annotations

import csv
import itertools
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import supernet as sn
from supernet.space import InvalidOptionError, MissingDecisionError, Searchable, SuperModule, UnknownDecisionError
from supernet.spaces import NB201_OPS, from_nb201_string, to_nb201_string
from supernet.spaces.nb201 import NB201_EDGE_NAMES, NB201Space, NB201StringError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NB201_DIR = DATA / "benchmarks" / "nb201"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
EXAMPLE_ARCH = {
    "edge_1_0": "nor_conv_3x3",
    "edge_2_0": "nor_conv_3x3",
    "edge_2_1": "avg_pool_3x3",
    "edge_3_0": "skip_connect",
    "edge_3_1": "nor_conv_3x3",
    "edge_3_2": "skip_connect",
}


def _randomise_bn(net: nn.Module, seed: int) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics (so eval mode is a real test)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.fixture(scope="module")
def small() -> NB201Space:
    torch.manual_seed(0)
    space = sn.spaces.nb201(C=8, N=1, num_classes=10)
    _randomise_bn(space, seed=1)
    return space.eval()


@pytest.fixture(scope="module")
def full() -> NB201Space:
    torch.manual_seed(0)
    return sn.spaces.nb201(C=16, N=5, num_classes=10).eval()


# --- structure --------------------------------------------------------------------------------------------------


def test_decisions_are_six_shared_edges_in_official_order(full: NB201Space) -> None:
    assert isinstance(full, SuperModule)
    assert list(full.choices) == list(NB201_EDGE_NAMES)
    assert list(NB201_EDGE_NAMES) == ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]
    assert all(opts == NB201_OPS for opts in full.choices.values())
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert full.num_archs() == 15_625
    layer_choices = [m for m in full.modules() if isinstance(m, sn.LayerChoice)]
    assert len(layer_choices) == 6 * 3 * 5  # 6 edges in each of the 3N cells, all sharing the 6 decisions
    assert {id(m.choice) for m in layer_choices} == {id(c) for c in full.decisions.values()}
    # Setting the arch switches the same edge in every cell.
    full.set_arch(EXAMPLE_ARCH)
    for k, lc in enumerate(layer_choices):
        assert lc.choice.current == EXAMPLE_ARCH[NB201_EDGE_NAMES[k % 6]]


def test_max_and_min_arch(full: NB201Space) -> None:
    assert full.max_arch() == dict.fromkeys(NB201_EDGE_NAMES, "nor_conv_3x3")
    assert full.min_arch() == dict.fromkeys(NB201_EDGE_NAMES, "none")
    full.set_arch(full.max_arch())
    # stem 464 + reductions 14,464 + 57,600 + last BN 128 + classifier 650 = 73,306; each 3x3 edge adds
    # 5 cells x (9 C^2 + 2 C) summed over C = 16, 32, 64 = 243,040.
    assert sn.cost.params(full) == 73_306 + 6 * 243_040
    full.set_arch(full.min_arch())
    assert sn.cost.params(full) == 73_306


def test_spec_rebuilds_the_space(full: NB201Space) -> None:
    assert full.spec == {"space": "nb201", "kwargs": {"C": 16, "N": 5, "num_classes": 10}}
    again = sn.spaces.build_space("nb201", C=4, N=1, num_classes=3)
    assert isinstance(again, NB201Space) and again.spec["kwargs"] == {"C": 4, "N": 1, "num_classes": 3}
    assert again(torch.zeros(2, 3, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize("kwargs", [{"C": 0}, {"N": -1}, {"num_classes": 2.5}, {"C": True}])
def test_bad_constructor_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be a positive int"):
        sn.spaces.nb201(**kwargs)


def test_extracted_structure_is_nb201() -> None:
    space = sn.spaces.nb201(C=4, N=2, num_classes=7)
    net = space.extract(EXAMPLE_ARCH)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 3 and convs[0].kernel_size == (3, 3) and convs[0].bias is None
    assert all(c.bias is None for c in convs)
    pools = [m for m in net.modules() if isinstance(m, nn.AvgPool2d)]
    cell_pools = [p for p in pools if p.kernel_size == 3]
    assert len(cell_pools) == 6 and all(
        p.stride == 1 and p.padding == 1 and not p.count_include_pad for p in cell_pools
    )
    shortcut_pools = [p for p in pools if p.kernel_size == 2]
    assert len(shortcut_pools) == 2 and all(p.stride == 2 for p in shortcut_pools)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(b.affine and b.track_running_stats for b in bns)
    assert net.classifier.in_features == 16 and net.classifier.out_features == 7
    x = torch.randn(2, 3, 32, 32)
    assert net.eval()(x).shape == (2, 7)


# --- official strings ---------------------------------------------------------------------------------------------


def test_string_round_trip_for_all_archs() -> None:
    strings = set()
    for ops in itertools.product(NB201_OPS, repeat=6):
        arch = dict(zip(NB201_EDGE_NAMES, ops, strict=True))
        s = to_nb201_string(arch)
        back = from_nb201_string(s)
        assert back == arch and list(back) == list(NB201_EDGE_NAMES)
        strings.add(s)
    assert len(strings) == 15_625
    table = NB201_DIR / "nasbench201_cifar10.json"
    if table.exists():  # every string we write is a key of the benchmark's own table
        assert strings == set(json.loads(table.read_text()))


def test_example_string(small: NB201Space) -> None:
    assert from_nb201_string(EXAMPLE) == EXAMPLE_ARCH
    assert to_nb201_string(EXAMPLE_ARCH) == EXAMPLE
    assert from_nb201_string("  " + EXAMPLE + "\n") == EXAMPLE_ARCH
    assert small.from_nb201_string(EXAMPLE) == EXAMPLE_ARCH
    assert small.to_nb201_string(EXAMPLE_ARCH) == EXAMPLE
    small.set_arch(EXAMPLE_ARCH)
    assert small.to_nb201_string() == EXAMPLE


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "1 '\\+'-separated node"),
        ("|none~0|+|none~0|none~1|", "2 '\\+'-separated node"),
        (EXAMPLE + "+|none~0|", "4 '\\+'-separated node"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1 of NB201 string .* between bars"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2", "node 3 of NB201 string .* between bars"),
        ("||+|none~0|none~1|+|none~0|none~1|none~2|", "edge '' in node 1 .* lacks '~'"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 .* has 1 edge"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|", "node 3 .* has 4 edge"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "lacks '~'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "has input '1'; expected 0"),
        ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "has input '1'; expected 0"),
        ("|none~0|+|none~0|none~x|+|none~0|none~1|none~2|", "has input 'x'; expected 1"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|conv_3x3~2|", "unknown op 'conv_3x3'"),
        ("|none~0|+|none~0| none~1|+|none~0|none~1|none~2|", "unknown op ' none'"),
    ],
)
def test_malformed_strings_are_rejected(text: str, fragment: str) -> None:
    with pytest.raises(NB201StringError, match=fragment):
        from_nb201_string(text)


def test_non_string_is_rejected() -> None:
    with pytest.raises(NB201StringError, match="must be a str, got NoneType"):
        from_nb201_string(None)  # type: ignore[arg-type]


# --- bad archs ----------------------------------------------------------------------------------------------------


def test_bad_arch_errors_name_the_decision(small: NB201Space) -> None:
    good = dict(EXAMPLE_ARCH)
    unknown = {**good, "edge_3_3": "none"}
    wrong_op = {**good, "edge_2_1": "conv_5x5"}
    missing = {k: v for k, v in good.items() if k != "edge_3_0"}
    for check in (small.set_arch, small.extract, to_nb201_string, small.to_nb201_string):
        with pytest.raises(UnknownDecisionError, match="'edge_3_3'"):
            check(unknown)
        with pytest.raises(InvalidOptionError, match=r"'edge_2_1' does not allow 'conv_5x5'.*nor_conv_3x3"):
            check(wrong_op)
        with pytest.raises(MissingDecisionError, match="'edge_3_0'"):
            check(missing)
    with pytest.raises(TypeError, match="must be a dict"):
        to_nb201_string(["none"] * 6)  # type: ignore[arg-type]


# --- exact extraction ---------------------------------------------------------------------------------------------


def _archs(space: NB201Space) -> list[dict]:
    return [space.sample(seed=s) for s in range(25)] + [space.max_arch(), space.min_arch()]


def test_extracted_net_equals_supernet(small: NB201Space, tmp_path: Path) -> None:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    outputs = []
    for k, arch in enumerate(_archs(small)):
        small.set_arch(arch)
        with torch.no_grad():
            expected = small(x)
        outputs.append(expected)
        net = small.extract(arch)
        assert not net.training
        assert not any(isinstance(m, (Searchable, SuperModule)) for m in net.modules())
        with torch.no_grad():
            got = net(x)
        assert (got - expected).abs().max().item() <= 1e-5, small.to_nb201_string(arch)
        assert sn.cost.params(net) == sn.cost.params(small)

        # Weights round-trip through safetensors into a fresh extract whose weights were scrambled first.
        path = tmp_path / f"arch{k}.safetensors"
        save_file(net.state_dict(), str(path))
        fresh = small.extract(arch)
        with torch.no_grad():
            for p in fresh.parameters():
                p.normal_()
        fresh.load_state_dict(load_file(str(path)))
        with torch.no_grad():
            assert torch.equal(fresh(x), got)
    # The archs really differ (the comparison above is not between constant outputs).
    assert (outputs[-2] - outputs[-1]).abs().max() > 1e-3
    assert len({tuple(o.flatten().tolist()) for o in outputs}) >= 20


def test_extraction_shares_no_storage(small: NB201Space) -> None:
    net = small.extract(small.max_arch())
    supernet_ptrs = {p.data_ptr() for p in small.parameters()}
    assert not any(p.data_ptr() in supernet_ptrs for p in net.parameters())


def test_dead_edges_do_not_change_the_output(small: NB201Space) -> None:
    """An op on an edge whose node never reaches the cell output does not change the output."""
    x = torch.randn(2, 3, 16, 16)
    a = dict.fromkeys(NB201_EDGE_NAMES, "none") | {"edge_1_0": "nor_conv_3x3", "edge_3_1": "skip_connect"}
    b = a | {"edge_2_0": "avg_pool_3x3"}  # node 2 does not reach the output while edge_3_2 is none
    small.set_arch(a)
    with torch.no_grad():
        out_a = small(x)
    small.set_arch(b)
    with torch.no_grad():
        out_b = small(x)
    assert torch.equal(out_a, out_b)


# --- parameter counts vs the benchmark -------------------------------------------------------------------------


COSTS = NB201_DIR / "nasbench201_cifar10_costs.csv"


@pytest.mark.skipif(not COSTS.exists(), reason="shared NAS-Bench-201 data absent")
def test_params_match_nasbench201_table(full: NB201Space) -> None:
    with COSTS.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15_625
    for row in random.Random(0).sample(rows, 10):
        arch = {name: row[f"hp_x{k}"] for k, name in enumerate(NB201_EDGE_NAMES)}
        table = float(row["metric_params"]) * 1e6
        ours = sn.cost.params(full.extract(arch))
        assert abs(ours - table) <= 0.02 * table, (to_nb201_string(arch), ours, table)
        assert abs(ours - table) < 1  # in fact exact: the table counts parameters as we do


ZC = DATA / "benchmarks" / "naslib_zc" / "zc_nasbench201_subset725.json"


@pytest.mark.skipif(not (COSTS.exists() and ZC.exists()), reason="shared NAS-Bench-201 data absent")
def test_params_where_the_costs_table_is_wrong(full: NB201Space) -> None:
    """150 of the 15,625 rows of the costs CSV carry another arch's params/FLOPs; NASLib's table agrees with us.

    NASLib arch tuples list edges 0->1, 0->2, 0->3, 1->2, 1->3, 2->3 with ops 0 skip, 1 none, 2 conv3x3,
    3 conv1x1, 4 avgpool.
    """
    naslib = json.loads(ZC.read_text())["cifar10"]
    with COSTS.open(newline="") as f:
        csv_params = {tuple(r[f"hp_x{k}"] for k in range(6)): float(r["metric_params"]) for r in csv.DictReader(f)}
    for key, naslib_ops in [
        (
            "(0, 1, 2, 2, 2, 2)",
            ("skip_connect", "none", "nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3"),
        ),
        ("(1, 2, 2, 0, 0, 1)", ("none", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "skip_connect", "none")),
    ]:
        arch = dict(zip(NB201_EDGE_NAMES, naslib_ops, strict=True))
        ours = sn.cost.params(full.extract(arch))
        assert ours == round(naslib[key]["params"]["score"] * 1e6)
        assert abs(ours - csv_params[naslib_ops] * 1e6) == 243_040  # the CSV is one 3x3 edge off
