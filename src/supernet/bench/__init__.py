"""Benchmarks: ground-truth tables, ranking metrics, the NB201 ranking benchmark, and ground truth for any space.

- Tables (`Table`, `load_table`, `load_nb201`, `load_nats_table`): ``arch -> {metric: value}`` read from files the
  user points at (the library ships none). NATS-Bench pickles are read with a restricted unpickler only.
- Metrics (`kendall_tau`, `sparse_kendall_tau`, `spearman_rho`, `precision_at_k`, `top_k_overlap`, `regret`,
  `bootstrap_ci`, `ranking_report`, `relative_improvement`).
- `run_nb201_bench`: train an NB201 supernet, rank archs with inherited weights, compare with NAS-Bench-201.
- `build_groundtruth`: train sampled archs of any space from scratch and write a table.
"""

from .cifar import ImageSplits, Normalize, RandomCropFlip, cifar10_splits, find_tarball
from .groundtruth import GroundTruthRecipe, build_groundtruth
from .improvement import relative_improvement_from_table
from .metrics import (
    Estimate,
    bootstrap_ci,
    kendall_tau,
    precision_at_k,
    ranking_report,
    regret,
    relative_improvement,
    sparse_kendall_tau,
    spearman_rho,
    top_k_overlap,
)
from .nats import ForbiddenPickleError, RestrictedUnpickler, load_nats_meta, load_nats_pickle, load_nats_table
from .nb201 import PRESETS, BenchConfig, choose_archs, preset_config, run_nb201_bench
from .tables import (
    Table,
    TableError,
    arch_key,
    canonical_json,
    load_nb201,
    load_nb201_costs,
    load_table,
    parse_arch_key,
)

__all__ = [
    "PRESETS",
    "BenchConfig",
    "Estimate",
    "ForbiddenPickleError",
    "GroundTruthRecipe",
    "ImageSplits",
    "Normalize",
    "RandomCropFlip",
    "RestrictedUnpickler",
    "Table",
    "TableError",
    "arch_key",
    "bootstrap_ci",
    "build_groundtruth",
    "canonical_json",
    "choose_archs",
    "cifar10_splits",
    "find_tarball",
    "kendall_tau",
    "load_nats_meta",
    "load_nats_pickle",
    "load_nats_table",
    "load_nb201",
    "load_nb201_costs",
    "load_table",
    "parse_arch_key",
    "precision_at_k",
    "preset_config",
    "ranking_report",
    "regret",
    "relative_improvement",
    "relative_improvement_from_table",
    "run_nb201_bench",
    "sparse_kendall_tau",
    "spearman_rho",
    "top_k_overlap",
]
