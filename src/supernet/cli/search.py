"""``supernet search RUN_DIR``: search a trained supernet with a search algorithm (random, evolution, NSGA-II, ...)."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ..config import PipelineConfig, SearchConfig, load_section, read_pipeline
from ..searching import ALGORITHMS
from ..searching.settings import STRATEGY_DEPRECATION
from ..training.checkpoint import PIPELINE_JSON
from ._util import device_arg, formatter, friendly, method_list, overrides

EXAMPLE = """example:
  supernet search runs/gpt --algorithm nsga2 --objectives loss,params --constraint "params <= 500k" --trials 60
  supernet search runs/gpt --workers 2                       # 2 local processes on one SQLite study
  supernet search runs/gpt-shiftnas --start-generated 8      # begin with the ShiftNAS generator's archs
  supernet search runs/gpt --algorithm evolution --screen nwot,flops   # evaluate the best-estimated of 8 proposals
  supernet search runs/gpt --storage postgresql://user@host/db --study-name gpt   # one study across machines
  supernet search runs/gpt --objectives acc,potential --rounds 4 --round-steps 50   # EMARS: train between rounds
  supernet search runs/gpt --algorithm evolution --constraint "params <= 200k"   # early exit: over-budget archs
                                                                                 # are rejected unevaluated
Rerunning the same command resumes the study (nothing is evaluated twice).
Writes RUN_DIR/search/pareto.json, pareto.csv, trials.csv, pareto.png and study.db.
"""

_FLAGS = {
    "algorithm": "algorithm",
    "objectives": "objectives",
    "constraint": "constraints",
    "trials": "trials",
    "workers": "workers",
    "storage": "storage",
    "study_name": "study_name",
    "seed": "seed",
    "eval_batches": "eval_batches",
    "population_size": "population_size",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``search`` subcommand."""
    p = sub.add_parser(
        "search",
        help="search a trained supernet for the Pareto front under constraints",
        description=(
            "Black-box search with inherited weights, by a search algorithm (Optuna sampler).\n\n"
            f"search algorithms (--algorithm):\n{method_list(ALGORITHMS.describe())}"
        ),
        epilog=EXAMPLE,
        formatter_class=formatter(),
    )
    p.add_argument("run_dir", type=Path, help="training run directory")
    p.add_argument("--config", type=Path, help="YAML config whose 'search' section gives the defaults")
    p.add_argument("--algorithm", metavar="NAME", help="a search algorithm listed above (default: nsga2)")
    p.add_argument("--strategy", dest="old_strategy", metavar="NAME", help="deprecated name of --algorithm")
    p.add_argument(
        "--objectives",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="comma-separated: loss, accuracy (acc), params, flops, latency, potential (or name:min / name:max); "
        "potential (EMARS) interleaves supernet training with selection in rounds",
    )
    p.add_argument(
        "--constraint",
        action="append",
        help="hard constraint such as 'params <= 1e6' (repeatable); a candidate over a params/flops/latency bound is "
        "rejected before evaluation (early exit) and counted as rejected",
    )
    p.add_argument("--trials", type=int, help="distinct archs to evaluate")
    p.add_argument("--workers", type=int, help="local worker processes sharing the study")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite in RUN_DIR/search)")
    p.add_argument("--study-name", dest="study_name")
    p.add_argument("--seed", type=int)
    p.add_argument("--eval-batches", dest="eval_batches", type=int, help="val batches per arch")
    p.add_argument("--population-size", dest="population_size", type=int, help="evolution/NSGA-II population")
    p.add_argument(
        "--start-generated",
        dest="start_generated",
        type=int,
        metavar="N",
        help="a shiftnas run: evaluate first the generator's archs for N costs spread over the range",
    )
    p.add_argument(
        "--screen",
        metavar="SIGNALS",
        help="pre-filter each trial's candidates by a label-free estimate: comma-separated proxies (supernet info "
        "lists them), params, flops; the log-rank sum among --screen-reference random archs (sn.estimate)",
    )
    p.add_argument("--screen-candidates", dest="screen_candidates", type=int, default=8,
                   help="proposals per trial when screening (default 8)")
    p.add_argument("--screen-reference", dest="screen_reference", type=int, default=32,
                   help="random archs the screen ranks candidates among (default 32)")
    p.add_argument("--latency-table", dest="latency_table", type=Path,
                   help="predict latency from this table (supernet latency) instead of timing each subnet")
    p.add_argument("--rounds", type=int,
                   help="with the potential objective: rounds of train/evaluate/select (default 5)")
    p.add_argument("--round-steps", dest="round_steps", type=int,
                   help="with the potential objective: supernet training steps before each round after the first "
                   "(default 100)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    device_arg(p)
    p.set_defaults(func=friendly(run))


def search_config(args: argparse.Namespace) -> SearchConfig:
    """The search settings: config file (or the run's pipeline.json) overridden by command-line flags.

    The deprecated names (``--strategy``, ``search: {strategy: ...}``) still work, with a note on stderr.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecationWarning)
        cfg = _search_config(args)
    for w in caught:
        if issubclass(w.category, DeprecationWarning):
            _note(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return cfg


def _search_config(args: argparse.Namespace) -> SearchConfig:
    base: dict = {}
    if args.config is not None:
        base = PipelineConfig.from_yaml(args.config).search.model_dump()
    elif (args.run_dir / PIPELINE_JSON).is_file():
        base = read_pipeline(args.run_dir).search.model_dump()
    base.update(overrides(args, _FLAGS))
    potential = overrides(args, {"rounds": "rounds", "round_steps": "steps"})
    if potential:
        base["potential"] = {**(base.get("potential") or {}), **potential}
    old = getattr(args, "old_strategy", None)
    if old is not None:
        warnings.warn(STRATEGY_DEPRECATION.format(how="use --algorithm"), DeprecationWarning, stacklevel=2)
        if args.algorithm not in (None, old):
            raise ValueError(f"give --algorithm only (--strategy is its old name): got {args.algorithm} and {old}")
        base["algorithm"] = old
    return load_section(SearchConfig, base, "search config")


def _note(message: str) -> None:
    print(f"supernet search: note: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the search and print the Pareto front."""
    from ..searching import search
    from ..searching.report import front_table

    cfg = search_config(args)
    start = None
    if args.start_generated is not None:
        from ..training.strategies.shiftnas import load_generator

        start = load_generator(args.run_dir).spread(args.start_generated)
    screen = None
    if args.screen:
        screen = _screen(args, cfg.seed)
    result = search(
        args.run_dir,
        objectives=cfg.objectives,
        algorithm=cfg.algorithm,
        constraints=cfg.constraints or None,
        trials=cfg.trials,
        storage=cfg.storage,
        study_name=cfg.study_name,
        workers=cfg.workers,
        seed=cfg.seed,
        population_size=cfg.population_size,
        sample_size=cfg.sample_size,
        eval_batches=cfg.eval_batches,
        eval_batch_size=cfg.eval_batch_size,
        bn_batches=cfg.bn_batches,
        latency_device=cfg.latency_device,
        device=args.device,
        progress=not args.no_progress,
        start_archs=start,
        latency_table=args.latency_table,
        screen=screen,
        screen_candidates=args.screen_candidates,
        potential=cfg.potential,
    )
    console = Console()
    console.print(front_table(result.to_json()))
    if result.rejected:
        console.print(f"rejected before evaluation (over a params/flops/latency constraint): {result.rejected}")
    if "message" in result.extra:  # stopped short of --trials: the space is exhausted or the sampler stalled
        console.print(f"[yellow]note:[/yellow] {result.extra['message']}")
    console.print(f"results in [bold]{result.out_dir}[/bold] (pareto.json, pareto.csv, pareto.png)")
    console.print(f"next: supernet export {args.run_dir} --arch best --out {args.run_dir / 'model'}")
    return 0


def _screen(args: argparse.Namespace, seed: int) -> Callable[[Any], float]:
    """A label-free `supernet.estimate.Estimator` over the ``--screen`` signals, as a search screen."""
    import random

    import torch

    from ..estimate import Estimator, cost_signal, proxy_signal
    from ..proxies import PROXIES
    from ..training import load_run
    from ..training.rundata import task_of_run

    names = [n.strip() for n in args.screen.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROXIES and n not in ("params", "flops")]
    if not names or unknown:
        raise ValueError(f"--screen: unknown signals {unknown or names}; use params, flops or proxies: "
                         f"{', '.join(PROXIES)}")
    if args.screen_reference < 2:
        raise ValueError(f"--screen-reference must be at least 2, got {args.screen_reference}")
    space = load_run(args.run_dir).space
    task = task_of_run(args.run_dir)
    batch = task.train_batch(64, torch.Generator().manual_seed(seed))
    signals = {
        n: cost_signal(space, n, task.example_input(1)) if n in ("params", "flops")  # type: ignore[arg-type]
        else proxy_signal(space, n, batch, seed=seed, device=args.device or "auto")
        for n in names
    }
    rng = random.Random(seed)
    return Estimator(signals).fit([space.sample(rng=rng) for _ in range(args.screen_reference)]).objective()
