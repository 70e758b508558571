"""The Optuna study behind a search: storage, samplers, and the objective with its no-duplicate protocol.

Persistence: every trial's arch, canonical key, metrics and constraint violations are Optuna user attrs in the
study's storage (SQLite file by default), so a killed search resumes from the storage with nothing lost.

No arch is evaluated twice, also with several workers on one storage (a "declare, then decide" protocol):
1. A trial samples an arch, computes its canonical key (`keys.arch_key`) and at once *declares* it as its user
   attr ``key`` (visible to every worker). Cheap constraints are checked next; an infeasible arch is pruned
   without being evaluated (every trial with that key is equally infeasible).
2. It then reads the RUNNING and COMPLETE trials. If one with the same key is COMPLETE, its metrics are reused.
   If a RUNNING trial with a lower number has not declared its key yet, it waits (that takes milliseconds).
   Otherwise the owner of the key is the lowest-numbered RUNNING trial with that key: the owner evaluates, the
   others wait until it completes (then reuse its metrics) or fails (then ownership passes to the next one).
Trial numbers are assigned atomically by the storage when a trial is created, and a trial decides only once
every lower-numbered running trial has declared its key, so all trials of one key agree on a single owner.
Trials of a killed process stay RUNNING. Each trial records which process runs it (`worker_identity`: host,
pid, process start time); a trial whose process on this host is gone is marked failed at once, when a search
starts and whenever a trial waits on it, so its arch passes on without delay. Trials of workers on other hosts
are failed by Optuna's heartbeats after a grace period, so nobody waits on them for ever.

The study stops once ``trials`` distinct archs have results, once every distinct arch of a small space was tried
(`count_distinct_archs`), or once the sampler proposes only archs tried before for `STALL_TRIALS` trials in a row.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import socket
import sqlite3
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy.exc
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState

from ..files import FileFormatError, check_sqlite
from ..space import SuperModule
from .algorithms import ALGORITHMS, DEFAULT_ALGORITHM, SamplerRequest
from .costs import CostModel
from .keys import active_decisions, arch_key, count_distinct_archs
from .objectives import Constraint, Objective, violations
from .screen import Screen, ScreenedSampler, categorical_distributions

_PRIMITIVE = (type(None), bool, int, float, str)
Evaluator = Callable[[dict[str, Any]], Mapping[str, float] | float]

# Optuna heartbeats, for workers on other hosts: a running trial writes one every 10 s, and one silent for 40 s
# (four missed beats: room for a busy disk or a long pause) is failed so that its arch passes to another worker.
HEARTBEAT_INTERVAL_S = 10
HEARTBEAT_GRACE_S = 40
# How long an SQLite connection waits on a database locked by another worker's commit before failing.
SQLITE_TIMEOUT_S = 120
# How often a trial waiting on another trial's result (same arch) looks again.
CLAIM_POLL_S = 0.02
# Stop when this many finished trials in a row proposed only archs tried before: the sampler has converged.
STALL_TRIALS = 100
# Count a space's distinct subnets (to stop once all were tried) only up to this many arch dicts.
COUNT_ARCHS_MAX = 100_000
# User attrs: the process running a trial (`worker_identity`); the space's distinct subnet count (study).
WORKER_ATTR = "worker"
SPACE_ARCHS_ATTR = "space_archs"

_log = logging.getLogger(__name__)


def make_storage(url: str | None, heartbeat: bool = True) -> BaseStorage:
    """An Optuna storage: in memory for ``None``, else an RDB URL (``sqlite:///path.db``, ``postgresql://...``).

    SQLite files are opened in WAL mode with ``synchronous=NORMAL`` (commits without an fsync each: a trial
    makes ~20 small writes) and wait up to `SQLITE_TIMEOUT_S` on a locked database, so several local workers can
    share one file. WAL needs a local disk; across machines use a server database (PostgreSQL) instead.

    Raises:
        FileFormatError: the SQLite file exists but is not an SQLite database, is damaged, or holds no study.
    """
    if url is None:
        return InMemoryStorage()
    hb = {"heartbeat_interval": HEARTBEAT_INTERVAL_S, "grace_period": HEARTBEAT_GRACE_S} if heartbeat else {}
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_study_file(path)
        engine_kwargs["creator"] = functools.partial(_sqlite_connect, str(path))
    with warnings.catch_warnings(), study_file_errors(path):
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs, **hb)


def sqlite_path(url: str | None) -> Path | None:
    """The file of an ``sqlite:///path`` URL (None for other URLs and in-memory SQLite)."""
    if url is None or not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return Path(path) if path and path != ":memory:" else None


def check_study_file(path: str | os.PathLike[str]) -> None:
    """Fail with a `FileFormatError` naming ``path`` unless it is missing or a sound SQLite database that could
    hold an Optuna study (a quick integrity check runs on it; a locked file is left to Optuna).

    An empty file is refused too: SQLite writes a study database's header as soon as it creates the study, so
    an empty one was truncated (or is not ours); deleting it starts a new study.
    """
    path = Path(path)
    check_sqlite(path)
    if not path.is_file():
        return
    size = path.stat().st_size
    if size == 0:
        raise FileFormatError(path, "is empty (truncated?); expected an Optuna study (delete it to start a new one)")
    if not Path(f"{path}-wal").exists():  # no writer has it open: its header must match its size
        _check_sqlite_size(path, size)
    try:
        con = sqlite3.connect(str(path), timeout=SQLITE_TIMEOUT_S)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            check = con.execute("PRAGMA quick_check(1)").fetchone()
        finally:
            con.close()
    except sqlite3.OperationalError:
        return  # locked, or not readable: Optuna opens it (and waits on a lock) or reports why not
    except sqlite3.DatabaseError as err:
        raise FileFormatError(path, f"is a damaged SQLite database ({err}); expected an Optuna study") from None
    if check is not None and check[0] != "ok":
        raise FileFormatError(path, f"is a damaged SQLite database ({check[0]}); expected an Optuna study")
    if tables and "studies" not in tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise FileFormatError(
            path, f"is an SQLite database of another kind (tables: {shown}); expected an Optuna study"
        )


def _check_sqlite_size(path: Path, size: int) -> None:
    """Catch a truncated SQLite file from its 100-byte header (page size, and page count where it is valid)."""
    with open(path, "rb") as f:
        head = f.read(100)
    if len(head) < 100:
        raise FileFormatError(path, "is truncated (shorter than an SQLite header); expected an Optuna study")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise FileFormatError(path, f"has a damaged SQLite header (page size {page_size}); expected an Optuna study")
    pages = int.from_bytes(head[28:32], "big")
    header_valid = head[24:28] == head[92:96]  # the page count is valid when its version matches the change counter
    if size % page_size:
        raise FileFormatError(
            path, f"is truncated ({size} bytes: not whole pages of {page_size} bytes); expected an Optuna study"
        )
    if header_valid and pages * page_size > size:
        raise FileFormatError(
            path,
            f"is truncated ({size // page_size} of the {pages} pages its header records); expected an Optuna study",
        )


@contextlib.contextmanager
def study_file_errors(path: Path | None) -> Iterator[None]:
    """Turn the errors of a damaged SQLite study file (raised by SQLAlchemy or Optuna) into a `FileFormatError`."""
    try:
        yield
    except (sqlalchemy.exc.DatabaseError, optuna.exceptions.StorageInternalError, sqlite3.DatabaseError) as err:
        cause = err.__cause__ if isinstance(err, optuna.exceptions.StorageInternalError) else err
        orig = getattr(cause, "orig", cause)
        if path is None or type(orig) is not sqlite3.DatabaseError:  # corrupt / not a database, not locked etc.
            raise
        raise FileFormatError(path, f"is a damaged SQLite database ({orig}); expected an Optuna study") from None


def close_storage(storage: BaseStorage | None) -> None:
    """Close an RDB storage's connections; the last one to an SQLite file folds its WAL back into the file."""
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _sqlite_connect(path: str) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    return con


# ---------------------------------------------------------------- which process runs a trial


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None where unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def _start_time(pid: int) -> int | None:
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None  # field 22, "starttime": clock ticks after boot
    except (IndexError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def worker_identity(pid: int | None = None) -> dict[str, Any]:
    """Who runs a trial: host name, pid, the process's start time and the boot id (the last two where /proc has
    them; they tell a reused pid, or a pid from before a reboot, from the recorded process)."""
    pid = os.getpid() if pid is None else pid
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "boot": _boot_id()}


def worker_is_gone(worker: Any) -> bool:
    """Whether the process a `worker_identity` describes has certainly exited.

    Only processes on this host (same host name and boot) can be checked: the pid no longer exists, now belongs
    to a process started at another time, or is a zombie. Anything else (another host, no record) gives False.
    """
    if not isinstance(worker, Mapping) or worker.get("host") != socket.gethostname():
        return False
    if worker.get("boot") != _boot_id():
        return False  # another machine of the same name, or a reboot: left to the heartbeats
    pid = worker.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by another user
    except OSError:
        return False
    fields = _proc_stat(pid)
    if fields is None:
        return False
    start = worker.get("start")
    if start is not None and _start_time(pid) not in (None, start):
        return True  # the pid was reused by a later process
    return fields[0] in ("Z", "X")  # exited, not yet reaped by its parent


def fail_dead_trials(study: optuna.Study, trials: Iterable[FrozenTrial] | None = None) -> list[int]:
    """Mark as FAIL the RUNNING trials (of ``trials``, default all) whose worker process on this host is gone.

    Their archs then pass at once to another trial instead of waiting for the heartbeat grace period.

    Returns:
        The numbers of the trials failed.
    """
    if trials is None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    failed = []
    for t in trials:
        if t.state != TrialState.RUNNING or not worker_is_gone(t.user_attrs.get(WORKER_ATTR)):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "failed", "its worker process exited")
            if study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # finished meanwhile, or another worker failed it first
    if failed:
        _log.info("failed trials %s: their worker processes exited", failed)
    return failed


