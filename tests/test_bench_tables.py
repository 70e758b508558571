"""Ground-truth tables: generic format round trips, NB201 and NATS-Bench loaders, the restricted unpickler."""

from __future__ import annotations

import bz2
import collections
import itertools
import json
import math
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest

from supernet.bench import (
    ForbiddenPickleError,
    Table,
    TableError,
    arch_key,
    canonical_json,
    kendall_tau,
    load_nats_meta,
    load_nats_pickle,
    load_nats_table,
    load_nb201,
    load_table,
    parse_arch_key,
)
from supernet.bench.nats import restricted_loads
from supernet.spaces.nb201 import NB201_OPS, from_nb201_string, nb201, to_nb201_string

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NB201_DIR = DATA / "benchmarks" / "nb201"
NATS_DIR = DATA / "benchmarks" / "nats_fixtures"
needs_nb201 = pytest.mark.skipif(not NB201_DIR.is_dir(), reason="shared NB201 tables absent")
needs_nats = pytest.mark.skipif(not NATS_DIR.is_dir(), reason="shared NATS-Bench fixtures absent")
BEST_VAL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


@pytest.fixture(scope="module")
def nb201_table() -> Table:
    return load_nb201(NB201_DIR)


# -- generic format --------------------------------------------------------------------------------------------


def test_canonical_keys() -> None:
    assert canonical_json({"b": 2, "a": [1, 2]}) == '{"a":[1,2],"b":2}'
    assert arch_key({"b": 2, "a": 1}) == arch_key({"a": 1, "b": 2})
    assert parse_arch_key(arch_key({"depth": 2, "embed": 64})) == {"depth": 2, "embed": 64}
    arch = {
        "edge_1_0": "none",
        "edge_2_0": "skip_connect",
        "edge_2_1": "nor_conv_1x1",
        "edge_3_0": "nor_conv_3x3",
        "edge_3_1": "avg_pool_3x3",
        "edge_3_2": "none",
    }
    key = arch_key(arch, "nb201")
    assert key == "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|"
    assert parse_arch_key(key) == arch
    with pytest.raises(TableError, match="neither"):
        parse_arch_key("not json")


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_generic_table_round_trip(tmp_path: Path, suffix: str) -> None:
    rows = {
        arch_key({"depth": 2, "embed": 64}): {"val_accuracy": 81.25, "params": 12345.0},
        arch_key({"depth": 1, "embed": 32}): {"val_accuracy": 70.5, "params": 2345.0, "latency": 0.001},
    }
    table = Table(rows, None, {"recipe": {"steps": 3}})
    path = table.save(tmp_path / f"t{suffix}")
    back = load_table(path)
    assert list(back.rows) == list(rows)
    assert back.metrics == ["val_accuracy", "params", "latency"]
    first = next(iter(back.rows))
    assert math.isnan(back.values("latency")[0])  # missing value -> NaN
    assert back[{"embed": 32, "depth": 1}]["val_accuracy"] == 70.5
    assert back.best("val_accuracy") == arch_key({"depth": 2, "embed": 64})
    assert back.worst("val_accuracy") == arch_key({"depth": 1, "embed": 32})
    assert back.arch(first) == {"depth": 2, "embed": 64}
    if suffix == ".json":
        assert back.metadata["recipe"] == {"steps": 3}
        assert json.loads(path.read_text())["format"] == "supernet-table"
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_plain_json_mapping_and_errors(tmp_path: Path) -> None:
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"|none~0|+|none~0|none~1|+|none~0|none~1|none~2|": {"acc": 10}}))
    t = load_table(plain)
    assert t.space == "nb201" and len(t) == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x": {"acc": "high"}}))
    with pytest.raises(TableError, match=r"row 'x', metric 'acc': expected a number"):
        load_table(bad)
    nocol = tmp_path / "bad.csv"
    nocol.write_text("name,acc\nx,1\n")
    with pytest.raises(TableError, match="header starting with 'arch'"):
        load_table(nocol)
    with pytest.raises(FileNotFoundError):
        load_table(tmp_path / "missing.json")
    with pytest.raises(TableError, match=r"\.json or \.csv"):
        t.save(tmp_path / "t.txt")
    with pytest.raises(TableError, match="not in the table"):
        t["|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"]
    with pytest.raises(TableError, match="metric 'nope'"):
        t.values("nope")


# -- NAS-Bench-201 ---------------------------------------------------------------------------------------------


@needs_nb201
def test_nb201_tables_load(nb201_table: Table) -> None:
    assert len(nb201_table) == 15625
    for m in ("val_acc_200", "test_acc_200", "rank", "flops", "params", "costs_val_acc"):
        assert m in nb201_table.metrics
    assert nb201_table.best("val_acc_200") == BEST_VAL
    assert max(nb201_table.values("test_acc_200")) == pytest.approx(94.373, abs=1e-3)  # the README's optimum
    assert nb201_table.best("rank", higher_is_better=False) == nb201_table.best("test_acc_200")
    c100 = load_nb201(NB201_DIR, dataset="cifar100")
    assert len(c100) == 15625 and "flops" not in c100.metrics
    with pytest.raises(TableError, match="unknown NB201 dataset"):
        load_nb201(NB201_DIR, dataset="mnist")


