"""Black-box search over a trained supernet (`search`, exported as ``sn.search``): random, evolution, NSGA-II.

``sn.search(run_or_space, objectives=["loss", "params"], strategy="nsga2", constraints="params <= 1e6")``
returns a `SearchResult` whose ``front`` is the Pareto front of feasible subnets. The Optuna study (a SQLite
file in the run directory by default) is the persistent record: rerunning resumes, and several workers can
share it without evaluating any subnet twice.
"""

from .api import ParetoFile, SearchResult, collect_entries, load_front, search, write_outputs
from .costs import CostModel
from .evaluate import RunEvaluator
from .evolution import RegularizedEvolutionSampler
from .keys import active_decisions, arch_key, canonical_json, count_distinct_archs
from .objectives import Constraint, Objective, parse_constraints, parse_objectives
from .pareto import pareto_front
from .study import STRATEGIES, SearchSetup, fail_dead_trials, make_storage, worker_identity

__all__ = [
    "STRATEGIES",
    "Constraint",
    "CostModel",
    "Objective",
    "ParetoFile",
    "RegularizedEvolutionSampler",
    "RunEvaluator",
    "SearchResult",
    "SearchSetup",
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
    "search",
    "worker_identity",
    "write_outputs",
]
