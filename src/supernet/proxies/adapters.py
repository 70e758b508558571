"""Proxies and predictors as search components: `sn.search` evaluators and a pre-filter.

``sn.search`` takes ``evaluator=fn(arch) -> {metric: value}`` and objectives such as ``"nwot:max"``::

    ev = sn.proxies.evaluator(space, ["nwot", "synflow"], batch)
    sn.search(space, evaluator=ev, objectives=["nwot:max", "params"], algorithm="evolution", trials=200)

A fitted predictor plugs in the same way (``predictor.evaluator()`` returns ``{"predicted": ...}``). `prefilter`
keeps the most promising archs of a candidate list by any cheap score (a proxy objective or a predictor), so
only those are evaluated on the supernet.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .common import Batch
from .registry import _check_names, score

NONFINITE_FILL = -1e8
"""What `evaluator` reports for ``-inf``/``+inf`` proxy values (NASLib's convention: a disconnected net is worst)."""


def evaluator(
    space: nn.Module,
    names: str | Sequence[str],
    batch: Batch,
    seed: int = 0,
    device: str | torch.device = "auto",
    fill: float = NONFINITE_FILL,
) -> Callable[[Mapping[str, Any]], dict[str, float]]:
    """An ``sn.search`` evaluator ``arch -> {proxy name: value}`` computing ``names`` on a fresh network.

    Infinite values become ``fill`` (``sign(value) * |fill|``) because search needs finite metrics; a proxy that
    does not apply to the space (``nan``) raises a ValueError naming it.
    """
    names = _check_names([names] if isinstance(names, str) else names)

    def fn(arch: Mapping[str, Any]) -> dict[str, float]:
        values = score(space, batch, arch=arch, names=names, seed=seed, device=device, strict=True)
        out = {}
        for name, v in values.items():
            if math.isnan(v):
                raise ValueError(f"proxy {name!r} gave nan for arch {dict(arch)}; it cannot be a search metric")
            out[name] = v if math.isfinite(v) else math.copysign(abs(fill), v)
        return out

    return fn


def prefilter(
    archs: Sequence[Mapping[str, Any]], score_fn: Callable[[Mapping[str, Any]], float], keep: int | float
) -> list[Mapping[str, Any]]:
    """The ``keep`` archs (a count, or a fraction in (0, 1]) with the highest ``score_fn``, best first.

    ``score_fn`` is any cheap ``arch -> float`` (`objective`, ``predictor.objective()``); ``nan`` ranks last.
    """
    if isinstance(keep, float) and not isinstance(keep, bool):
        if not 0 < keep <= 1:
            raise ValueError(f"a fractional keep must lie in (0, 1], got {keep}")
        count = max(1, math.ceil(keep * len(archs)))
    elif isinstance(keep, int) and keep >= 1:
        count = keep
    else:
        raise ValueError(f"keep must be a count >= 1 or a fraction in (0, 1], got {keep!r}")
    scored = [(float(score_fn(a)), i) for i, a in enumerate(archs)]
    scored.sort(key=lambda t: (-t[0] if not math.isnan(t[0]) else math.inf, t[1]))
    return [archs[i] for _, i in scored[:count]]