@dataclass
class SearchSpace:
    """The categorical Optuna view of a supernet's decisions (options outside Optuna's types go by index)."""

    space: SuperModule
    encoded: dict[str, tuple[Any, ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.encoded = {}
        for name, options in self.space.choices.items():
            primitive = all(isinstance(o, _PRIMITIVE) for o in options)
            self.encoded[name] = tuple(options) if primitive else tuple(range(len(options)))

    def suggest(self, trial: Trial) -> dict[str, Any]:
        """Sample an arch through ``trial`` (one categorical param per decision)."""
        return self.decode({n: trial.suggest_categorical(n, list(c)) for n, c in self.encoded.items()})

    def decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna params -> arch dict."""
        out = {}
        for name, options in self.space.choices.items():
            value = params[name]
            out[name] = value if self.encoded[name] is options or self.encoded[name] == options else options[value]
        return out

    def encode(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """Arch dict (validated against the space) -> Optuna params; the inverse of `decode`."""
        arch = self.space.validate(arch)
        out = {}
        for name, options in self.space.choices.items():
            encoded = self.encoded[name]
            if encoded is options or encoded == options:
                out[name] = arch[name]
            else:  # `validate` returns the space's own option object
                out[name] = next(i for i, o in enumerate(options) if o is arch[name])
        return out

    def active_params(self, params: Mapping[str, Any]) -> list[str]:
        """The params (decisions) that matter under ``params`` (mutating the others changes nothing)."""
        active = active_decisions(self.space, self.decode(params))
        return [n for n in params if n in active]


@dataclass
class SearchSetup:
    """Everything one worker needs to run trials."""

    space: SuperModule
    evaluator: Evaluator | None
    objectives: list[Objective]
    constraints: list[Constraint]
    cost_model: CostModel
    algorithm: str = DEFAULT_ALGORITHM
    population_size: int | None = None
    sample_size: int | None = None
    poll_interval: float = CLAIM_POLL_S
    screen: Screen | None = None
    screen_candidates: int = 1

    def __post_init__(self) -> None:
        self.build_sampler = ALGORITHMS.get(self.algorithm)  # UnknownNameError (a ValueError) listing the names
        self.search_space = SearchSpace(self.space)
        expensive = [o.metric for o in self.objectives if not o.cheap] + [
            c.metric for c in self.constraints if not c.cheap
        ]
        if expensive and self.evaluator is None:
            raise ValueError(f"metrics {sorted(set(expensive))} need an evaluator (or search a training run)")

    @functools.cached_property
    def space_archs(self) -> int | None:
        """How many distinct subnets the space has (None: too many to count, see `count_distinct_archs`)."""
        return count_distinct_archs(self.space, max_archs=COUNT_ARCHS_MAX)

    @property
    def directions(self) -> list[str]:
        """Optuna directions of the objectives."""
        return [o.direction for o in self.objectives]

    def cheap_metrics(self) -> list[str]:
        """The architecture-only metrics any objective or constraint needs (params always included)."""
        names = (
            ["params"]
            + [o.metric for o in self.objectives if o.cheap]
            + [c.metric for c in self.constraints if c.cheap]
        )
        return list(dict.fromkeys(names))

    def check_feasible_exists(self) -> None:
        """Fail early when even the smallest arch violates a params/FLOPs constraint (those grow with size)."""
        monotone = [c for c in self.constraints if c.metric in ("params", "flops") and c.op in ("<=", "<")]
        if not monotone:
            return
        small = self.space.min_arch()
        metrics = self.cost_model(small, [c.metric for c in monotone])
        for c in monotone:
            if not c.satisfied(metrics[c.metric]):
                raise ValueError(
                    f"no arch can satisfy '{c}': the smallest arch already has {c.metric} = {metrics[c.metric]:,.0f}"
                )

    def make_sampler(self, seed: int | None, trials: int) -> BaseSampler:
        """The Optuna sampler of ``algorithm``, screening several proposals per trial when ``screen`` is set."""
        screening = self.screen is not None and self.screen_candidates > 1
        sampler = self.build_sampler(
            SamplerRequest(
                seed=seed,
                trials=trials,
                population_size=self.population_size,
                sample_size=self.sample_size,
                constraints=tuple(self.constraints),
                screening=screening,
                mutable=self.search_space.active_params,
            )
        )
        if not screening:
            return sampler
        distributions = categorical_distributions(self.search_space.encoded)
        return ScreenedSampler(sampler, distributions, self.search_space.decode, self.screen, self.screen_candidates)

    def objective(self, trial: Trial) -> tuple[float, ...] | float:
        """Sample, check cheap constraints, claim-or-reuse, evaluate, record."""
        trial.set_user_attr(WORKER_ATTR, worker_identity())  # so that a trial of a dead process is failed at once
        arch = self.search_space.suggest(trial)
        key = arch_key(self.space, arch)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("key", key)  # the declaration
        cheap = self.cost_model(arch, self.cheap_metrics(), key=key)
        cheap_constraints = [c for c in self.constraints if c.cheap]
        cheap_v = violations(cheap_constraints, cheap)
        if any(v > 0 for v in cheap_v):
            it = iter(cheap_v)
            trial.set_user_attr("violations", [next(it) if c.cheap else 0.0 for c in self.constraints])
            trial.set_user_attr("feasible", False)
            trial.set_user_attr("cheap_metrics", cheap)
            failed = [str(c) for c, v in zip(cheap_constraints, cheap_v, strict=True) if v > 0]
            raise optuna.TrialPruned(f"violates {', '.join(failed)} (not evaluated)")
        reused = self._claim(trial, key)
        if reused is None:
            metrics = self.evaluate(arch)
            metrics.update(cheap)
            trial.set_user_attr("evaluated", f"{socket.gethostname()}:{os.getpid()}")  # which worker
        else:
            metrics, source = reused
            trial.set_user_attr("reused_from", source)
        trial.set_user_attr("metrics", metrics)
        v = violations(self.constraints, metrics)
        trial.set_user_attr("violations", v)
        if hasattr(trial, "set_constraint"):
            for c, x in zip(self.constraints, v, strict=True):
                trial.set_constraint(str(c), x)
        trial.set_user_attr("feasible", not any(x > 0 for x in v))
        values = []
        for o in self.objectives:
            if o.metric not in metrics:
                raise KeyError(
                    f"objective {o.metric!r} is not among the evaluator's metrics ({', '.join(sorted(metrics))})"
                )
            values.append(float(metrics[o.metric]))
        return tuple(values) if len(values) > 1 else values[0]

    def evaluate(self, arch: dict[str, Any]) -> dict[str, float]:
        """The evaluator's metrics of ``arch`` (``{}`` without an evaluator).

        Raises:
            TypeError: one number returned where several metrics are needed.
            ValueError: a non-finite metric.
        """
        if self.evaluator is None:
            return {}
        result = self.evaluator(dict(arch))
        if isinstance(result, Mapping):
            out = {str(k): float(v) for k, v in result.items() if isinstance(v, (int, float))}
        else:
            names = [o.metric for o in self.objectives if not o.cheap]
            if len(names) != 1:
                raise TypeError("the evaluator returned one number but several metrics are needed; return a dict")
            out = {names[0]: float(result)}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"the evaluator returned non-finite {bad} for arch {arch}")
        return out

    def _claim(self, trial: Trial, key: str) -> tuple[dict[str, float], int] | None:
        """None when this trial owns ``key`` and must evaluate; else (metrics, trial number) to reuse."""
        study = trial.study
        while True:
            trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            same = [t for t in trials if t.user_attrs.get("key") == key]
            done = [t for t in same if t.state == TrialState.COMPLETE and "metrics" in t.user_attrs]
            if done:
                src = min(done, key=lambda t: t.number)
                return dict(src.user_attrs["metrics"]), src.number
            undeclared = [
                t
                for t in trials
                if t.state == TrialState.RUNNING and t.number < trial.number and "key" not in t.user_attrs
            ]
            running = [t.number for t in same if t.state == TrialState.RUNNING]
            if not undeclared and min(running, default=trial.number) == trial.number:
                return None
            owners = [t for t in same if t.state == TrialState.RUNNING and t.number < trial.number]
            if fail_dead_trials(study, undeclared + owners):
                continue  # a dead worker's trial was in the way: decide again at once
            time.sleep(self.poll_interval)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)  # a no-op without heartbeats


@dataclass(frozen=True)
class Progress:
    """Where a study stands.

    Attributes:
        distinct: distinct archs with results.
        evaluated: trials that evaluated their arch (the others reused a result or were pruned).
        total: all trials, in any state.
        tried: distinct archs finished: with results, or pruned as infeasible without evaluation.
        infeasible: distinct archs pruned by a params/FLOPs/latency constraint.
        rejected: proposals rejected by a params/FLOPs/latency constraint before evaluation (pruned trials; an arch
            proposed again is rejected again, and counted again).
        stale: the latest finished trials in a row (by number) whose arch had been tried before.
    """

    distinct: int
    evaluated: int
    total: int
    tried: int
    infeasible: int
    stale: int
    rejected: int = 0


def search_progress(study: optuna.Study) -> Progress:
    """The `Progress` of a study."""
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    results: set[Any] = set()
    pruned: set[Any] = set()
    evaluated = stale = rejected = 0
    for t in trials:
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        key = t.user_attrs.get("key")
        stale = stale + 1 if key in results or key in pruned else 0
        if t.state == TrialState.COMPLETE:
            results.add(key)
            evaluated += bool(t.user_attrs.get("evaluated"))
        else:
            pruned.add(key)
            rejected += not t.user_attrs.get("feasible", True)
    return Progress(
        len(results), evaluated, len(trials), len(results | pruned), len(pruned - results), stale, rejected
    )


def budget_status(study: optuna.Study) -> tuple[int, int, int]:
    """(distinct archs with results, trials actually evaluated, all trials) in the study."""
    p = search_progress(study)
    return p.distinct, p.evaluated, p.total


class BudgetCallback:
    """Stops the study once ``trials`` distinct archs have results, ``max_total`` trials were made, all
    ``space_archs`` distinct archs of the space were tried, or `STALL_TRIALS` trials in a row brought no new arch.

    After `done`, ``reason`` says which: ``"budget"``, ``"exhausted"``, ``"stalled"``, ``"max_total"`` (or None).
    """

    def __init__(
        self,
        trials: int,
        max_total: int,
        on_trial: Callable[[int], None] | None = None,
        space_archs: int | None = None,
        stall_trials: int = STALL_TRIALS,
    ) -> None:
        self.trials, self.max_total, self.on_trial = trials, max_total, on_trial
        self.space_archs, self.stall_trials = space_archs, stall_trials
        self.reason: str | None = None

    def done(self, study: optuna.Study) -> bool:
        """Whether the study should stop (see ``reason``)."""
        p = search_progress(study)
        if self.on_trial is not None:
            self.on_trial(p.distinct)
        self.reason = stop_reason(p, self.trials, self.max_total, self.space_archs, self.stall_trials)
        return self.reason is not None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.done(study):
            study.stop()


def stop_reason(
    progress: Progress, trials: int, max_total: int, space_archs: int | None, stall_trials: int = STALL_TRIALS
) -> str | None:
    """Why a study with this `Progress` should stop (see `BudgetCallback`), or None to go on."""
    if progress.distinct >= trials:
        return "budget"
    if space_archs is not None and progress.tried >= space_archs:
        return "exhausted"
    if progress.stale >= stall_trials:
        return "stalled"
    if progress.total >= max_total:
        return "max_total"
    return None


def open_study(
    storage: BaseStorage,
    study_name: str,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    sampler: BaseSampler | None = None,
) -> optuna.Study:
    """Create or load the study; a loaded study must have been made with the same objectives and constraints.

    Raises:
        FileFormatError: the study's SQLite file is damaged.
        ValueError: the study exists with other objectives or constraints.
    """
    with study_file_errors(sqlite_path(getattr(storage, "url", None))):
        return _open_study(storage, study_name, objectives, constraints, sampler)


def _open_study(
    storage: BaseStorage,
    study_name: str,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    sampler: BaseSampler | None,
) -> optuna.Study:
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        sampler=sampler,
        directions=[o.direction for o in objectives],
        load_if_exists=True,
    )
    signature = {
        "objectives": [f"{o.metric}:{o.direction}" for o in objectives],
        "constraints": [str(c) for c in constraints],
    }
    recorded = study.user_attrs.get("signature")
    if recorded is None:
        study.set_user_attr("signature", signature)
    elif recorded != signature:
        raise ValueError(
            f"study {study_name!r} was made with {recorded}, not {signature}; "
            "resume with the same objectives and constraints or choose another study name"
        )
    return study


def record_space_archs(study: optuna.Study, space_archs: int | None) -> None:
    """Record the space's distinct subnet count on the study (for the report of whoever finishes it)."""
    if space_archs is not None and study.user_attrs.get(SPACE_ARCHS_ATTR) != space_archs:
        study.set_user_attr(SPACE_ARCHS_ATTR, space_archs)
