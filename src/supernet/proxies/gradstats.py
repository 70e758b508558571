"""Statistics of gradients and feature maps across data: ``zico`` (ZiCo) and ``meco`` (MeCo).

Both take a freshly initialised network in train mode and one batch; neither changes the network's parameters
(gradients are taken with ``torch.autograd.grad``; ``meco`` only runs a forward pass). Dropout, if any, draws
from a generator seeded with ``seed`` (the global RNG state is restored afterwards), so both are deterministic
for a given seed and batch.

- ``zico`` (Li et al., ICLR 2023): the inverse coefficient of variation of each weight's gradient across
  mini-batches, log-summed per layer. The batch is split into two halves that play the role of the reference
  implementation's two mini-batches (``evolution_search.py``'s ``--maxbatch`` default is 2).
- ``meco`` (Jiang et al., NeurIPS 2023): the minimum eigenvalue of the Pearson correlation matrix of each
  layer's feature map on one sample, summed over layers; ``opt=True`` gives MeCo_opt (a random subset of 8 rows
  per layer, rescaled).

Details follow the authors' code: SLDGroup/ZiCo ``ZeroShotProxy/compute_zico.py`` and HamsterMimi/MeCo
``correlation/NAS_Bench_201.py`` (``meco`` and ``meco_opt``) with
``zero-cost-nas/foresight/pruners/measures/meco.py``; the functions' docstrings list the deliberate differences.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn

from .common import Batch, ProxyNotApplicableError, check_batch, hooked, net_device, prunable_layers, task_loss
from .registry import register_proxy


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run the body with the global RNG (and ``device``'s, if CUDA) seeded, restoring the states afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@register_proxy("zico")
def zico(net: nn.Module, batch: Batch, seed: int = 0) -> float:
    """ZiCo: sum over Conv/Linear layers of log(sum over weights of mean |g| / std g) across two half-batches.

    The batch is split into halves ``x[:B//2]`` and ``x[B//2:]`` (the reference code's two mini-batches; for an
    odd ``B`` the second half has one more sample). ``g_1``, ``g_2`` are the gradients of the task loss (mean over
    each half) with respect to a layer's weight, computed independently (BatchNorm in train mode normalises each
    half with its own statistics). Per weight ``k``: ``mu_k = (|g_1k| + |g_2k|) / 2`` and ``sigma_k`` the
    population standard deviation of ``(g_1k, g_2k)`` (``|g_1k - g_2k| / 2``, numpy's ``np.std``). Then

    ``zico = sum over layers l with S_l > 0 of log(S_l)``,  ``S_l = sum over weights k of layer l with
    sigma_k > 0 of mu_k / sigma_k``.

    As in the reference code, weights whose gradient does not vary (``sigma_k = 0``, e.g. zero in both halves)
    are left out of ``S_l`` rather than divided by zero, and a layer with ``S_l = 0`` adds nothing (so the
    proxy is 0 when no layer has a varying gradient). Paper: Li, Yang, Bhardwaj, Marculescu, "ZiCo: Zero-shot
    NAS via inverse Coefficient of Variation on Gradients", ICLR 2023.

    Deliberate differences from ``ZeroShotProxy/compute_zico.py``: one batch split in two instead of two loader
    batches; Conv1d/Conv3d layers are scored along with Conv2d and Linear (the package's `prunable_layers`);
    a layer whose weight gets no gradient is skipped (the reference code fails); statistics in float64. Needs a
    batch of at least 2 samples (`ProxyNotApplicableError` otherwise).
    """
    x, y = check_batch(batch)
    n = x.shape[0]
    if n < 2:
        raise ProxyNotApplicableError(
            f"zico compares gradients across two halves of the batch; it needs at least 2 samples, got {n}"
        )
    weights = [m.weight for m in prunable_layers(net)]
    device = net_device(net)
    halves: list[tuple[torch.Tensor | None, ...]] = []
    with _seeded(seed, device):
        for start, stop in ((0, n // 2), (n // 2, n)):
            xi, yi = x[start:stop].to(device), y[start:stop].to(device)
            halves.append(torch.autograd.grad(task_loss(net(xi), yi), weights, allow_unused=True))
    total = 0.0
    for g1, g2 in zip(*halves, strict=True):
        if g1 is None or g2 is None:
            continue
        g = torch.stack([g1.detach().reshape(-1), g2.detach().reshape(-1)]).double()
        sigma = g.std(dim=0, correction=0)
        varying = sigma > 0
        s = float((g.abs().mean(dim=0)[varying] / sigma[varying]).sum())
        if s > 0:
            total += math.log(s)
    return total


@register_proxy("meco")
def meco(net: nn.Module, batch: Batch, seed: int = 0, opt: bool = False, subset: int = 8) -> float:
    """MeCo: sum over Conv/Linear layers of the minimum eigenvalue of the correlation of one sample's feature map.

    One forward pass of the whole batch (train mode, no gradients); forward hooks on every Conv and Linear layer
    take the output of the *first sample* of the batch, ``F = output[0]``, reshaped to ``(F.shape[0], -1)``:
    rows are the first non-batch dimension, columns everything after it. For a Conv output ``(B, C, H, W)`` the
    rows are the ``C`` channels and the columns the ``H*W`` positions; for a Linear output ``(B, T, C)`` on
    tokens (transformers) the rows are the ``T`` tokens and the columns the ``C`` features, exactly what the
    reference code computes on such an output. ``P`` = Pearson correlation matrix of the rows (a ``rows x rows``
    matrix, ``torch.corrcoef``), with NaN/inf entries (rows constant over the columns) set to 0. Then

    ``meco = sum over hooked layer calls of lambda_min(P)``;
    ``opt=True`` (MeCo_opt): ``sum of (n / subset) * lambda_min(P_subset)``, ``P_subset`` the correlation of
    ``subset`` (8) rows drawn at random without replacement from the ``n`` rows (a generator seeded with ``seed``,
    one draw per layer call in call order); a layer with ``n <= subset`` rows uses all of them (factor 1).

    A layer whose output has a single column (a Linear layer on flat ``(B, F)`` features, e.g. a classifier
    head) has an all-NaN correlation, which the reference code zeroes to a contribution of 0; it is skipped
    here (same value). A network where every hooked output is flat raises `ProxyNotApplicableError`.
    Paper: Jiang, Wang, Bie, "MeCo: Zero-Shot NAS with One Data and Single Forward Pass via Minimum Eigenvalue
    of Correlation", NeurIPS 2023. Use a batch of one sample to match the paper's one-data setting; with more,
    only the first sample is scored and the others enter through BatchNorm's batch statistics, as in the
    reference code.

    Deliberate differences from HamsterMimi/MeCo ``correlation/NAS_Bench_201.py``: the reference hooks *every*
    module (activations, BatchNorm, containers and the whole network, so a feature map is often counted several
    times); here only Conv (1d/2d/3d) and Linear outputs are scored, once per call. Eigenvalues come from
    ``eigvalsh`` in float64 (the reference takes the real part of ``torch.linalg.eig`` in float32); MeCo_opt's
    subset is drawn from ``seed`` (the reference uses Python's ``random``) and tolerates fewer than 8 rows.
    """
    x, _ = check_batch(batch)
    if subset < 2:
        raise ValueError(f"meco's subset must be at least 2 rows, got {subset}")
    layers = prunable_layers(net)
    device = net_device(net)
    feats: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor) and output.dim() >= 2:
            feats.append(output.detach()[0])

    with hooked(layers, hook), torch.no_grad(), _seeded(seed, device):
        net(x.to(device))
    gen = torch.Generator().manual_seed(seed)
    total, scored = 0.0, 0
    for f in feats:
        rows = f.reshape(f.shape[0], -1).double()
        if rows.shape[1] < 2:
            continue
        n, factor = rows.shape[0], 1.0
        if opt and n > subset:
            rows = rows[torch.randperm(n, generator=gen)[:subset].to(rows.device)]
            factor = n / subset
        corr = torch.corrcoef(rows).reshape(rows.shape[0], rows.shape[0])  # one row: corrcoef gives a 0-d tensor
        corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0).cpu()
        total += factor * float(torch.linalg.eigvalsh(corr).min())
        scored += 1
    if not scored:
        raise ProxyNotApplicableError(
            "meco correlates the rows of a layer's feature map over its positions; every Conv/Linear output of "
            f"{type(net).__name__} is a flat feature vector (one position)"
        )
    return total
