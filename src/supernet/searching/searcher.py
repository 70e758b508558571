"""`Searcher`: one search of a supernet as an object with hooks (after NVIDIA ModelOpt's ``BaseSearcher``).

A searcher holds validated `SearchSettings` and a few collaborators: the supernet or training run it searches, an
evaluator, an example input for FLOPs/latency, a task, and an optional screen. Its final `Searcher.search` runs
three hooks: `before_search` (checks, the run directory, the Optuna storage and study), `run_search` (the trials, in
this process or in worker processes), `after_search` (the `SearchResult` and its files). Within one process the
trials run in a `SearchSetup` (the space, the evaluator, the cost model, the constraints, the algorithm's sampler).

The Optuna study is the persistent record: a killed search resumes from it. `Searcher.state_dict` is small (what
was asked, where the record is, how far it got); `Searcher.load_state_dict` restores it into a new searcher.

With the ``potential`` objective (EMARS) `run_search` runs rounds that interleave supernet training with selection
instead of one trial per proposal: see `supernet.searching.potential` (`InterleavedSearch`).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, final

import optuna
import torch
from optuna.storages import BaseStorage

from .. import cost
from ..device import resolve_device
from ..seeding import restart_seed
from ..space import ArchError, SuperModule
from ..training.checkpoint import read_run_json, run_dir_of
from ..training.tensorboard import search_log_dir, write_search_scalars
from .algorithms import DEFAULT_ALGORITHM, default_population
from .costs import CostModel
from .objectives import (
    CHEAP_METRICS,
    METRIC_DOMAINS,
    RUN_METRICS,
    Objective,
    check_known_metrics,
    check_satisfiable,
    resolve_constraints,
    uses_interleaved,
)
from .pareto import pareto_front
from .potential import InterleavedSearch, RoundTrainer
from .results import SEARCH_DIR, SearchResult, collect_entries, stop_note, write_outputs
from .screen import Screen
from .settings import SearchSettings
from .study import (
    SPACE_ARCHS_ATTR,
    BudgetCallback,
    Evaluator,
    SearchSetup,
    SearchSpace,
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

STATE_FORMAT = "supernet-searcher"
# How often the parent of worker processes checks on them and updates its progress bar.
WORKERS_POLL_S = 1.0
# What a pickled searcher (a worker's copy) leaves behind: open storages, studies, loaded supernets, results.
_PROCESS_LOCAL = ("storage", "study", "setup", "result", "interleaved", "_run_task")
# The algorithm name a search with the potential objective reports (its rounds select archs themselves).
INTERLEAVED_ALGORITHM = "emars"


class Searcher:
    """Searches a supernet for its Pareto front of feasible subnets under hard constraints.

    Args:
        source: a training run directory, a ``Run`` from ``sn.train``, or a `SuperModule`.
        settings: a `SearchSettings`, a dict of its fields, or None for the defaults.
        evaluator: ``fn(arch) -> {"loss": ..., "accuracy": ...}`` (or one number); default for runs: val
            loss/accuracy with inherited weights (`RunEvaluator`).
        example_input: an input batch for FLOPs/latency (runs: one example of the task).
        task: the `supernet.training.Task` to evaluate on, for runs whose data cannot be rebuilt from the run dir.
        screen: a cheap score ``fn(arch) -> float`` (higher is better) that picks one of
            ``settings.screen_candidates`` proposals per trial.
        start_archs: archs evaluated first (queued as the first trials of a new study; a resumed study has them
            already), e.g. a ShiftNAS generator's archs across the cost range (`supernet.training.strategies.
            shiftnas.load_generator`). The algorithm then proceeds from them (evolution and NSGA-II take them into
            their first population).
        latency_table: a latency `supernet.cost.CostTable` (or the path of a saved one): the ``latency`` metric
            is predicted from it instead of measured.

    Attributes set by the hooks: ``run_dir``, ``out_dir``, ``storage_url``, ``storage``, ``study``, ``setup`` (the
    in-process `SearchSetup` with the ``cost_model``), ``interleaved`` (the `InterleavedSearch` of a search with the
    ``potential`` objective, else None), ``result`` and ``done`` (how far the search got).
    """

    def __init__(
        self,
        source: SuperModule | str | os.PathLike[str] | Any,
        settings: SearchSettings | dict[str, Any] | None = None,
        *,
        evaluator: Evaluator | None = None,
        example_input: Any = None,
        task: Any = None,
        screen: Screen | None = None,
        start_archs: Sequence[Mapping[str, Any]] | None = None,
        latency_table: Any = None,
    ) -> None:
        self.source = source
        if latency_table is not None and not isinstance(latency_table, cost.CostTable):
            latency_table = cost.CostTable.load(latency_table)
        self.latency_table = latency_table
        self.start_archs = [dict(a) for a in start_archs or ()]
        self.settings = settings if isinstance(settings, SearchSettings) else SearchSettings.create(settings)
        self.evaluator, self.example_input, self.task, self.screen = evaluator, example_input, task, screen
        self.run_dir: Path | None = None
        self.out_dir: Path | None = None
        self.storage_url: str | None = None
        self.storage: BaseStorage | None = None
        self.study: optuna.Study | None = None
        self.setup: SearchSetup | None = None
        self.result: SearchResult | None = None
        self.interleaved: InterleavedSearch | None = None
        self.done: dict[str, Any] = {}
        self._existing = 0
        self._run_task: Any = None  # the default evaluator's task (what an interleaved search trains on)

    @property
    def is_interleaved(self) -> bool:
        """Whether the search interleaves supernet training (an objective or constraint names ``potential``)."""
        return uses_interleaved(self.settings.objectives, self.settings.constraints)

    # ------------------------------------------------------------ the search and its hooks

    @final
    def search(self) -> SearchResult:
        """Run (or resume) the search: `before_search`, `run_search`, `after_search`; returns `result`.

        Raises:
            ValueError: bad settings, found before any arch is evaluated: an objective or constraint naming a metric
                the default evaluator does not measure, or constraints no arch can meet (``loss <= 0``).
            FileFormatError: the study's SQLite file is damaged or of another kind.
        """
        try:
            self.before_search()
            self.run_search()
            self.after_search()
        finally:
            self.close()  # an SQLite study is one self-contained file again
        assert self.result is not None
        return self.result

    def before_search(self) -> None:
        """Check the settings against the evaluator, find the run directory and the storage, open the study."""
        s = self.settings
        # The default evaluator measures a known set of metrics with known ranges; a user's evaluator may return
        # any metric (and its "loss" need not be a cross-entropy), so only the cost model's ranges apply then.
        default_evaluator = self.evaluator is None and not isinstance(self.source, SuperModule)
        if default_evaluator:
            where = "the default evaluator of a training run (with the cost model)"
            check_known_metrics(s.objectives, s.constraints, RUN_METRICS, where)
        check_satisfiable(
            s.constraints, METRIC_DOMAINS if default_evaluator else {m: METRIC_DOMAINS[m] for m in CHEAP_METRICS}
        )
        if self.is_interleaved:
            self._check_interleaved()
        if not all(c.resolved for c in s.constraints):  # "params <= 50%": a fraction of the largest arch's params
            self.setup = self.make_setup()
            self._resolve_constraints(self.setup)
            s = self.settings
            if s.workers > 1:
                self.setup = None  # each worker makes its own (from the resolved settings)
        self.run_dir = run_dir_of(self.source)
        self.out_dir = s.out_path if s.out_path is not None or self.run_dir is None else self.run_dir / SEARCH_DIR
        self.storage_url = s.storage
        if self.storage_url is None and self.run_dir is not None:
            (self.run_dir / SEARCH_DIR).mkdir(parents=True, exist_ok=True)
            self.storage_url = f"sqlite:///{(self.run_dir / SEARCH_DIR / 'study.db').resolve()}"
        if self.storage_url is None and s.workers > 1:
            raise ValueError("workers > 1 need a shared storage: pass storage='sqlite:///path/study.db' or a run dir")
        optuna.logging.set_verbosity(logging.WARNING)
        if s.workers == 1:
            if self.setup is None:
                self.setup = self.make_setup()
            self.setup.check_feasible_exists()
            if self.is_interleaved:
                self.train_task()  # a ValueError now, before any evaluation, when there is nothing to train on
        else:
            if self.run_dir is None:
                _space_of(self.source)  # a TypeError for a source workers cannot rebuild, before the study opens
            self._check_params_feasible()
        self.storage = make_storage(self.storage_url)
        self.study = open_study(self.storage, s.study_name, s.objectives, s.constraints)  # created once, here
        fail_dead_trials(self.study)  # trials left RUNNING by killed processes of this host: their archs are free now
        self._existing = len(self.study.get_trials(deepcopy=False))
        if self.start_archs:
            self._queue_start_archs()

    def run_search(self) -> None:
        """Run trials until the budget is met: in this process, or in ``settings.workers`` worker processes (or,
        with the ``potential`` objective, the rounds of `InterleavedSearch`)."""
        s = self.settings
        if self.is_interleaved:
            self._run_interleaved()
            return
        if s.workers > 1:
            self._run_workers()
            return
        assert self.setup is not None and self.storage is not None
        sampler = self.setup.make_sampler(s.seed + self._existing, s.trials)
        self.study = open_study(self.storage, s.study_name, s.objectives, s.constraints, sampler)
        run_trials(self.study, self.setup, s.trials, s.max_total, s.progress, sqlite_path(self.storage_url))

    def after_search(self) -> None:
        """Build the `SearchResult` from the study (every worker's trials) and write its files to ``out_dir``."""
        s, study = self.settings, self.study
        assert study is not None
        progress = search_progress(study)
        space_archs = study.user_attrs.get(SPACE_ARCHS_ATTR)
        if self.interleaved is not None:  # the last round's population, all measured on the same weights
            entries = self.interleaved.entries()
            extra = self._interleaved_note()
        else:
            entries = collect_entries(study)
            extra = stop_note(study, s.trials, s.max_total, space_archs)
        evaluated, total = progress.evaluated, progress.total
        result = SearchResult(
            front=pareto_front(entries, s.objectives),
            entries=entries,
            objectives=list(s.objectives),
            constraints=list(s.constraints),
            evaluations=evaluated,
            trials=total,
            out_dir=self.out_dir,
            storage=self.storage_url,
            study_name=s.study_name,
            algorithm=INTERLEAVED_ALGORITHM if self.interleaved is not None else s.algorithm,
            rejected=progress.rejected,
            extra=extra,
        )
        if self.evaluator is None:  # how the default evaluator measured archs: `export` measures the same way
            result.extra["evaluation"] = dict(s.eval_options)
        if self.out_dir is not None:
            write_outputs(result)
        # the objectives per trial beside the training curves (if tensorboard is installed)
        if self.run_dir is not None:
            write_search_scalars(search_log_dir(self.run_dir), entries, [o.metric for o in s.objectives])
        self.result = result
        self.done = {
            "trials": total,
            "evaluations": evaluated,
            "distinct_archs": len(entries),
            "stopped": "rounds" if self.interleaved is not None
            else stop_reason(progress, s.trials, s.max_total, space_archs),
        }

    def close(self) -> None:
        """Close the storage's connections (the last one to an SQLite file folds its WAL back into the file)."""
        close_storage(self.storage)
        self.storage = None

    # ------------------------------------------------------------ collaborators

    @property
    def cost_model(self) -> CostModel | None:
        """The cost model of this process's `SearchSetup` (None before `before_search`, or with workers)."""
        return self.setup.cost_model if self.setup is not None else None

    def _resolve_constraints(self, setup: SearchSetup) -> None:
        """Resolve relative constraints (``params <= 50%``) against the largest arch of the space searched (for
        a space made by `supernet.convert`, the original model); the settings then hold the absolute bounds.

        Raises:
            ValueError: the reference cannot be measured (FLOPs or latency of a space searched without an
                example input).
        """
        space = setup.space

        def reference(metrics: list[str]) -> Mapping[str, float]:
            try:
                return setup.cost_model(space.max_arch(), metrics)
            except ValueError as err:
                raise ValueError(
                    f"relative constraints need the largest arch's {', '.join(metrics)} as reference: {err}"
                ) from None

        resolved = resolve_constraints(self.settings.constraints, reference)
        self.settings = SearchSettings.create(self.settings, constraints=resolved)
        setup.constraints = list(resolved)

    def make_setup(self) -> SearchSetup:
        """The trial machinery of one process: the space, the evaluator, the cost model, the constraints."""
        s = self.settings
        evaluator, example_input = self.evaluator, self.example_input
        if isinstance(self.source, SuperModule):
            space = self.source
        elif evaluator is not None and example_input is not None:
            space = _load_space(self.source, s.device)
        else:
            from .evaluate import RunEvaluator

            run_eval = RunEvaluator.from_run(self.source, task=self.task, device=s.device, **s.eval_options)
            space = run_eval.space
            evaluator = evaluator or run_eval
            self._run_task = run_eval.task
            if example_input is None:
                example_input = run_eval.task.example_input(1)
        if example_input is None:  # a space made by `supernet.convert` keeps the model's example input
            example_input = getattr(space, "example_input", None)
        setup = SearchSetup(
            space=space,
            evaluator=evaluator,
            objectives=list(s.objectives),
            constraints=list(s.constraints),
            cost_model=self.make_cost_model(space, example_input),
            algorithm=s.algorithm,
            population_size=s.population_size,
            sample_size=s.sample_size,
        )
        setup.screen, setup.screen_candidates = self.screen, s.screen_candidates
        return setup

    # ------------------------------------------------------------ the potential objective (interleaved training)

    def _check_interleaved(self) -> None:
        """Refuse, before any evaluation, what a search with the ``potential`` objective cannot do."""
        s = self.settings
        if s.workers > 1:
            raise ValueError("the potential objective trains one supernet between rounds: it runs with workers=1")
        if self.screen is not None:
            raise ValueError("the potential objective makes its own populations: it does not take a screen")
        if s.algorithm != DEFAULT_ALGORITHM:
            raise ValueError(
                f"the potential objective runs EMARS rounds (training on the population, then NSGA-II survival "
                f"and mutation), not algorithm {s.algorithm!r}: leave algorithm at its default {DEFAULT_ALGORITHM!r}"
            )

    def train_task(self) -> Any:
        """The task the supernet trains on between the rounds of a ``potential`` search: ``task``, else the
        run's (the default evaluator's, or rebuilt from the run directory).

        Raises:
            ValueError: a `SuperModule` searched without ``task``.
        """
        if self.task is not None:
            return self.task
        if self._run_task is not None:
            return self._run_task
        if self.run_dir is not None:
            from ..training.rundata import task_of_run

            self._run_task = task_of_run(self.run_dir)
            return self._run_task
        raise ValueError(
            "the potential objective trains the supernet between rounds: search a training run, or pass task= "
            "(the data to train on) with the SuperModule"
        )

    def weights_path(self) -> Path | None:
        """Where a ``potential`` search keeps the supernet weights it trained (None: nowhere, only in memory)."""
        if self.out_dir is None:
            return None
        return self.out_dir / f"{self.settings.study_name}.potential.safetensors"

    def _run_interleaved(self) -> None:
        s = self.settings
        assert self.setup is not None and self.storage is not None
        self.study = open_study(self.storage, s.study_name, s.objectives, s.constraints)
        space = self.setup.space
        run_config = read_run_json(self.run_dir).get("config") if self.run_dir is not None else None
        trainer = RoundTrainer(
            space,
            self.train_task(),
            run_config,
            s.potential,
            device=next((p.device for p in space.parameters()), torch.device("cpu")),
            seed=s.seed,
            weights=self.weights_path(),
            token=InterleavedSearch.study_token(self.study),
        )
        population = s.population_size or default_population(s.trials)
        self.interleaved = InterleavedSearch(
            self.setup, self.study, trainer, s.potential, population, s.seed, self.start_archs
        )
        with study_file_errors(sqlite_path(self.storage_url)):
            self.interleaved.run(progress=s.progress)

    def _interleaved_note(self) -> dict[str, Any]:
        """``extra`` of an interleaved search's result: its rounds and where the trained weights are."""
        assert self.interleaved is not None
        weights = self.weights_path()
        return {
            "potential": {
                **self.settings.potential.model_dump(mode="json"),
                "population_size": self.interleaved.population_size,
                "weights": str(weights) if weights is not None and weights.is_file() else None,
            }
        }

    def _queue_start_archs(self) -> None:
        """Check ``start_archs`` against the space; queue them as the first trials of a new study."""
        if self.setup is not None:
            space = self.setup.space
        else:
            space = _load_space(self.run_dir, "cpu") if self.run_dir is not None else _space_of(self.source)
        view = SearchSpace(space)
        params = []
        for i, arch in enumerate(self.start_archs):
            try:
                params.append(view.encode(arch))
            except ArchError as e:
                raise ValueError(f"start_archs[{i}] is not an arch of this space: {e}") from e
        if self._existing or self.is_interleaved:  # resumed: queued when it began; interleaved: round 0 takes them
            return
        assert self.study is not None
        for p in params:
            self.study.enqueue_trial(p, skip_if_exists=True)

    def make_cost_model(self, space: SuperModule, example_input: Any) -> CostModel:
        """The cost model (params, FLOPs, latency) of ``space``'s subnets."""
        return CostModel(space, example_input, latency_device=self.settings.latency_device,
                         latency_table=self.latency_table)

    def _check_params_feasible(self) -> None:
        """With workers, fail in the parent when even the smallest arch violates a params constraint."""
        cons = [c for c in self.settings.constraints if c.metric == "params"]
        if not cons:
            return
        space = _load_space(self.run_dir, "cpu") if self.run_dir is not None else _space_of(self.source)
        SearchSetup(space, None, [Objective("params", "minimize")], cons, CostModel(space)).check_feasible_exists()

    # ------------------------------------------------------------ state (the study holds the record)

    def state_dict(self) -> dict[str, Any]:
        """What was asked (the settings), where the record is (storage, study name), and how far it got."""
        return {
            "format": STATE_FORMAT,
            "version": 1,
            "settings": self.settings.model_dump(mode="json"),
            "storage": self.storage_url or self.settings.storage,
            "done": dict(self.done),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`'s settings and progress; the next `search` resumes the study it names."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"not a searcher state (format {state.get('format')!r}, expected {STATE_FORMAT!r})")
        settings = SearchSettings.create(state["settings"])
        if settings.storage is None and state.get("storage") is not None:
            settings = settings.model_copy(update={"storage": state["storage"]})
        self.settings = settings
        self.done = dict(state.get("done") or {})

    # ------------------------------------------------------------ worker processes

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in _PROCESS_LOCAL:
            state[name] = None
        return state

    def _for_worker(self) -> Searcher:
        """The picklable copy a worker process gets: the run directory (not a loaded Run) or the space."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__getstate__())
        copy.source = str(self.run_dir) if self.run_dir is not None else _space_of(self.source)
        return copy

    def run_worker(self, index: int) -> None:
        """What worker process ``index`` runs: its own setup and sampler on the shared study."""
        s = self.settings
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // s.workers))
        optuna.logging.set_verbosity(logging.WARNING)
        setup = self.make_setup()
        store = make_storage(self.storage_url)
        try:
            probe = open_study(store, s.study_name, s.objectives, s.constraints)
            fail_dead_trials(probe)
            existing = len(probe.get_trials(deepcopy=False))
            sampler = setup.make_sampler(restart_seed(s.seed, index, existing), s.trials)
            study = open_study(store, s.study_name, s.objectives, s.constraints, sampler)
            run_trials(study, setup, s.trials, s.max_total, progress=False, db=sqlite_path(self.storage_url))
        finally:
            close_storage(store)

    def _run_workers(self) -> None:
        s, study = self.settings, self.study
        assert study is not None
        job = self._for_worker()
        ctx = mp.get_context("spawn")
        procs = [
            ctx.Process(target=_worker_main, args=(job, i), name=f"supernet-search-{i}") for i in range(s.workers)
        ]
        for p in procs:
            p.start()
        bar = None
        if s.progress:
            from tqdm.auto import tqdm

            desc = f"search ({s.algorithm}, {s.workers} workers)"
            bar = tqdm(total=s.trials, desc=desc, unit="arch", dynamic_ncols=True)
        try:
            while any(p.is_alive() for p in procs):
                time.sleep(WORKERS_POLL_S)
                if bar is not None:
                    bar.n = min(budget_status(study)[0], s.trials)
                    bar.refresh()
        finally:
            for p in procs:
                p.join()
            if bar is not None:
                bar.close()
        failed = [f"{p.name} (exit {p.exitcode})" for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"search workers failed: {', '.join(failed)}; results so far are kept in the study")


def _worker_main(searcher: Searcher, index: int) -> None:
    """Entry point of one worker process."""
    searcher.run_worker(index)


def run_trials(
    study: optuna.Study, setup: SearchSetup, trials: int, max_total: int, progress: bool, db: Path | None = None
) -> None:
    """Run ``setup``'s trials on ``study`` until `BudgetCallback` stops it (the loop of one process)."""
    space_archs = setup.space_archs
    record_space_archs(study, space_archs)
    target = min(trials, space_archs) if space_archs is not None else trials
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=target, desc=f"search ({setup.algorithm})", unit="arch", dynamic_ncols=True)

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


def _space_of(obj: Any) -> SuperModule:
    if isinstance(obj, SuperModule):
        return obj
    space = getattr(obj, "space", None)
    if isinstance(space, SuperModule):
        return space
    raise TypeError(f"expected a SuperModule, a training Run or a run directory, got {type(obj).__name__}")


def _load_space(run: Any, device: str) -> SuperModule:
    if isinstance(run, (str, os.PathLike)):
        from ..training import load_run

        return load_run(Path(run), device=resolve_device(device)).space
    return _space_of(run)
