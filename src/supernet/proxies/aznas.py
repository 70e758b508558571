"""AZ-NAS (Lee & Ham, CVPR 2024): expressivity, progressivity and trainability, and their rank aggregation.

The three scores come from one forward pass (and, for trainability, one vector-Jacobian product per pair of
consecutive features) by `az_nas_scores`; the fourth AZ-NAS score, complexity, is the ``flops`` proxy.
Definitions follow the official code (``NB201/ZeroShotProxy/compute_az_nas_score.py`` and
``ImageNet_MBV2/ZeroShotProxy/compute_az_nas_score.py`` of cvlab-yonsei/AZ-NAS). With ``F_0 .. F_L`` the features
(below), each reshaped to rows ``(n, C)`` -- ``(B, C, H, W)`` to ``(B*H*W, C)``, ``(B, N, C)`` token features to
``(B*N, C)``, ``(B, C)`` as is:

- expressivity ``E = sum_i E_i`` with ``E_i = -sum_c p_c log(p_c + 1e-8)``, ``p = s / sum(s)``, ``s`` the
  eigenvalues of the covariance ``(F_i - mean)^T (F_i - mean) / n`` (biased, over all rows).
- progressivity ``P = min_i (E_i - E_{i-1})`` over consecutive features (needs 2 features).
- trainability ``T = mean_i (2 - sigma_i - 1 / (sigma_i + 1e-6))`` over consecutive pairs, with
  ``sigma_i = ||G_{i-1}^T R_i / n||_2`` (largest singular value), ``R_i`` a random +-1 (Rademacher) tensor shaped
  like ``F_i`` and ``G_{i-1} = R_i dF_i/dF_{i-1}`` its vector-Jacobian product (both as rows). When ``F_{i-1}`` has
  ``k`` times the height and width of ``F_i``, ``G_{i-1}`` is pixel-unshuffled by ``k`` first (channels ``C k^2``).
  A pair whose ``G_{i-1}`` equals ``R_i`` exactly (an identity block) scores ``-inf``, as in the official code.

A score that comes out NaN is reported as ``-inf`` (the official convention). Higher is better for all three.

Which features (the generic stage rule). A *block container* is an ``nn.Sequential`` or ``nn.ModuleList`` whose
children all have submodules of their own (blocks, not single layers). The *blocks* are the children of the
outermost block containers of the network (nested block containers are flattened; the insides of a block are
never searched). The features are the input of the first block called (the stem output) followed by the output of
every block call, in call order. This gives the stem and cell outputs on NB-201 (as the official NB-201 code), the
MBConv outputs on MobileNet, the transformer-block outputs on ViT/GPT, and the residual-block outputs of a
torchvision ResNet. A network without a block container (a plain stack of layers) falls back to the outputs of its
activation modules (ReLU family and GELU/SiLU/...), in call order, as the official MobileNetV2 code reads every
ReLU output; that fallback has no stem feature. Features must be floating tensors of at least 2 dimensions;
3-dimensional features are read as ``(B, N, C)`` tokens (channels last), 4- and 5-dimensional ones as channels in
dimension 1.

Initialisation (``init=True``, default; the official default): a copy of the network gets Kaiming-normal fan-in
(ReLU gain) weights in every Conv/Linear layer, zero biases, unit scale and zero shift in normalisation layers;
other parameters (embeddings, tokens) keep their values. The network runs in train mode (BatchNorm on batch
statistics). Random draws (the initialisation, then the Rademacher tensors, pair by pair from the last pair to the
first) come from ``torch.Generator().manual_seed(seed)`` on the CPU.

Deliberate differences from the official code: the covariance eigenvalues and singular values are computed in
float64 and negative eigenvalue round-off is clipped to 0 (the official float32 code can give NaN there on
rank-deficient covariances); the proxy functions score the batch they are given (`supernet.proxies.score` gives
them standard-normal inputs shaped like the batch by default, as the official code does: `NOISE_INPUTS`); the
generic stage rule above replaces the per-space feature extractors (AutoFormer's code reads two residual points per
transformer block and no embedding, and runs in eval mode without re-initialising); in-place activations of the
working copy are switched off so recorded features are not overwritten.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .activation import GATED, RELU_FAMILY
from .common import Batch, ProxyNotApplicableError, check_batch, net_device
from .registry import register_proxy

_CONTAINERS = (nn.Sequential, nn.ModuleList)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORM_BASES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
EPS_LOG = 1e-8
"""Added inside the log of the eigenvalue entropy (official code)."""
EPS_SIGMA = 1e-6
"""Added to the spectral norm in ``1 / (sigma + eps)`` (official code)."""


# ---- which features ---------------------------------------------------------------------------------------------


def _is_composite(m: nn.Module) -> bool:
    return next(m.children(), None) is not None


def _is_block_container(m: nn.Module) -> bool:
    return isinstance(m, _CONTAINERS) and len(m) > 0 and all(_is_composite(c) for c in m)


def _flatten(container: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in container:
        out += _flatten(child) if _is_block_container(child) else [child]
    return out


def find_blocks(net: nn.Module) -> list[nn.Module]:
    """The blocks of ``net``: children of its outermost block containers (``nn.Sequential``/``nn.ModuleList``
    whose children all have submodules), nested block containers flattened, in module order."""
    if _is_block_container(net):
        return _flatten(net)
    out: list[nn.Module] = []
    for child in net.children():
        out += find_blocks(child)
    return out


def _record_features(net: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], str]:
    """Run ``net(x)`` once, recording the features (see the module docstring); returns them and the rule used."""
    blocks = find_blocks(net)
    rule = "blocks"
    if not blocks:
        blocks = [m for m in net.modules() if isinstance(m, RELU_FAMILY + GATED)]
        rule = "activations"
    if not blocks:
        raise ProxyNotApplicableError(
            "AZ-NAS reads stage features at blocks (children of an nn.Sequential/nn.ModuleList of composite modules) "
            f"or, failing those, at activation modules; {type(net).__name__} has neither"
        )
    feats: list[torch.Tensor] = []

    def pre_hook(module: nn.Module, inputs: tuple) -> tuple | None:
        if feats or not inputs or not isinstance(inputs[0], torch.Tensor):
            return None
        first = inputs[0]
        if torch.is_grad_enabled() and torch.is_floating_point(first) and not first.requires_grad:
            first = first.detach().requires_grad_(True)  # a leaf to differentiate to (blocks applied to raw input)
            feats.append(first)
            return (first, *inputs[1:])
        feats.append(first)
        return None

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        feats.append(output)  # type: ignore[arg-type]  # checked below

    handles = [b.register_forward_hook(hook) for b in blocks]
    if rule == "blocks":
        handles += [b.register_forward_pre_hook(pre_hook) for b in blocks]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    for i, f in enumerate(feats):
        if not isinstance(f, torch.Tensor) or not torch.is_floating_point(f) or f.dim() < 2:
            what = (
                type(f).__name__ if not isinstance(f, torch.Tensor) else f"{f.dtype} tensor of shape {tuple(f.shape)}"
            )
            raise ProxyNotApplicableError(
                f"AZ-NAS needs floating feature tensors (batch, ...) at every stage; feature {i} is a {what}"
            )
    return feats, rule


def _rows(f: torch.Tensor) -> torch.Tensor:
    """A feature as rows ``(n, C)``: channels last for 2-D/3-D features, channels in dim 1 for 4-D and up."""
    if f.dim() == 2:
        return f
    if f.dim() == 3:
        return f.reshape(-1, f.shape[-1])
    return f.movedim(1, -1).reshape(-1, f.shape[1])


# ---- the scores -------------------------------------------------------------------------------------------------


def _entropy(f: torch.Tensor) -> float:
    r = _rows(f.detach()).double()
    r = r - r.mean(dim=0, keepdim=True)
    sigma = r.T @ r / r.shape[0]
    s = torch.linalg.eigvalsh(sigma).clamp_min(0.0)
    p = s / s.sum()
    return float((-p * torch.log(p + EPS_LOG)).sum())


def _pair_trainability(f_in: torch.Tensor, f_out: torch.Tensor, gen: torch.Generator, index: int) -> float:
    g_out = (torch.bernoulli(torch.full(f_out.shape, 0.5), generator=gen) * 2 - 1).to(f_out.device, f_out.dtype)
    g_in = None
    if f_out.requires_grad:
        (g_in,) = torch.autograd.grad(f_out, f_in, g_out, retain_graph=True, allow_unused=True)
    if g_in is None:
        raise ProxyNotApplicableError(
            f"az_trainability: feature {index} does not depend on feature {index - 1} (the blocks found do not form "
            "a chain), so there is no Jacobian between them"
        )
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        return -math.inf  # an identity block (official convention)
    if g_in.dim() != g_out.dim() or g_in.shape[0] != g_out.shape[0]:
        raise ProxyNotApplicableError(
            f"az_trainability: features {index - 1} {tuple(g_in.shape)} and {index} {tuple(g_out.shape)} differ in "
            "rank or batch size"
        )
    if g_in.dim() >= 4 and g_in.shape[2:] != g_out.shape[2:]:
        hi, wi = g_in.shape[2:4] if g_in.dim() == 4 else (0, 0)
        ho, wo = g_out.shape[2:4]
        k = hi // ho if ho else 0
        if g_in.dim() != 4 or k < 1 or hi != k * ho or wi != k * wo:
            raise ProxyNotApplicableError(
                f"az_trainability: feature {index - 1} {tuple(g_in.shape)} is not an integer downsampling of "
                f"feature {index} {tuple(g_out.shape)} (the official rule pixel-unshuffles 2-D maps by a common factor)"
            )
        g_in = F.pixel_unshuffle(g_in, k)
    r_in, r_out = _rows(g_in).double(), _rows(g_out).double()
    if r_in.shape[0] != r_out.shape[0]:
        raise ProxyNotApplicableError(
            f"az_trainability: features {index - 1} {tuple(g_in.shape)} and {index} {tuple(g_out.shape)} have "
            "different numbers of positions (tokens)"
        )
    mat = r_in.T @ r_out / r_out.shape[0]
    sigma = float(torch.linalg.svdvals(mat).max())
    return -sigma - 1.0 / (sigma + EPS_SIGMA) + 2.0


def _nan_to_neg_inf(v: float) -> float:
    return -math.inf if math.isnan(v) else v


def _az_init(net: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _WEIGHTED):
                fan_in = m.weight[0].numel() if m.weight.shape[0] else 0
                if fan_in:
                    w = torch.randn(m.weight.shape, generator=gen, dtype=torch.float32) * math.sqrt(2.0 / fan_in)
                    m.weight.copy_(w)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, _NORM_BASES):
                if getattr(m, "weight", None) is not None:
                    m.weight.fill_(1.0)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()


@dataclass
class AZScores:
    """The per-feature entropies and the three AZ-NAS scores of one network (``None`` where not applicable)."""

    entropies: list[float]
    expressivity: float
    progressivity: float | None
    trainability: float | None
    reasons: dict[str, str] = field(default_factory=dict)
    """Why a score is ``None``, by score name."""
    rule: str = "blocks"
    """How the features were found: ``"blocks"`` or ``"activations"`` (the fallback)."""


def _az_nas(net: nn.Module, batch: Batch, seed: int = 0, init: bool = True, trainability: bool = True) -> AZScores:
    """The shared computation behind the three proxies (one forward pass; backward only if ``trainability``)."""
    x, _ = check_batch(batch)
    work = copy.deepcopy(net).train()
    for m in work.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
    gen = torch.Generator().manual_seed(seed)
    if init:
        _az_init(work, gen)
    x = x.to(net_device(work))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # any dropout or other global-RNG use in forward stays deterministic
        with torch.set_grad_enabled(trainability):
            feats, rule = _record_features(work, x)
        entropies = [_entropy(f) for f in feats]
        reasons: dict[str, str] = {}
        expressivity = _nan_to_neg_inf(sum(entropies))
        progressivity = trainable = None
        if len(feats) < 2:
            why = f"needs at least 2 stage features; {type(net).__name__} gives {len(feats)} ({rule} rule)"
            reasons = {"progressivity": why, "trainability": why}
        else:
            progressivity = _nan_to_neg_inf(min(b - a for a, b in itertools.pairwise(entropies)))
            if trainability:
                pairs = [_pair_trainability(feats[i - 1], feats[i], gen, i) for i in reversed(range(1, len(feats)))]
                trainable = _nan_to_neg_inf(sum(pairs) / len(pairs))
    return AZScores(entropies, expressivity, progressivity, trainable, reasons, rule)


def az_nas_scores(net: nn.Module, batch: Batch, seed: int = 0, init: bool = True) -> dict[str, float]:
    """``{"expressivity", "progressivity", "trainability"}`` of ``net`` on ``batch`` from one shared pass.

    Scores the definition does not cover are ``nan`` (e.g. progressivity with a single stage feature); raises
    `ProxyNotApplicableError` when no stage feature is found or trainability's Jacobian is undefined. See the
    module docstring for the formulas, the stage rule and ``init``.
    """
    r = _az_nas(net, batch, seed=seed, init=init, trainability=True)
    return {
        "expressivity": r.expressivity,
        "progressivity": math.nan if r.progressivity is None else r.progressivity,
        "trainability": math.nan if r.trainability is None else r.trainability,
    }


@register_proxy("az_expressivity")
def az_expressivity(net: nn.Module, batch: Batch, seed: int = 0, init: bool = True) -> float:
    """AZ-NAS expressivity: sum over stage features of the entropy of their normalised covariance spectrum."""
    return _az_nas(net, batch, seed=seed, init=init, trainability=False).expressivity


@register_proxy("az_progressivity")
def az_progressivity(net: nn.Module, batch: Batch, seed: int = 0, init: bool = True) -> float:
    """AZ-NAS progressivity: the smallest increase of spectrum entropy between consecutive stage features."""
    r = _az_nas(net, batch, seed=seed, init=init, trainability=False)
    if r.progressivity is None:
        raise ProxyNotApplicableError("az_progressivity " + r.reasons["progressivity"])
    return r.progressivity


@register_proxy("az_trainability")
def az_trainability(net: nn.Module, batch: Batch, seed: int = 0, init: bool = True) -> float:
    """AZ-NAS trainability: mean over consecutive stages of ``2 - sigma - 1/sigma`` (Jacobian spectral norm)."""
    r = _az_nas(net, batch, seed=seed, init=init, trainability=True)
    if r.trainability is None:
        raise ProxyNotApplicableError("az_trainability " + r.reasons["trainability"])
    return r.trainability


# ---- the rank aggregation ---------------------------------------------------------------------------------------


def ranks_among(reference: Sequence[float], values: Sequence[float]) -> np.ndarray:
    """The 1-based ascending rank of each of ``values`` among ``reference``: ``#(ref < v) + (#(ref == v) + 1) / 2``.

    For ``values`` = ``reference`` these are the average ranks of the pool (ties share the mean of the ranks they
    span, scipy's ``rankdata`` default); a value outside the reference is placed among it by the same formula
    (below every reference value: 0.5). NaN counts as ``-inf`` on both sides.
    """
    ref, v = (np.asarray(a, dtype=np.float64) for a in (reference, values))
    ref, v = np.sort(np.where(np.isnan(ref), -np.inf, ref)), np.where(np.isnan(v), -np.inf, v)
    below = np.searchsorted(ref, v, side="left")
    equal = np.searchsorted(ref, v, side="right") - below
    return below + (equal + 1) / 2


def az_aggregate(
    scores: Mapping[str, Sequence[float]], reference: Mapping[str, Sequence[float]] | None = None
) -> list[float]:
    """AZ-NAS non-linear rank aggregation of per-arch scores: one value per arch, higher is better.

    ``scores`` maps each proxy name to its values over the same ``N`` archs (e.g. ``az_expressivity``,
    ``az_progressivity``, ``az_trainability`` and ``flops``). The aggregate of arch ``j`` is

        ``A_j = sum over proxies k of log(rank_k(j) / N)``

    with ``rank_k(j)`` in ``1..N`` the ascending rank of arch ``j``'s value of proxy ``k`` (``N`` = the best), as
    the official code does with ``np.log(scipy.stats.rankdata(v) / N)``. Every column is ranked ascending,
    complexity (FLOPs) included: within a budget more FLOPs ranks higher, as in the paper. Ties get the average
    of the ranks they span (scipy's default). NaN counts as ``-inf`` (the official code turns a NaN score into
    ``-inf`` before ranking): it ranks lowest, tied with other NaN and ``-inf`` values. ``A_j <= 0``.

    With ``reference`` (the same names, values over ``N`` reference archs), each arch is ranked among the
    reference instead (`ranks_among`), so archs can be scored one at a time against a fixed pool; for the
    reference archs themselves the result equals the pool aggregate.
    """
    if not scores:
        raise ValueError("az_aggregate needs at least one proxy column")
    pool = scores if reference is None else reference
    if set(pool) != set(scores):
        raise ValueError(f"reference columns {sorted(pool)} differ from the scores' {sorted(scores)}")
    lengths = {name: len(col) for name, col in scores.items()}
    n_ref = {name: len(col) for name, col in pool.items()}
    n, big_n = next(iter(lengths.values())), next(iter(n_ref.values()))
    if n < 1 or any(v != n for v in lengths.values()) or big_n < 1 or any(v != big_n for v in n_ref.values()):
        raise ValueError(f"az_aggregate needs columns of one common, non-zero length; got lengths {lengths}"
                         + ("" if reference is None else f" and reference lengths {n_ref}"))
    total = np.zeros(n)
    for name, col in scores.items():
        total += np.log(ranks_among(pool[name], col) / big_n)
    return total.tolist()


__all__ = [
    "AZScores",
    "az_aggregate",
    "az_expressivity",
    "az_nas_scores",
    "az_progressivity",
    "az_trainability",
    "find_blocks",
    "ranks_among",
]
