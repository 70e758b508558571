"""``sn.search``: black-box search over a trained supernet (random, regularized evolution, NSGA-II)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import optuna
import torch
from optuna.trial import TrialState

from ..files import FileModel, read_json, write_json
from ..space import SuperModule
from .costs import CostModel
from .objectives import (
    CHEAP_METRICS,
    METRIC_DOMAINS,
    RUN_METRICS,
    Constraint,
    Objective,
    check_known_metrics,
    check_satisfiable,
    parse_constraints,
    parse_objectives,
)
from .pareto import pareto_front, plot_front, write_csv
from .screen import Screen
from .study import (
    SPACE_ARCHS_ATTR,
    STALL_TRIALS,
    BudgetCallback,
    Evaluator,
    SearchSetup,
    budget_status,
    close_storage,
    fail_dead_trials,
    make_storage,
    open_study,
    record_space_archs,
    search_progress,
    sqlite_path,
    stop_reason,
    study_file_errors,
)

SEARCH_DIR = "search"
PARETO_FORMAT = "supernet-search"
# Without max_total_trials a search stops after 10 * trials + 50 trials of any kind: room for duplicates and
# infeasible proposals, while a sampler stuck on a few archs cannot loop for ever.
MAX_TRIALS_FACTOR = 10
MAX_TRIALS_EXTRA = 50
# Worker i seeds its sampler with seed + i + 7919 * (trials already in the study): a prime stride, so a resumed
# worker does not replay the proposals of another worker's earlier start.
WORKER_SEED_STRIDE = 7919


class _ParetoObjective(FileModel):
    metric: str
    direction: Literal["minimize", "maximize"]


class _ParetoEntry(FileModel):
    arch: dict[str, Any]
    metrics: dict[str, float | None]


class ParetoFile(FileModel):
    """The shape of pareto.json, as `SearchResult.to_json` writes it (newer versions may add keys)."""

    format: Literal["supernet-search"]
    version: int
    strategy: str
    objectives: list[_ParetoObjective]
    constraints: list[str]
    front: list[_ParetoEntry]


@dataclass
class SearchResult:
    """What a search found.

    Attributes:
        front: Pareto-optimal feasible entries ``{"trial", "arch", "key", "metrics"}``, best first objective first.
        entries: every feasible evaluated arch (one entry per distinct subnet).
        objectives / constraints: what was optimised under which hard constraints.
        evaluations: how many subnets were actually evaluated (duplicates reuse earlier results).
        out_dir: where pareto.json / pareto.csv / pareto.png / trials.csv were written (None: nothing written).
        storage / study_name: the Optuna study holding the full record.
    """

    front: list[dict[str, Any]]
    entries: list[dict[str, Any]]
    objectives: list[Objective]
    constraints: list[Constraint]
    evaluations: int
    trials: int
    out_dir: Path | None = None
    storage: str | None = None
    study_name: str = "search"
    strategy: str = "nsga2"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, Any]:
        """The front's best entry on the first objective."""
        if not self.front:
            raise ValueError("the search found no feasible arch")
        return self.front[0]

    def to_json(self) -> dict[str, Any]:
        """The JSON written as pareto.json."""
        return {
            "format": PARETO_FORMAT,
            "version": 1,
            "strategy": self.strategy,
            "objectives": [{"metric": o.metric, "direction": o.direction} for o in self.objectives],
            "constraints": [str(c) for c in self.constraints],
            "study_name": self.study_name,
            "storage": self.storage,
            "trials": self.trials,
            "evaluations": self.evaluations,
            "distinct_archs": len(self.entries),
            "front": self.front,
            **self.extra,
        }


@dataclass
class _WorkerSpec:
    """What a worker process needs (picklable)."""

    run_dir: str | None
    task: Any
    space: SuperModule | None
    evaluator: Evaluator | None
    example_input: Any
    objectives: list[Objective]
    constraints: list[Constraint]
    strategy: str
    trials: int
    max_total: int
    storage: str
    study_name: str
    seed: int
    population_size: int | None
    sample_size: int | None
    eval_options: dict[str, Any]
    latency_device: str
    device: str
    threads: int
    screen: Screen | None = None
    screen_candidates: int = 1


