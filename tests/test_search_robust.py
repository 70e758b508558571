"""Search robustness: damaged files, impossible or unknown constraints, exhausted spaces, dead workers."""

from __future__ import annotations

import collections
import itertools
import json
import os
import pickle
import re
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

import supernet as sn
from supernet.cli import main
from supernet.files import FileFormatError
from supernet.searching import (
    CostModel,
    SearchSetup,
    arch_key,
    count_distinct_archs,
    fail_dead_trials,
    load_front,
    make_storage,
    parse_objectives,
    search,
    worker_identity,
)
from supernet.searching.study import HEARTBEAT_GRACE_S, STALL_TRIALS, WORKER_ATTR, open_study, worker_is_gone
from supernet.training import load_run
from tiny_spaces import TINY_GPT_RUN_YAML, tiny_space

torch.set_num_threads(1)

RUN_ARCHS = 12  # embed 2 x (depth 1: 2 head options + depth 2: 4 head combinations)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained GPT run (12 distinct subnets) made by ``supernet train``."""
    root = tmp_path_factory.mktemp("run")
    cfg = root / "cfg.yaml"
    cfg.write_text(TINY_GPT_RUN_YAML.format(run_dir=root / "run", search="algorithm: random, trials: 5"))
    assert main(["train", str(cfg)]) == 0
    return root / "run"


def width_space(n: int = 6) -> sn.SuperModule:
    """One decision with ``n`` options: ``n`` distinct subnets."""
    return sn.SuperModule(sn.Linear(4, sn.Choice(list(range(1, n + 1)), name="width")))


def depth_space() -> sn.SuperModule:
    """8 arch dicts but 6 distinct subnets: block 1's kernel is inactive at depth 1."""
    blocks = [sn.Conv2d(4, 4, sn.Choice([1, 3], name=f"k{i}")) for i in range(2)]
    return sn.SuperModule(nn.Sequential(sn.Conv2d(3, 4, 3), sn.Repeat(blocks, depth=sn.Choice([1, 2], name="depth"))))


class Counting:
    """Evaluator returning a synthetic loss and counting evaluations per subnet."""

    def __init__(self, space: sn.SuperModule, delay: float = 0.0) -> None:
        self.space, self.delay = space, delay
        self.calls: collections.Counter[str] = collections.Counter()

    def __call__(self, arch: dict) -> dict:
        time.sleep(self.delay)
        self.calls[arch_key(self.space, arch)] += 1
        return {"loss": 1.0 + sum(float(v) for v in arch.values() if isinstance(v, (int, float))) / 10}


# ---------------------------------------------------------------- pareto.json


def _pareto(tmp_path: Path) -> Path:
    space = width_space()
    search(space, Counting(space), objectives=["loss", "params"], trials=3, out_dir=tmp_path, progress=False)
    return tmp_path / "pareto.json"


def test_load_front_reads_what_search_writes(tmp_path: Path) -> None:
    path = _pareto(tmp_path)
    loaded = load_front(tmp_path)
    assert loaded == json.loads(path.read_text())
    assert loaded["front"] and loaded["objectives"][0] == {"metric": "loss", "direction": "minimize"}


def _good() -> dict:
    return {
        "format": "supernet-search",
        "version": 1,
        "strategy": "nsga2",
        "objectives": [{"metric": "loss", "direction": "minimize"}],
        "constraints": [],
        "front": [{"arch": {"width": 2}, "metrics": {"loss": 1.5, "params": None}, "future_key": 1}],
        "added_later": {"x": 1},
    }


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfe{\x00}", "not UTF-8"),
        (b"", "empty"),
        (json.dumps(_good()).encode()[:70], "not valid JSON"),
        (b"[1, 2, 3]", "not a valid"),
        (json.dumps(_good() | {"front": "none"}).encode(), "front"),
        (json.dumps(_good() | {"format": "other-tool"}).encode(), "format"),
        (json.dumps({k: v for k, v in _good().items() if k != "objectives"}).encode(), "objectives"),
        (json.dumps(_good() | {"front": [{"arch": {}, "metrics": {"loss": "low"}}]}).encode(), r"front\.0\.metrics"),
        (json.dumps(_good() | {"front": [{"metrics": {}}]}).encode(), r"front\.0\.arch"),
        (json.dumps(_good() | {"objectives": [{"metric": "loss", "direction": "up"}]}).encode(), "direction"),
    ],
)
def test_load_front_rejects_damaged_files(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "pareto.json"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=re.escape(str(path)) + ".*" + problem):
        load_front(tmp_path)


