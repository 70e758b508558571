"""``sn.search``: black-box search over a trained supernet (random, regularized evolution, NSGA-II, ...).

`search` is the public function; it validates its arguments into `SearchSettings` and runs a `Searcher`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..space import SuperModule
from .algorithms import DEFAULT_ALGORITHM
from .objectives import parse_constraints, parse_objectives
from .potential import PotentialOptions
from .results import SearchResult
from .screen import Screen
from .searcher import Searcher
from .settings import SearchSettings, algorithm_of
from .study import Evaluator


def search(
    space_or_run: SuperModule | str | os.PathLike[str] | Any,
    evaluator: Evaluator | None = None,
    objectives: str | Sequence[str] | Mapping[str, str] = ("loss", "params"),
    algorithm: str = DEFAULT_ALGORITHM,
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
    start_archs: Sequence[Mapping[str, Any]] | None = None,
    latency_table: Any = None,
    potential: PotentialOptions | Mapping[str, Any] | None = None,
    *,
    strategy: str | None = None,
) -> SearchResult:
    """Search a supernet for the best subnets under hard constraints.

    Args:
        space_or_run: a training run directory (its supernet, task and val split are used), a ``Run`` from
            ``sn.train``, or a `SuperModule` (then give ``evaluator`` unless only params/FLOPs/latency matter).
        evaluator: ``fn(arch) -> {"loss": ..., "accuracy": ...}`` (or one number for the one data metric);
            default for runs: val loss/accuracy with inherited weights (BN recalibrated).
        objectives: metric names (``loss``, ``accuracy`` (or ``acc``), ``params``, ``flops``, ``latency``,
            ``potential`` or ``name:min|max``). ``potential`` (EMARS) makes the search interleave supernet training
            with selection, in rounds: see ``potential`` below and `supernet.searching.potential`.
        algorithm: a search algorithm registered in `ALGORITHMS`: ``"random"``, ``"evolution"`` (regularized/aging),
            ``"nsga2"``, or one registered later (``supernet info`` lists them).
        constraints: hard constraints such as ``"params <= 1e6"``; an infeasible arch is never returned, and one
            violating a params/FLOPs/latency constraint is never evaluated (EEEA's early exit: it is rejected
            before evaluation, never joins evolution's population, and ``result.rejected`` counts it).
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
        start_archs: archs to evaluate first, e.g. a ShiftNAS run's generated archs across the cost range
            (``supernet.training.strategies.shiftnas.load_generator(run_dir).spread(8)``); queued as the first
            trials of a new study, and the algorithm continues from them.
        latency_table: a latency lookup table (`supernet.cost.latency_table`, or the path of one saved with
            ``table.save``): the ``latency`` objective/constraint is then predicted from it, not measured.
        potential: the rounds of a search with the ``potential`` objective (`PotentialOptions` or a dict of its
            fields: ``rounds``, training ``steps`` per round, the potential's ``window``, ``lr``, ``batch_size``).
            Each round trains the supernet on the current population of ``population_size`` archs, evaluates
            them all, and selects the next population; potential = the least-squares slope of an arch's supernet
            accuracy against round over its last ``window`` rounds (0 for an arch evaluated in one round only).
            A run's supernet is trained in a copy; its trained weights go to ``OUT_DIR/STUDY.potential.safetensors``
            (rerunning resumes at the first unfinished round). A `SuperModule` needs ``task=`` and is trained in
            place. Not with ``workers > 1``, a ``screen``, or an algorithm other than the default.
        strategy: deprecated name of ``algorithm`` (a DeprecationWarning; removed in the next release).

    Returns:
        A `SearchResult` with the Pareto front.

    Raises:
        ValueError: bad settings, found before any arch is evaluated: an objective or constraint naming a metric
            the default evaluator does not measure, constraints no arch can meet (``loss <= 0``,
            ``params <= 0``), or potential settings out of range (``rounds=0``, ``window=1``).
        FileFormatError: the study's SQLite file is damaged or of another kind.
    """
    algorithm = algorithm_of(algorithm, strategy)
    settings = SearchSettings.create(
        objectives=parse_objectives(objectives),
        constraints=parse_constraints(constraints),
        algorithm=algorithm,
        trials=trials,
        max_total_trials=max_total_trials,
        workers=workers,
        seed=seed,
        storage=storage,
        study_name=study_name,
        out_dir=out_dir,
        population_size=population_size,
        sample_size=sample_size,
        eval_batches=eval_batches,
        eval_batch_size=eval_batch_size,
        bn_batches=bn_batches,
        latency_device=latency_device,
        device=device,
        screen_candidates=screen_candidates,
        progress=progress,
        potential=potential if potential is not None else PotentialOptions(),
    )
    searcher = Searcher(space_or_run, settings, evaluator=evaluator, example_input=example_input, task=task,
                        screen=screen, start_archs=start_archs,
                        latency_table=latency_table)
    return searcher.search()
