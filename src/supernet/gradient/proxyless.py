"""``proxyless``: ProxylessNAS (Cai et al., ICLR 2019): binary gates, two paths per alpha step, a latency loss.

* **Weight step**: per decision one path is sampled from ``p = softmax(alpha)`` and only it runs (one subnet, the
  memory of one path), as the paper's binarised gates.
* **Alpha step**: per decision two distinct paths ``a, b`` are sampled from ``p`` (without replacement); the gate
  picks one of them with the renormalised probabilities ``q = softmax(alpha_a, alpha_b)``; both run (their outputs
  weighted 1 and 0, `supernet.space.superposition.Mix.paths`), so the loss's gradient reaches both gates and the
  BinaryConnect estimator ``dL/d alpha_i = sum_j dL/dg_j q_j (delta_ij - q_i)`` updates ``alpha_a`` and ``alpha_b``
  (straight-through on ``q``). After the Adam step the two are shifted by one constant so that
  ``logsumexp(alpha_a, alpha_b)`` is what it was: the other paths' probabilities do not move (the paper's rescale).
  For entangled sizes the two sampled sizes are mixed by weight superposition, weights 1 and 0, the same way.
* **Latency loss** (optional): with a cost table (``latency_table``: a JSON written by ``supernet latency`` or
  `supernet.cost.CostTable.save`; any additive cost table works, e.g. FLOPs), the alpha loss is
  ``L_CE + latency_weight * E[latency] / latency_target`` with ``E[latency] = c0 + sum_d sum_i p_{d,i} T_d[i]``
  (the paper's expected latency, differentiable in alpha; a decision that only some archs use, such as a block's
  kernel beyond a depth choice, has its term weighted by the probability that it is active, `CostTable.moments`);
  ``latency_target`` defaults to the midpoint of the table's range. With ``latency_loss="hinge"`` the term is
  ``latency_weight * max(0, E[latency] / latency_target - 1)``: no pull below the target, so the target acts as a
  budget (the search spends it on accuracy) rather than as a scale of an ever-present pull toward faster archs (the
  paper's additive form, ``"linear"``, the default). The expected latency is logged as ``expected_latency``.

Deliberate differences: the alpha step is first-order only (as the paper), Adam settings as the other gradient
strategies; the table is fitted to whole timed subnets (`supernet.cost.latency_table`) rather than per-layer
timings.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field

from ..cost import CostTable
from ..space.choice import Choice
from ..space.superposition import Mix
from ..training.context import TrainContext
from ..training.strategies.base import register_strategy
from .base import GradientOptions, GradientStrategy
from .mixers import Mixer, register_mixer


@register_mixer("binary")
class BinaryGateMixer:
    """Binary gates (ProxylessNAS): one path sampled from softmax(alpha), straight-through on its probability."""

    name = "binary"
    hard = True

    def sample(self, alpha: torch.Tensor, progress: float, generator: torch.Generator) -> Mix:
        p = torch.softmax(alpha.float(), dim=-1)
        index = int(torch.multinomial(p.detach().cpu(), 1, generator=generator))
        one_hot = torch.zeros_like(p)
        one_hot[index] = 1.0
        return Mix(one_hot - p.detach() + p, index)

    def two_paths(self, alpha: torch.Tensor, generator: torch.Generator) -> tuple[Mix, tuple[int, int]]:
        """Two distinct paths ``(a, b)`` sampled from softmax(alpha); the gate opens ``a`` or ``b`` with the
        renormalised probabilities, straight-through; only ``a`` and ``b`` are computed."""
        p = torch.softmax(alpha.detach().float().cpu(), dim=-1)
        a, b = (int(i) for i in torch.multinomial(p, 2, replacement=False, generator=generator))
        q = torch.softmax(alpha[[a, b]].float(), dim=-1)
        first = float(torch.rand((), generator=generator)) < float(q[0].detach())
        gate = torch.tensor([1.0, 0.0] if first else [0.0, 1.0], device=q.device)
        weights = torch.zeros(alpha.shape[0], device=q.device, dtype=q.dtype).index_put(
            (torch.tensor([a, b], device=q.device),), gate - q.detach() + q
        )
        return Mix(weights, None, (a, b)), (a, b)

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        return torch.softmax(alpha.detach(), dim=-1)

    def regularizer(self, alphas: list[torch.Tensor]) -> torch.Tensor | None:
        return None


class ProxylessOptions(GradientOptions):
    """ProxylessNAS options: the latency loss; the alpha optimizer as the paper's code (Adam, lr 1e-3, beta1 0, no
    weight decay), so alphas of paths not sampled in a step do not move."""

    alpha_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the architecture parameters")
    alpha_weight_decay: float = Field(0.0, ge=0, description="Adam (L2) weight decay of alpha")
    alpha_betas: tuple[float, float] = (0.0, 0.999)

    latency_table: str | None = Field(None, description="cost table JSON (supernet latency) for the latency loss")
    latency_weight: float = Field(0.1, ge=0, description="weight of E[latency] / target in the alpha loss")
    latency_target: float | None = Field(None, gt=0, description="latency scale (default: the table's midpoint)")
    latency_loss: Literal["linear", "hinge"] = Field(
        "linear",
        description="linear: weight * E[lat] / target (the paper's); hinge: weight * max(0, E[lat] / target - 1)",
    )


@register_strategy("proxyless")
class ProxylessNAS(GradientStrategy):
    """ProxylessNAS: binary gates (one path per weight step, two per alpha step) and an expected-latency loss."""

    Options = ProxylessOptions

    def make_mixer(self) -> Mixer:
        return BinaryGateMixer()

    def setup(self, ctx: TrainContext) -> None:
        super().setup(ctx)
        o = self.options
        self.table = CostTable.load(o.latency_table) if o.latency_table else None
        if self.table is not None:
            missing = sorted(set(self.table.decisions) - set(self.alphas.alpha))
            if missing:
                raise ValueError(f"proxyless: the latency table's decisions {missing} are not decisions of this space")
            low, high = self.table.extremes()
            self.target = o.latency_target or (low + high) / 2
            self.architect.extra = self.latency_term
        self._pairs: dict[str, tuple[int, int, float]] = {}

    def expected_latency(self) -> torch.Tensor:
        """``E[latency]`` under ``softmax(alpha)`` (differentiable in alpha)."""
        assert self.table is not None
        probs = {n: torch.softmax(self.alphas.alpha[n].double(), dim=-1) for n in self.table.decisions}
        mean, _ = self.table.moments(probs)
        return mean if torch.is_tensor(mean) else torch.tensor(mean, dtype=torch.float64)

    def latency_term(self) -> torch.Tensor:
        """The alpha loss's latency term: ``latency_weight * E[latency] / target``, or with the hinge loss
        ``latency_weight * max(0, E[latency] / target - 1)``."""
        ratio = self.expected_latency() / self.target
        if self.options.latency_loss == "hinge":
            ratio = torch.relu(ratio - 1.0)
        return self.options.latency_weight * ratio

    def alpha_sample(self, progress: float) -> dict[Choice, Mix]:
        mixes = self.sample(progress)  # decided decisions stay one-hot
        self._pairs = {}
        for name, alpha in self.alphas.alpha.items():
            if name in self.decided:
                continue
            mix, (a, b) = self.mixer.two_paths(alpha, self.generator)  # type: ignore[attr-defined]
            mixes[self.alphas.choices[name]] = mix
            self._pairs[name] = (a, b, float(torch.logsumexp(alpha.detach()[[a, b]], 0)))
        return mixes

    def after_alpha_step(self) -> None:
        with torch.no_grad():
            for name, (a, b, before) in self._pairs.items():
                alpha = self.alphas.alpha[name]
                offset = torch.logsumexp(alpha[[a, b]], 0) - before
                alpha[[a, b]] -= offset  # the other paths keep their probabilities

    def step_metrics(self, progress: float) -> dict[str, Any]:
        if getattr(self, "table", None) is None:
            return {}
        with torch.no_grad():
            return {"expected_latency": float(self.expected_latency())}


__all__ = ["BinaryGateMixer", "ProxylessNAS", "ProxylessOptions"]