def search(
    space_or_run: SuperModule | str | os.PathLike[str] | Any,
    evaluator: Evaluator | None = None,
    objectives: str | Sequence[str] | Mapping[str, str] = ("loss", "params"),
    strategy: str = "nsga2",
    constraints: str | Sequence[str] | Mapping[str, float] | None = None,
    trials: int = 50,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
    seed: int = 0,
    example_input: Any = None,
    task: Any = None,
    out_dir: str | os.PathLike[str] | None = None,
    population_size: int | None = None,
    sample_size: int | None = None,
    eval_batches: int | None = 8,
    eval_batch_size: int = 64,
    bn_batches: int = 16,
    latency_device: str = "cpu",
    device: str = "auto",
    max_total_trials: int | None = None,
    progress: bool = True,
    screen: Screen | None = None,
    screen_candidates: int = 8,
) -> SearchResult:
    """Search a supernet for the best subnets under hard constraints.

    Args:
        space_or_run: a training run directory (its supernet, task and val split are used), a ``Run`` from
            ``sn.train``, or a `SuperModule` (then give ``evaluator`` unless only params/FLOPs/latency matter).
        evaluator: ``fn(arch) -> {"loss": ..., "accuracy": ...}`` (or one number for the one data metric);
            default for runs: val loss/accuracy with inherited weights (BN recalibrated).
        objectives: metric names (``loss``, ``accuracy``, ``params``, ``flops``, ``latency`` or ``name:min|max``).
        strategy: ``"random"``, ``"evolution"`` (regularized/aging) or ``"nsga2"``.
        constraints: hard constraints such as ``"params <= 1e6"``; an infeasible arch is never returned, and one
            violating a params/FLOPs/latency constraint is never evaluated.
        trials: how many distinct subnets to get results for (the study may hold more trials: duplicates reuse
            earlier results, and pruned infeasible ones are not counted).
        storage: Optuna storage URL (``sqlite:///...``, ``postgresql://...``). Default: a SQLite file in
            ``RUN_DIR/search/`` for runs, in memory otherwise. Rerunning with the same storage and study name resumes.
        study_name: the study's name (default ``"search"``).
        workers: local worker processes sharing the study (needs an RDB storage; a `SuperModule` and
            ``evaluator`` must then be picklable).
        seed: seeds the sampler (worker ``i`` uses ``seed + i``, shifted by the trials already in the study).
        example_input: an input batch for FLOPs/latency (runs: one example of the task).
        task: the `supernet.training.Task` to evaluate on, for runs whose data cannot be rebuilt from the run
            directory (runs made by ``supernet train`` and Shakespeare runs need none).
        out_dir: where to write pareto.json/.csv/.png and trials.csv (default ``RUN_DIR/search`` for runs).
        population_size / sample_size: evolution's P and S, NSGA-II's population (default: about trials/4).
        eval_batches / eval_batch_size / bn_batches: default evaluator's val batches and BN recalibration batches.
        latency_device: where latency is measured.
        device: where the supernet is evaluated (``"auto"``: CUDA when available).
        max_total_trials: stop after this many trials of any kind (default ``10 * trials + 50``). A search also
            stops once every distinct arch of a small space was tried, or once `STALL_TRIALS` trials in a row
            proposed only archs tried before; ``result.extra["message"]`` then says so.
        progress: show a progress bar.
        screen: a cheap score ``fn(arch) -> float`` (higher is better), e.g. ``sn.proxies.objective(...)`` or
            ``predictor.objective()``: each trial draws ``screen_candidates`` proposals (random archs, or
            evolution's mutated children) and evaluates only the best-scoring one. Not with ``"nsga2"``.
        screen_candidates: proposals per trial when ``screen`` is given.

    Returns:
        A `SearchResult` with the Pareto front.

    Raises:
        ValueError: bad settings, found before any arch is evaluated: an objective or constraint naming a metric
            the default evaluator does not measure, or constraints no arch can meet (``loss <= 0``).
        FileFormatError: the study's SQLite file is damaged or of another kind.
    """
    objs = parse_objectives(objectives)
    cons = parse_constraints(constraints)
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # The default evaluator measures a known set of metrics with known ranges; a user's evaluator may return
    # any metric (and its "loss" need not be a cross-entropy), so only the cost model's ranges apply then.
    default_evaluator = evaluator is None and not isinstance(space_or_run, SuperModule)
    if default_evaluator:
        check_known_metrics(objs, cons, RUN_METRICS, "the default evaluator of a training run (with the cost model)")
    check_satisfiable(cons, METRIC_DOMAINS if default_evaluator else {m: METRIC_DOMAINS[m] for m in CHEAP_METRICS})
    run_dir = _run_dir_of(space_or_run)
    if run_dir is not None and out_dir is None:
        out_dir = run_dir / SEARCH_DIR
    if storage is None and run_dir is not None:
        (run_dir / SEARCH_DIR).mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(run_dir / SEARCH_DIR / 'study.db').resolve()}"
    if storage is None and workers > 1:
        raise ValueError("workers > 1 need a shared storage: pass storage='sqlite:///path/study.db' or a run dir")
    study_name = study_name or "search"
    max_total = max_total_trials or MAX_TRIALS_FACTOR * trials + MAX_TRIALS_EXTRA
    optuna.logging.set_verbosity(logging.WARNING)
    eval_options = {"max_batches": eval_batches, "batch_size": eval_batch_size, "bn_batches": bn_batches}

    store = None
    try:
        if workers == 1:
            setup = _setup_in_process(
                space_or_run,
                task,
                evaluator,
                example_input,
                objs,
                cons,
                strategy,
                eval_options,
                latency_device,
                device,
                population_size,
                sample_size,
            )
            setup.screen, setup.screen_candidates = screen, screen_candidates
            setup.check_feasible_exists()
            store = make_storage(storage)
            probe = open_study(store, study_name, objs, cons)
            fail_dead_trials(probe)  # trials left RUNNING by killed processes of this host: their archs are free now
            existing = len(probe.get_trials(deepcopy=False))
            study = open_study(store, study_name, objs, cons, setup.make_sampler(seed + existing, trials))
            _run_worker_loop(study, setup, trials, max_total, progress, sqlite_path(storage))
        else:
            spec_space = None if run_dir is not None else _space_of(space_or_run)
            base = _WorkerSpec(
                run_dir=str(run_dir) if run_dir is not None else None,
                task=task,
                space=spec_space,
                evaluator=evaluator,
                example_input=example_input,
                objectives=objs,
                constraints=cons,
                strategy=strategy,
                trials=trials,
                max_total=max_total,
                storage=storage,  # type: ignore[arg-type]
                study_name=study_name,
                seed=seed,
                population_size=population_size,
                sample_size=sample_size,
                eval_options=eval_options,
                latency_device=latency_device,
                device=device,
                threads=max(1, (os.cpu_count() or 1) // workers),
                screen=screen,
                screen_candidates=screen_candidates,
            )
            if any(c.metric == "params" for c in cons):
                space = spec_space if spec_space is not None else _load_space(run_dir, "cpu")
                SearchSetup(
                    space,
                    None,
                    [Objective("params", "minimize")],
                    [c for c in cons if c.metric == "params"],
                    CostModel(space),
                ).check_feasible_exists()
            store = make_storage(storage)
            study = open_study(store, study_name, objs, cons)  # create it once, before the workers race to
            fail_dead_trials(study)
            _run_workers(base, workers, study, trials, progress)
        result = _finish(study, objs, cons, strategy, storage, study_name, out_dir, trials, max_total,
                         eval_options if evaluator is None else None)
    finally:
        close_storage(store)  # an SQLite study is one self-contained file again
    return result


def _run_dir_of(obj: Any) -> Path | None:
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if not (path / "run.json").is_file():
            raise FileNotFoundError(f"{path} is not a training run directory (no run.json there)")
        return path
    run_dir = getattr(obj, "run_dir", None)
    if run_dir is not None and not isinstance(obj, SuperModule):
        return Path(run_dir)
    return None


def _space_of(obj: Any) -> SuperModule:
    if isinstance(obj, SuperModule):
        return obj
    space = getattr(obj, "space", None)
    if isinstance(space, SuperModule):
        return space
    raise TypeError(f"expected a SuperModule, a training Run or a run directory, got {type(obj).__name__}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _setup_in_process(
    space_or_run: Any,
    task: Any,
    evaluator: Evaluator | None,
    example_input: Any,
    objs: list[Objective],
    cons: list[Constraint],
    strategy: str,
    eval_options: dict[str, Any],
    latency_device: str,
    device: str,
    population_size: int | None,
    sample_size: int | None,
) -> SearchSetup:
    if isinstance(space_or_run, SuperModule):
        space = space_or_run
    elif evaluator is not None and example_input is not None:
        space = _load_space(space_or_run, device)
    else:
        from .evaluate import RunEvaluator

        run_eval = RunEvaluator.from_run(space_or_run, task=task, device=device, **eval_options)
        space = run_eval.space
        evaluator = evaluator or run_eval
        if example_input is None:
            example_input = run_eval.task.example_input(1)
    cost_model = CostModel(space, example_input, latency_device=latency_device)
    return SearchSetup(
        space=space,
        evaluator=evaluator,
        objectives=objs,
        constraints=cons,
        cost_model=cost_model,
        strategy=strategy,
        population_size=population_size,
        sample_size=sample_size,
    )


def _load_space(run: Any, device: str) -> SuperModule:
    if isinstance(run, (str, os.PathLike)):
        from ..training import load_run

        return load_run(Path(run), device=resolve_device(device)).space
    return _space_of(run)


def _run_worker_loop(
    study: optuna.Study, setup: SearchSetup, trials: int, max_total: int, progress: bool, db: Path | None = None
) -> None:
    space_archs = setup.space_archs
    record_space_archs(study, space_archs)
    target = min(trials, space_archs) if space_archs is not None else trials
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=target, desc=f"search ({setup.strategy})", unit="arch", dynamic_ncols=True)

    def update(distinct: int) -> None:
        if bar is not None:
            bar.n = min(distinct, target)
            bar.refresh()

    budget = BudgetCallback(trials, max_total, on_trial=update, space_archs=space_archs)
    try:
        with study_file_errors(db):
            if not budget.done(study):
                remaining = max(0, max_total - len(study.get_trials(deepcopy=False)))
                study.optimize(setup.objective, n_trials=remaining, callbacks=[budget], catch=())
    finally:
        if bar is not None:
            bar.close()


