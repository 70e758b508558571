"""Training-free proxies: score an architecture at random initialisation from one minibatch.

Each proxy is one function ``fn(net, batch, seed=0) -> float`` on a plain, freshly initialised network in train
mode (see `fresh_network`); `score` does the whole job for an arch of a space, and `objective` turns a proxy into
a callable ``arch -> float`` for search. `robot` combines proxies with a few ground-truth queries (RoBoT).

Proxies: synflow, snip, grasp, fisher, grad_norm, plain, jacov, nwot, gradsign, zen, l2_norm, params, flops, and
the newer zico, meco (`gradstats`), swap, vkdnw (`patterns`), az_expressivity, az_progressivity, az_trainability
(`aznas`, with the AZ-NAS rank aggregation `az_aggregate`). Each
proxy file registers its functions in `PROXIES` with ``@register_proxy(name)``; importing the files here is what
registers them. A proxy of your own is registered the same way from your own module.
Applicability: ``jacov`` and ``zen`` need continuous inputs (not token ids); ``nwot`` needs activation modules
(ReLU family exactly; GELU/SiLU/... by the sign-code extension); saliency proxies need Conv/Linear layers.
Inapplicable proxies give ``nan`` in `score` (or raise `ProxyNotApplicableError` with ``strict=True``).
"""

# the proxy files: importing them registers their proxies (in this order)
from . import saliency, activation, static, gradstats, patterns, aznas  # noqa: I001
from .activation import jacov, nwot, zen
from .adapters import NONFINITE_FILL, evaluator, prefilter
from .aznas import az_aggregate, az_expressivity, az_nas_scores, az_progressivity, az_trainability
from .gradstats import meco, zico
from .patterns import swap, vkdnw
from .common import Batch, ProxyNotApplicableError, fresh_network, init_network, task_loss
from .registry import NOISE_INPUTS, PROXIES, Inputs, Proxy, objective, paper_inputs, register_proxy, score
from .robot import RobotResult, normalise, robot, weighted_ranking
from .saliency import fisher, grad_norm, gradsign, grasp, plain, snip, synflow
from .static import flops, l2_norm, params

DEFAULT_PROXIES: tuple[str, ...] = tuple(PROXIES)
"""The built-in proxies (a proxy registered later is scored by default too: ``score(names=None)`` takes them all)."""

__all__ = [
    "az_aggregate",
    "az_expressivity",
    "az_nas_scores",
    "az_progressivity",
    "az_trainability",
    "aznas",
    "gradstats",
    "meco",
    "patterns",
    "swap",
    "vkdnw",
    "zico",
    "DEFAULT_PROXIES",
    "Inputs",
    "NOISE_INPUTS",
    "NONFINITE_FILL",
    "PROXIES",
    "Batch",
    "Proxy",
    "RobotResult",
    "activation",
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
    "paper_inputs",
    "params",
    "plain",
    "prefilter",
    "register_proxy",
    "robot",
    "saliency",
    "normalise",
    "score",
    "snip",
    "static",
    "synflow",
    "task_loss",
    "weighted_ranking",
    "zen",
]
