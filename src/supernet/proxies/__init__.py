"""Training-free proxies: score an architecture at random initialisation from one minibatch.

Each proxy is one function ``fn(net, batch, seed=0) -> float`` on a plain, freshly initialised network in train
mode (see `fresh_network`); `score` does the whole job for an arch of a space, and `objective` turns a proxy into
a callable ``arch -> float`` for search. `robot` combines proxies with a few ground-truth queries (RoBoT).

Proxies: synflow, snip, grasp, fisher, grad_norm, plain, jacov, nwot, gradsign, zen, l2_norm, params, flops.
Applicability: ``jacov`` and ``zen`` need continuous inputs (not token ids); ``nwot`` needs activation modules
(ReLU family exactly; GELU/SiLU/... by the sign-code extension); saliency proxies need Conv/Linear layers.
Inapplicable proxies give ``nan`` in `score` (or raise `ProxyNotApplicableError` with ``strict=True``).
"""

from .activation import jacov, nwot, zen
from .adapters import NONFINITE_FILL, evaluator, prefilter
from .common import Batch, ProxyNotApplicableError, fresh_network, init_network, task_loss
from .registry import DEFAULT_PROXIES, PROXIES, Proxy, objective, register_proxy, score
from .robot import RobotResult, normalise, robot, weighted_ranking
from .saliency import fisher, grad_norm, gradsign, grasp, plain, snip, synflow
from .static import flops, l2_norm, params

__all__ = [
    "DEFAULT_PROXIES",
    "NONFINITE_FILL",
    "PROXIES",
    "Batch",
    "Proxy",
    "RobotResult",
    "ProxyNotApplicableError",
    "evaluator",
    "fisher",
    "flops",
    "fresh_network",
    "grad_norm",
    "gradsign",
    "grasp",
    "init_network",
    "jacov",
    "l2_norm",
    "nwot",
    "objective",
    "params",
    "plain",
    "prefilter",
    "register_proxy",
    "robot",
    "normalise",
    "score",
    "snip",
    "synflow",
    "task_loss",
    "weighted_ranking",
    "zen",
]