def _worker_main(spec: _WorkerSpec, index: int) -> None:
    """Entry point of one worker process."""
    torch.set_num_threads(spec.threads)
    optuna.logging.set_verbosity(logging.WARNING)
    source: Any = spec.run_dir if spec.run_dir is not None else spec.space
    setup = _setup_in_process(
        source,
        spec.task,
        spec.evaluator,
        spec.example_input,
        spec.objectives,
        spec.constraints,
        spec.strategy,
        spec.eval_options,
        spec.latency_device,
        spec.device,
        spec.population_size,
        spec.sample_size,
    )
    setup.screen, setup.screen_candidates = spec.screen, spec.screen_candidates
    store = make_storage(spec.storage)
    try:
        probe = open_study(store, spec.study_name, spec.objectives, spec.constraints)
        fail_dead_trials(probe)
        existing = len(probe.get_trials(deepcopy=False))
        sampler = setup.make_sampler(spec.seed + index + WORKER_SEED_STRIDE * existing, spec.trials)
        study = open_study(store, spec.study_name, spec.objectives, spec.constraints, sampler)
        _run_worker_loop(study, setup, spec.trials, spec.max_total, progress=False, db=sqlite_path(spec.storage))
    finally:
        close_storage(store)


def _run_workers(base: _WorkerSpec, workers: int, study: optuna.Study, trials: int, progress: bool) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(base, i), name=f"supernet-search-{i}") for i in range(workers)]
    for p in procs:
        p.start()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=trials, desc=f"search ({base.strategy}, {workers} workers)", unit="arch", dynamic_ncols=True)
    try:
        while any(p.is_alive() for p in procs):
            time.sleep(1.0)
            if bar is not None:
                bar.n = min(budget_status(study)[0], trials)
                bar.refresh()
    finally:
        for p in procs:
            p.join()
        if bar is not None:
            bar.close()
    failed = [f"{p.name} (exit {p.exitcode})" for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"search workers failed: {', '.join(failed)}; results so far are kept in the study")


