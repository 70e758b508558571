"""``gm``: gradient-matching splits (GM-NAS, Hu et al., ICLR 2022): split where child models disagree.

Like `fewshot`, the run warms up one supernet and continues with an inner strategy on sub-supernets, at the same
total steps. Where and how to split is measured instead of fixed. At each of ``splits`` split steps (the first after
``warmup * steps``, then every ``interval * steps``), for every active sub-supernet and every decision with at
least 2 options in it:

1. each option's gradient on the sub-supernet's weights is estimated: the mean over ``batches`` training
   minibatches of the loss gradient of an arch that takes that option (the other decisions drawn uniformly from
   the sub-supernet's options);
2. the *shared* weights are those every option's gradient reaches (an option's own operation weights are not
   shared); for two options their agreement is the mean over the shared weights' filters (rows of each weight
   with 2+ dims; 1-d weights such as norms are skipped, as GM-NAS does) of the cosine similarity of their
   gradients;
3. the options are cut into two groups by the bipartition whose cross-group pairs agree least on average
   (exhaustive over the ``2^(k-1) - 1`` bipartitions; averaging keeps group sizes from biasing the cut).

The (sub-supernet, decision) whose best cut has the lowest agreement is split along it. Every candidate's score and
the chosen cut are kept in the strategy state, in ``RUN_DIR/splits.json`` and logged (``split``) in the metrics.

Facts from the official code (skhu101/GM-NAS, NB201 utilities): per-filter cosine distance between option
gradients with 1-d weights skipped, a cut minimising within-group distance (equivalently maximising cross-group
distance), the edge with the largest cross-group score split first. Deliberate differences: mean instead of summed
agreement (sizes unrestricted instead of GM-NAS's fixed 2/3 groups on NB201), all sub-supernets compete for each
split instead of splitting every sub-supernet once per level, and gradients are estimated on ``batches``
minibatches rather than a full epoch. The estimation passes do not update weights; they show in wall time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from ...space import SuperModule
from ...space.partition import partitions_of, split
from ..context import TrainContext
from .base import register_strategy
from .fewshot import SplitOptions, SplitStrategy


class GMOptions(SplitOptions):
    """Options of ``gm``."""

    splits: int = Field(2, ge=1, description="how many binary splits (sub-supernets: splits + 1)")
    interval: float = Field(0.1, gt=0.0, lt=1.0, description="fraction of the steps between two splits")
    batches: int = Field(2, ge=1, description="minibatches per option gradient estimate")
    decisions: list[str] | None = Field(None, description="candidate decisions (default: every decision)")


def best_cut(agreement: torch.Tensor) -> tuple[list[int], list[int], float]:
    """The bipartition of options ``0..k-1`` whose cross-group pairs have the lowest mean ``agreement``.

    Exhaustive over the ``2^(k-1) - 1`` bipartitions (option 0 always in the first group; ties: the first found).
    Returns ``(group A, group B, mean cross agreement)``.
    """
    k = agreement.shape[0]
    if k < 2:
        raise ValueError(f"a cut needs at least 2 options, got {k}")
    best: tuple[list[int], list[int], float] | None = None
    for size in range(0, k - 1):
        for rest in itertools.combinations(range(1, k), size):
            a = [0, *rest]
            b = [i for i in range(k) if i not in a]
            score = float(agreement[a][:, b].mean())
            if best is None or score < best[2]:
                best = (a, b, score)
    assert best is not None
    return best


def filter_agreement(grads: Sequence[Sequence[torch.Tensor | None]]) -> torch.Tensor:
    """``(k, k)`` mean per-filter cosine similarity of ``k`` options' gradients over the weights every option
    reaches (``grads[i][w]``: option ``i``'s gradient of weight ``w``, None or all-zero where it does not reach)."""
    k = len(grads)
    rows: list[torch.Tensor] = []  # one (k, filters, size) stack per shared weight
    for per_option in zip(*grads, strict=True):
        if any(g is None or g.dim() < 2 or not bool(g.any()) for g in per_option):
            continue
        rows.append(torch.stack([g.reshape(g.shape[0], -1).double() for g in per_option]))  # type: ignore[union-attr]
    if not rows:
        raise ValueError("no weight is reached by every option's gradient: nothing is shared to compare")
    out = torch.eye(k, dtype=torch.float64)
    for i, j in itertools.combinations(range(k), 2):
        cos = torch.cat([torch.nn.functional.cosine_similarity(r[i], r[j], dim=1, eps=1e-12) for r in rows])
        out[i, j] = out[j, i] = cos.mean()
    return out


@register_strategy("gm")
class GradientMatching(SplitStrategy):
    """GM-NAS: binary splits of the sub-supernet and decision whose options' gradients agree least."""

    Options = GMOptions

    def partitions(self, space: SuperModule) -> int:
        names = self.options.decisions
        if names is not None:
            unknown = [n for n in names if n not in space.decisions]
            if unknown or not names:
                raise ValueError(f"gm: unknown candidate decisions {unknown}; the space's: {list(space.decisions)}")
        return self.options.splits + 1

    def split_steps(self, total_steps: int) -> list[int]:
        o = self.options
        first = o.warmup * total_steps
        steps = [round(first + i * o.interval * total_steps) for i in range(o.splits)]
        if steps[-1] >= total_steps:
            raise ValueError(
                f"gm: {o.splits} splits from {o.warmup:g} of the steps every {o.interval:g} do not fit in "
                f"{total_steps} steps (the last would be step {steps[-1]})"
            )
        return [max(1, s) for s in steps]

    def option_gradients(self, ctx: TrainContext, index: int, decision: str) -> list[list[torch.Tensor | None]]:
        """Per option of ``decision`` held by partition ``index``: its mean gradient of that partition's weights."""
        parts = partitions_of(ctx.space)
        assert parts is not None
        held = parts.options_of(index)
        params = list(parts.copies[index].parameters())
        out = []
        for option in held[decision]:
            total: list[torch.Tensor | None] = [None] * len(params)
            for _ in range(self.options.batches):
                arch = {n: ctx.rng.choice(opts) for n, opts in held.items()}
                arch[decision] = option
                x, y = ctx.train_batch()
                ctx.space.set_arch(arch)
                with ctx.autocast():
                    loss = ctx.loss(ctx.space(x), y)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                total = [g if t is None else (t if g is None else t + g) for t, g in zip(total, grads, strict=True)]
            mean = [torch.zeros_like(p) if t is None else (t / self.options.batches).detach() for t, p in
                    zip(total, params, strict=True)]
            if ctx.distributed:  # the mean over ranks' shards is the gradient of the global batch
                flat = ctx.all_gather(torch.cat([g.reshape(1, -1) for g in mean], dim=1)).mean(0)
                mean = [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in mean]), mean,
                                                              strict=True)]
            out.append([g if bool(g.any()) else None for g in mean])
        return out

    def do_split(self, ctx: TrainContext, index: int) -> dict[str, Any]:
        parts = partitions_of(ctx.space)
        assert parts is not None
        names = self.options.decisions or list(ctx.space.decisions)
        candidates = []
        for p in range(parts.count):
            if not bool(parts.active[p]):
                continue
            held = parts.options_of(p)
            for name in names:
                if len(held[name]) < 2:
                    continue
                agreement = filter_agreement(self.option_gradients(ctx, p, name))
                a, b, score = best_cut(agreement)
                candidates.append({
                    "partition": p,
                    "decision": name,
                    "score": score,
                    "groups": [[held[name][i] for i in a], [held[name][i] for i in b]],
                    "agreement": agreement.tolist(),
                })
        if not candidates:
            raise ValueError("gm: no sub-supernet has a candidate decision with 2+ options left to split")
        chosen = min(candidates, key=lambda c: c["score"])
        split(ctx.space, chosen["partition"], chosen["decision"], chosen["groups"])
        ctx.reset_usage()  # the probes trained nothing
        return {"chosen": {k: chosen[k] for k in ("partition", "decision", "score", "groups")},
                "candidates": candidates}


__all__ = ["GMOptions", "GradientMatching", "best_cut", "filter_agreement"]
