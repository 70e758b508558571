"""Black-box search over a trained supernet (`search`, exported as ``sn.search``): random, evolution, NSGA-II, ...

``sn.search(run_or_space, objectives=["loss", "params"], algorithm="nsga2", constraints="params <= 1e6")``
returns a `SearchResult` whose ``front`` is the Pareto front of feasible subnets. ``search`` validates its arguments
into `SearchSettings` and runs a `Searcher` (an object with ``before_search`` / ``run_search`` / ``after_search``
hooks and a state dict). Search algorithms are registered in `ALGORITHMS` (one file each, in ``algorithms/``).
The Optuna study (a SQLite file in the run directory by default) is the persistent record: rerunning resumes,
and several workers can share it without evaluating any subnet twice.
"""

from .algorithms import ALGORITHMS, DEFAULT_ALGORITHM, SamplerRequest, SearchAlgorithm
from .api import search
from .costs import CostModel
from .evaluate import RunEvaluator
from .evolution import RegularizedEvolutionSampler
from .keys import active_decisions, arch_key, canonical_json, count_distinct_archs
from .objectives import Constraint, Objective, parse_constraints, parse_objectives, resolve_constraints
from .pareto import pareto_front
from .results import ParetoFile, SearchResult, collect_entries, load_front, write_outputs
from .searcher import Searcher
from .settings import SearchSettings
from .study import SearchSetup, fail_dead_trials, make_storage, worker_identity

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "Constraint",
    "CostModel",
    "Objective",
    "ParetoFile",
    "RegularizedEvolutionSampler",
    "RunEvaluator",
    "SamplerRequest",
    "SearchAlgorithm",
    "SearchResult",
    "SearchSettings",
    "SearchSetup",
    "Searcher",
    "active_decisions",
    "arch_key",
    "canonical_json",
    "collect_entries",
    "count_distinct_archs",
    "fail_dead_trials",
    "load_front",
    "make_storage",
    "parse_constraints",
    "parse_objectives",
    "pareto_front",
    "resolve_constraints",
    "search",
    "worker_identity",
    "write_outputs",
]