def collect_entries(study: optuna.Study) -> list[dict[str, Any]]:
    """One entry per distinct feasible subnet with results (the earliest trial of each key)."""
    seen: dict[str, dict[str, Any]] = {}
    for t in sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number):
        key = t.user_attrs.get("key")
        if key is None or key in seen or not t.user_attrs.get("feasible", False) or "metrics" not in t.user_attrs:
            continue
        seen[key] = {"trial": t.number, "arch": t.user_attrs["arch"], "key": key, "metrics": t.user_attrs["metrics"]}
    return list(seen.values())


def _finish(
    study: optuna.Study,
    objs: list[Objective],
    cons: list[Constraint],
    strategy: str,
    storage: str | None,
    study_name: str,
    out_dir: str | os.PathLike[str] | None,
    trials: int,
    max_total: int,
    evaluation: dict[str, Any] | None = None,
) -> SearchResult:
    entries = collect_entries(study)
    front = pareto_front(entries, objs)
    _, evaluated, total = budget_status(study)
    space_archs = study.user_attrs.get(SPACE_ARCHS_ATTR)
    result = SearchResult(
        front=front,
        entries=entries,
        objectives=objs,
        constraints=cons,
        evaluations=evaluated,
        trials=total,
        out_dir=Path(out_dir) if out_dir is not None else None,
        storage=storage,
        study_name=study_name,
        strategy=strategy,
        extra=_stop_note(study, trials, max_total, space_archs),
    )
    if evaluation is not None:  # how the default evaluator measured archs: `export` measures the same way
        result.extra["evaluation"] = dict(evaluation)
    if out_dir is not None:
        write_outputs(result)
    return result


