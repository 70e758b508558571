"""Picking the final arch from architecture parameters: argmax, or perturbation-based selection.

Perturbation-based selection (Wang et al., "Rethinking Architecture Selection in Differentiable NAS", 2021):
decisions are settled one at a time. For the current decision each option in turn is masked (its mixture
weight set to 0, the others left as they are), and the supernet's validation score is measured. The option
whose removal hurts most is kept; the decision is then fixed (one-hot) and the supernet is fine-tuned
briefly before the next decision.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..space import SuperModule
from ..space.choice import Choice
from ..space.superposition import Mix
from .alphas import ArchParameters
from .mixers import Mixer

Score = Callable[[dict[Choice, Mix]], float]
"""``score(mixes)``: the supernet's validation score (higher is better) under these mixture weights."""


def argmax_arch(space: SuperModule, alphas: ArchParameters, mixer: Mixer | None = None) -> dict[str, Any]:
    """Each decision's most probable option."""
    return alphas.argmax_arch(space, mixer)


def perturbation_select(
    space: SuperModule,
    alphas: ArchParameters,
    mixer: Mixer,
    score: Score,
    finetune: Callable[[dict[Choice, Mix]], None] | None = None,
    order: str | Sequence[str] = "sequential",
    seed: int = 0,
    log: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Perturbation-based selection of every decision that has alphas.

    Args:
        space: the trained supernet.
        alphas: its architecture parameters (their probabilities weight the undecided decisions).
        mixer: gives the deterministic probabilities (`Mixer.probs`).
        score: validation score of the supernet under given mixture weights (higher is better, e.g.
            accuracy or minus the loss).
        finetune: called after each decision with the current mixture (decided decisions one-hot), to
            train the supernet briefly; None skips fine-tuning.
        order: ``"sequential"`` (space order), ``"random"`` (shuffled with ``seed``, as in the paper) or an
            explicit list of decision names.
        log: if given, one entry per decision is appended: ``{"decision", "scores", "picked"}``.

    Returns:
        The selected arch (decisions without alphas keep their active option).
    """
    names = selection_order(alphas, order, seed)
    decided: dict[str, int] = {}
    for n in names:
        best, scores = perturbation_pick(alphas, mixer, n, decided, score)
        decided[n] = best
        if log is not None:
            log.append({"decision": n, "scores": scores, "picked": alphas.choices[n].options[best]})
        if finetune is not None:
            finetune(projected_mixture(alphas, mixer, decided))
    arch = dict(space.arch)
    for n, i in decided.items():
        arch[n] = alphas.choices[n].options[i]
    return space.validate(arch)


def selection_order(alphas: ArchParameters, order: str | Sequence[str], seed: int = 0) -> list[str]:
    """The order in which perturbation selection settles the decisions."""
    names = list(alphas.alpha)
    if isinstance(order, str):
        if order == "random":
            random.Random(seed).shuffle(names)
        elif order != "sequential":
            raise ValueError(f"order must be 'sequential', 'random' or a list of decision names, got {order!r}")
        return names
    if sorted(order) != sorted(names):
        raise ValueError(f"order must list each decision with alphas exactly once: {names}")
    return list(order)


def projected_mixture(
    alphas: ArchParameters,
    mixer: Mixer,
    decided: Mapping[str, int],
    masked: tuple[str, int] | None = None,
) -> dict[Choice, Mix]:
    """Deterministic mixture weights: decided decisions one-hot (hard), the others their probabilities.

    ``masked = (decision, option index)`` sets that option's weight to 0 (no renormalisation, as in the paper).
    """
    out = {}
    for n, a in alphas.alpha.items():
        c = alphas.choices[n]
        if n in decided:
            w = torch.zeros(len(c.options), device=a.device)
            w[decided[n]] = 1.0
            out[c] = Mix(w, decided[n])
            continue
        w = mixer.probs(a).clone()
        if masked is not None and masked[0] == n:
            w[masked[1]] = 0.0
        out[c] = Mix(w)
    return out


def perturbation_pick(
    alphas: ArchParameters, mixer: Mixer, name: str, decided: Mapping[str, int], score: Score
) -> tuple[int, list[float]]:
    """Mask each option of decision ``name`` in turn; return the option whose removal hurts most and the scores."""
    c = alphas.choices[name]
    scores = []
    with torch.no_grad():
        for i in range(len(c.options)):
            scores.append(float(score(projected_mixture(alphas, mixer, decided, (name, i)))))
    return min(range(len(scores)), key=lambda i: scores[i]), scores