def test_load_front_keeps_extra_keys(tmp_path: Path) -> None:
    (tmp_path / "pareto.json").write_text(json.dumps(_good()))
    assert load_front(tmp_path / "pareto.json")["front"][0]["future_key"] == 1
    with pytest.raises(FileNotFoundError, match=r"no pareto\.json"):
        load_front(tmp_path / "elsewhere")


# ---------------------------------------------------------------- damaged study.db


def _study_db(path: Path, n: int = 40) -> bytes:
    """The bytes of a real study database with ``n`` trials, checkpointed into the one file."""
    storage = make_storage(f"sqlite:///{path}")
    study = open_study(storage, "search", parse_objectives(["loss"]), [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            t = study.ask()
            t.set_user_attr("arch", {"i": i, "pad": "x" * 500})
            study.tell(t, float(i))
    storage.engine.dispose()
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    return path.read_bytes()


def _damaged(kind: str, tmp_path: Path) -> bytes:
    if kind == "empty":
        return b""
    if kind == "random":
        return os.urandom(50_000)
    if kind == "pickle":
        return pickle.dumps({"trials": list(range(1000))})
    if kind == "text":
        return b"this is not a database\n" * 100
    if kind == "foreign":
        other = tmp_path / "other.sqlite"
        con = sqlite3.connect(other)
        con.execute("CREATE TABLE songs (title TEXT)")
        con.commit()
        con.close()
        return other.read_bytes()
    good = _study_db(tmp_path / "good.db")
    if kind == "truncated":
        return good[: len(good) // 3]
    if kind == "whole_pages":  # cut at a page boundary: only the header's page count tells
        return good[: 4096 * 3]
    if kind == "header_only":
        return good[:100]
    assert kind == "pages"  # the header intact, the table pages overwritten
    return good[:4096] + os.urandom(len(good) - 4096)


@pytest.mark.parametrize(
    "kind", ["empty", "random", "pickle", "text", "foreign", "truncated", "whole_pages", "header_only", "pages"]
)
def test_damaged_study_db_is_a_file_format_error(tmp_path: Path, kind: str) -> None:
    db = tmp_path / "study.db"
    db.write_bytes(_damaged(kind, tmp_path))
    with pytest.raises(FileFormatError, match=re.escape(str(db)) + ": .*(SQLite|Optuna)") as info:
        make_storage(f"sqlite:///{db}")
    assert info.value.path == db
    space = width_space()
    ev = Counting(space)
    with pytest.raises(FileFormatError, match=re.escape(str(db))):
        search(space, ev, objectives=["loss"], trials=2, storage=f"sqlite:///{db}", progress=False)
    assert not ev.calls


@pytest.mark.parametrize("kind", ["random", "truncated", "pages"])
def test_sqlalchemy_errors_of_a_damaged_file_become_file_format_errors(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # without the up-front file check, the damage surfaces as SQLAlchemy/Optuna errors while opening the study
    monkeypatch.setattr("supernet.searching.study.check_study_file", lambda path: None)
    db = tmp_path / "study.db"
    db.write_bytes(_damaged(kind, tmp_path))
    space = width_space()
    with pytest.raises(FileFormatError, match=re.escape(str(db)) + ": is a damaged SQLite database"):
        search(space, Counting(space), objectives=["loss"], trials=2, storage=f"sqlite:///{db}", progress=False)


def test_a_locked_database_is_not_called_damaged(tmp_path: Path) -> None:
    from supernet.searching.study import study_file_errors

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        with study_file_errors(tmp_path / "study.db"):
            raise sqlite3.OperationalError("database is locked")


def test_a_finished_search_leaves_one_self_contained_study_file(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    space = width_space()
    search(space, Counting(space), objectives=["loss"], trials=3, storage=f"sqlite:///{db}", progress=False)
    assert not Path(f"{db}-wal").exists(), "the WAL was not folded back: copying study.db alone would lose trials"
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{copy}")
    assert len({t.user_attrs["key"] for t in study.trials if t.state == TrialState.COMPLETE}) == 3


def test_cli_reports_a_damaged_study_db(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "study.db"
    db.write_bytes(pickle.dumps([1, 2, 3]))
    argv = ["search", str(run_dir), "--storage", f"sqlite:///{db}", "--no-progress", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{db}: is not an SQLite database" in err and "Traceback" not in err and "sqlalchemy" not in err


# ---------------------------------------------------------------- unknown and impossible constraints


@pytest.mark.parametrize("as_run", [False, True])
def test_unknown_metric_fails_before_any_trial(run_dir: Path, tmp_path: Path, as_run: bool) -> None:
    source = load_run(run_dir) if as_run else run_dir
    db = tmp_path / "s.db"
    known = "loss, accuracy, params, flops, latency"
    with pytest.raises(ValueError, match=rf"unknown metric 'bogus' in constraint 'bogus <= 3'.*{known}"):
        search(source, constraints="bogus <= 3", storage=f"sqlite:///{db}", progress=False)
    with pytest.raises(ValueError, match=rf"unknown metric 'energy' in objective 'energy'.*{known}"):
        search(source, objectives=["loss", "energy:min"], storage=f"sqlite:///{db}", progress=False)
    assert not db.exists(), "no study may be created before the settings are checked"


def test_custom_evaluator_may_measure_other_metrics() -> None:
    space = width_space()

    def energy(arch: dict) -> dict:
        return {"energy": float(arch["width"]), "loss": -1.0}  # a user's "loss" may be negative

    result = search(
        space, energy, objectives=["energy:min"], constraints=["energy <= 3", "loss <= 0"], trials=3, progress=False
    )
    assert result.entries and all(e["metrics"]["energy"] <= 3 for e in result.entries)


@pytest.mark.parametrize(
    ("constraint", "why"),
    [
        ("loss <= 0", "cross-entropy, which is always > 0"),
        ("loss < 0", "cross-entropy"),
        ("accuracy > 1", "between 0 and 1"),
        ("accuracy < 0", "between 0 and 1"),
        ("params <= 0", "> 0 parameters"),
        ("latency < 0", "> 0 seconds"),
        ("loss >= 2, loss <= 1", "'loss >= 2' and 'loss <= 1' together"),
    ],
)
def test_impossible_constraint_on_a_run_fails_before_any_trial(
    run_dir: Path, tmp_path: Path, constraint: str, why: str
) -> None:
    db = tmp_path / "s.db"
    with pytest.raises(ValueError, match="no arch can satisfy .*" + re.escape(why)):
        search(run_dir, constraints=constraint, storage=f"sqlite:///{db}", progress=False)
    assert not db.exists()


def test_possible_edge_constraints_are_accepted() -> None:
    space = width_space()
    ev = Counting(space)
    result = search(
        space, ev, objectives=["loss"], constraints=["params > 0", "loss >= 1", "loss <= 1.5"], trials=2, progress=False
    )
    assert len(result.entries) == 2


def test_cost_model_ranges_hold_with_any_evaluator() -> None:
    space = width_space()
    ev = Counting(space)
    with pytest.raises(ValueError, match="no arch can satisfy 'params <= 0'"):
        search(space, ev, objectives=["loss"], constraints="params <= 0", trials=2, progress=False)
    with pytest.raises(ValueError, match="smallest arch"):  # possible in principle, not in this space
        search(space, ev, objectives=["loss"], constraints="params <= 4", trials=2, progress=False)
    assert not ev.calls


# ---------------------------------------------------------------- exhausted spaces


def _brute_distinct(space: sn.SuperModule) -> int:
    ch = space.choices
    return len({arch_key(space, dict(zip(ch, combo, strict=True))) for combo in itertools.product(*ch.values())})


def test_count_distinct_archs_matches_enumeration() -> None:
    nested = sn.LayerChoice(
        {
            "conv": sn.Conv2d(4, 4, sn.Choice([3, 5], name="k")),
            "pool": nn.AvgPool2d(3, 1, 1),
            "deep": sn.Repeat(
                [sn.Conv2d(4, 4, sn.Choice([1, 3], name=f"d{i}")) for i in range(2)],
                depth=sn.Choice([1, 2], name="depth"),
            ),
        },
        name="op",
    )
    spaces = {
        "depth": depth_space(),
        "nested": sn.SuperModule(nn.Sequential(sn.Conv2d(3, 4, 3), nested)),
        "gpt": tiny_space("gpt"),
        "mobilenet": tiny_space("mobilenet"),
        "width": width_space(),
    }
    for name, space in spaces.items():
        assert count_distinct_archs(space) == _brute_distinct(space), name
        assert name == "width" or count_distinct_archs(space) < space.num_archs(), name  # inactive decisions
    assert count_distinct_archs(depth_space()) == 6
    assert count_distinct_archs(tiny_space("nb201")) == tiny_space("nb201").num_archs()  # nothing is ever inactive
    assert count_distinct_archs(sn.spaces.mobilenet()) is None  # too many to count


@pytest.mark.parametrize("algorithm", ["random", "evolution", "nsga2"])
def test_search_stops_when_every_arch_was_evaluated(algorithm: str) -> None:
    space = depth_space()
    ev = Counting(space)
    t0 = time.perf_counter()
    result = search(space, ev, objectives=["loss"], algorithm=algorithm, trials=30, seed=0, progress=False)
    assert time.perf_counter() - t0 < 20
    # every one of the 6 subnets at most once; the search says why it stopped short of 30
    assert max(ev.calls.values()) == 1 and result.extra["space_archs"] == 6
    assert result.trials < 10 * 30 + 50
    assert result.extra["exhausted"] and len(ev.calls) == 6 == len(result.entries) == result.evaluations
    assert "the space has only 6 distinct archs and all were evaluated" in result.extra["message"]
    saved = result.to_json()
    assert saved["space_archs"] == 6 and saved["message"] == result.extra["message"]


def test_exhausted_with_infeasible_archs_and_resumed(tmp_path: Path) -> None:
    space = width_space(8)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    limit = sn.cost.params(space.extract({"width": 5}))
    ev = Counting(space)
    result = search(
        space,
        ev,
        objectives=["loss"],
        constraints=f"params <= {limit}",
        trials=20,
        storage=storage,
        algorithm="random",
        progress=False,
    )
    assert result.extra["exhausted"] and len(ev.calls) == 5 == len(result.entries)
    assert "only 8 distinct archs and all were tried (5 evaluated, 3 infeasible" in result.extra["message"]
    again = Counting(space)
    resumed = search(
        space,
        again,
        objectives=["loss"],
        constraints=f"params <= {limit}",
        trials=20,
        storage=storage,
        algorithm="random",
        progress=False,
    )
    assert not again.calls and resumed.trials == result.trials and resumed.extra["exhausted"]


def test_a_big_enough_budget_is_not_reported_as_exhausted() -> None:
    space = width_space()
    result = search(space, Counting(space), objectives=["loss"], algorithm="random", trials=6, progress=False)
    assert len(result.entries) == 6 and "exhausted" not in result.extra and "message" not in result.extra


def test_search_stops_when_the_sampler_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("supernet.searching.study.COUNT_ARCHS_MAX", 0)  # as if the space were too big to count
    space = width_space(4)
    ev = Counting(space)
    result = search(space, ev, objectives=["loss"], algorithm="random", trials=10, progress=False)
    assert len(ev.calls) == 4 and max(ev.calls.values()) == 1
    assert result.extra["stalled"] and "space_archs" not in result.extra
    assert f"stopped after {STALL_TRIALS} trials in a row" in result.extra["message"]
    assert result.trials < 10 * 10 + 50


def test_cli_says_the_space_is_exhausted(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", str(run_dir), "--trials", "30", "--study-name", "all", "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"the space has only {RUN_ARCHS} distinct archs and all were evaluated" in out
    pareto = load_front(run_dir)
    assert pareto["exhausted"] and pareto["distinct_archs"] == RUN_ARCHS == pareto["evaluations"]


# ---------------------------------------------------------------- dead workers


def _exited_worker() -> dict:
    """The identity of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    identity = worker_identity(proc.pid)
    proc.wait()
    return identity


def test_worker_is_gone_only_for_dead_local_processes() -> None:
    me = worker_identity()
    assert not worker_is_gone(me)
    assert worker_is_gone(_exited_worker())
    assert not worker_is_gone(me | {"host": "another-host"}) and not worker_is_gone(None)
    if me["start"] is not None:  # Linux: a reused pid (same pid, another start time) is a different process
        assert worker_is_gone(me | {"start": me["start"] - 1})
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not worker_is_gone(worker_identity(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()


def _running_trial(study: optuna.Study, key: str, worker: dict) -> optuna.Trial:
    """A RUNNING trial that declared ``key``, run by ``worker`` (it records no heartbeat)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns that heartbeats want Study.optimize
        trial = study.ask()
    trial.set_user_attr(WORKER_ATTR, worker)
    trial.set_user_attr("arch", json.loads(key))
    trial.set_user_attr("key", key)
    return trial


def test_resume_claims_a_dead_workers_arch_at_once(tmp_path: Path) -> None:
    space = width_space(4)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(make_storage(storage), "search", parse_objectives(["loss"]), [])
    dead = _running_trial(study, arch_key(space, {"width": 3}), _exited_worker())
    # another host's worker (its key is of no arch of this space, so nobody waits on it): left to the heartbeats
    remote = _running_trial(study, '{"width":99}', worker_identity() | {"host": "another-host"})
    ev = Counting(space)
    t0 = time.perf_counter()
    result = search(space, ev, objectives=["loss"], algorithm="random", trials=4, storage=storage, progress=False)
    assert time.perf_counter() - t0 < HEARTBEAT_GRACE_S / 4
    states = {t.number: t.state for t in optuna.load_study(study_name="search", storage=storage).trials}
    assert states[dead.number] == TrialState.FAIL and states[remote.number] == TrialState.RUNNING
    # the dead worker's arch was evaluated exactly once, like every other
    assert len(result.entries) == 4 and len(ev.calls) == 4 and max(ev.calls.values()) == 1
    assert ev.calls[arch_key(space, {"width": 3})] == 1


def test_a_waiting_trial_takes_over_from_a_dead_owner(tmp_path: Path) -> None:
    space = width_space(4)
    key = arch_key(space, {"width": 2})
    study = open_study(make_storage(f"sqlite:///{tmp_path / 's.db'}"), "search", parse_objectives(["loss"]), [])
    owner = _running_trial(study, key, _exited_worker())
    waiter = _running_trial(study, key, worker_identity())
    setup = SearchSetup(space, Counting(space), parse_objectives(["loss"]), [], CostModel(space))
    decided: list = []
    thread = threading.Thread(target=lambda: decided.append(setup._claim(waiter, key)), daemon=True)
    t0 = time.perf_counter()
    thread.start()
    thread.join(timeout=HEARTBEAT_GRACE_S / 4)
    assert not thread.is_alive(), "the waiting trial kept waiting on a dead owner"
    assert decided == [None] and time.perf_counter() - t0 < 5  # None: the waiter owns the arch now
    assert study._storage.get_trial(owner._trial_id).state == TrialState.FAIL
    assert fail_dead_trials(study) == []  # nothing else to fail; the live waiter is left alone