def _stop_note(study: optuna.Study, trials: int, max_total: int, space_archs: int | None) -> dict[str, Any]:
    """``extra`` of the result: the space's size, and why the search stopped short of ``trials`` archs."""
    p = search_progress(study)
    note: dict[str, Any] = {} if space_archs is None else {"space_archs": space_archs}
    reason = stop_reason(p, trials, max_total, space_archs)
    if reason == "exhausted":
        if p.infeasible:
            found = f"all were tried ({p.distinct} evaluated, {p.infeasible} infeasible under the constraints)"
        else:
            found = "all were evaluated"
        note.update(
            exhausted=True,
            message=f"the space has only {space_archs} distinct archs and {found}; {trials} trials were asked for",
        )
    elif reason == "stalled":
        note.update(
            stalled=True,
            message=f"stopped after {STALL_TRIALS} trials in a row proposed only archs tried before: "
            f"{p.distinct} of the {trials} distinct archs asked for were evaluated",
        )
    elif reason == "max_total":
        note["message"] = (
            f"stopped at the limit of {max_total} trials (max_total_trials): "
            f"{p.distinct} of the {trials} distinct archs asked for were evaluated"
        )
    return note


def write_outputs(result: SearchResult) -> None:
    """Write pareto.json, pareto.csv, trials.csv and pareto.png into ``result.out_dir`` (each atomically)."""
    out = Path(result.out_dir)  # type: ignore[arg-type]
    out.mkdir(parents=True, exist_ok=True)
    metric_names = list(dict.fromkeys([o.metric for o in result.objectives] + _all_metrics(result.entries)))
    write_json(out / "pareto.json", result.to_json())
    write_csv(out / "pareto.csv", result.front, metric_names)
    write_csv(out / "trials.csv", result.entries, metric_names)
    if result.entries:
        title = f"{result.strategy}: {len(result.entries)} archs, {len(result.front)} on the front"
        plot_front(out / "pareto.png", result.entries, result.front, result.objectives, title=title)


def _all_metrics(entries: Sequence[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for e in entries:
        names.update(dict.fromkeys(e["metrics"]))
    return list(names)


def load_front(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a pareto.json (a file or the directory holding it, or a run dir with ``search/pareto.json``).

    Raises:
        FileNotFoundError: no pareto.json there.
        FileFormatError: the file is not UTF-8, not JSON, or not of the `ParetoFile` shape (naming the file).
    """
    p = Path(path)
    for cand in (p, p / "pareto.json", p / SEARCH_DIR / "pareto.json"):
        if cand.is_file():
            return dict(read_json(cand, model=ParetoFile, what="pareto.json of a search"))
    raise FileNotFoundError(f"no pareto.json at {p} (run `supernet search` first)")