@needs_nb201
def test_nb201_flops_floor_matches_readme(nb201_table: Table) -> None:
    flops = nb201_table.values("flops")
    # The README's 0.574 is FLOPs against the costs CSV's validation accuracy; against val_acc_200 it is 0.533.
    assert kendall_tau(flops, nb201_table.values("costs_val_acc")) == pytest.approx(0.574, abs=5e-4)
    assert kendall_tau(flops, nb201_table.values("val_acc_200")) == pytest.approx(0.533, abs=5e-4)


@needs_nb201
def test_arch_mapping_between_space_and_table_is_exact(nb201_table: Table) -> None:
    space = nb201(C=1, N=1)
    every = {
        to_nb201_string(dict(zip(space.choices, ops, strict=True)))
        for ops in itertools.product(*space.choices.values())
    }
    assert every == set(nb201_table.rows)  # the space and the table hold exactly the same 15,625 archs
    for key in itertools.islice(nb201_table.rows, 500):
        arch = space.from_nb201_string(key)
        assert space.to_nb201_string(arch) == key
        assert nb201_table.key(arch) == key
    # op semantics: the edge 3<-2 of the string is the decision edge_3_2
    arch = from_nb201_string("|none~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert arch["edge_3_2"] == "nor_conv_3x3" and set(arch.values()) == {"none", "nor_conv_3x3"}
    assert set(NB201_OPS) == {"none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"}


# -- NATS-Bench and the restricted unpickler -------------------------------------------------------------------


@needs_nats
@needs_nb201
def test_nats_tss_matches_nb201_and_our_params(nb201_table: Table) -> None:
    table = load_nats_table(NATS_DIR / "NATS-tss-v1_0-3ffb9-simple")
    assert table.space == "nb201" and len(table) == 3 and table.metadata["hp"] == "200"
    meta = load_nats_meta(NATS_DIR / "NATS-tss-v1_0-3ffb9-simple")
    assert meta["total_archs"] == len(meta["meta_archs"]) == 15625
    space = nb201(C=16, N=5)
    import supernet as sn

    for key, row in table.rows.items():
        assert meta["meta_archs"][int(row["index"])] == key
        # NB201's val_acc_200 is the cifar10-valid x-valid accuracy averaged over 3 seeds
        assert row["x-valid_acc"] == pytest.approx(nb201_table[key]["val_acc_200"], abs=1e-6)
        assert row["seeds"] == 3
        # our space, extracted under the same string, has exactly the official parameter count
        assert sn.cost.params(space.extract(space.from_nb201_string(key))) == round(row["params"] * 1e6)


@needs_nats
def test_nats_sss_and_hp() -> None:
    table = load_nats_table(NATS_DIR / "NATS-sss-v1_0-50262-simple", dataset="cifar100", hp="12")
    assert table.space == "nats-sss" and len(table) == 3
    assert all(k.count(":") == 4 for k in table.rows)
    assert {"x-valid_acc", "x-test_acc", "ori-test_acc", "params", "flops"} <= set(table.metrics)
    with pytest.raises(TableError, match="no schedule"):
        load_nats_table(NATS_DIR / "NATS-sss-v1_0-50262-simple", hp="200")
    with pytest.raises(TableError, match="no results for dataset"):
        load_nats_table(NATS_DIR / "NATS-tss-v1_0-3ffb9-simple", dataset="mnist")


class _Evil:
    def __init__(self, func: object, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (self.func, (self.arg,))


@pytest.mark.parametrize("func", [os.system, eval, subprocess.getoutput])
def test_restricted_unpickler_refuses_other_globals(tmp_path: Path, func: object) -> None:
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').close()" if func is eval else f"touch {marker}"
    evil = pickle.dumps({"ok": collections.OrderedDict(a=1), "x": _Evil(func, payload)}, protocol=4)
    with pytest.raises(ForbiddenPickleError, match="refusing to load global"):
        restricted_loads(evil)
    path = tmp_path / "000000.pickle.pbz2"
    path.write_bytes(bz2.compress(evil))
    with pytest.raises(ForbiddenPickleError):
        load_nats_pickle(path)
    assert not marker.exists()


class _Evil2:
    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        scalar = np.float64(0.0).__reduce__()[0]  # the allowed numpy scalar rebuilder, fed an object dtype
        return (scalar, (np.dtype(object), [os.system]))


def test_restricted_unpickler_protocol0_and_numpy_guards() -> None:
    with pytest.raises(ForbiddenPickleError, match=r"os\.system"):
        restricted_loads(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(ForbiddenPickleError, match=r"builtins\.getattr"):
        restricted_loads(pickle.dumps(getattr))
    # an object-dtype numpy scalar (could smuggle any object) is refused; numeric scalars load
    with pytest.raises(ForbiddenPickleError, match="numeric"):
        restricted_loads(pickle.dumps(_Evil2()))
    ok = restricted_loads(pickle.dumps(collections.OrderedDict(p=np.float64(0.5), q=np.int32(3), r=[1.0])))
    assert ok == {"p": 0.5, "q": 3, "r": [1.0]} and isinstance(ok["p"], np.float64)


def test_load_nats_pickle_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_nats_pickle(tmp_path / "none.pickle.pbz2")
    junk = tmp_path / "junk.pickle.pbz2"
    junk.write_bytes(b"not bz2")
    with pytest.raises(TableError, match="not a NATS-Bench"):
        load_nats_pickle(junk)
