"""Architecture parameters: one alpha vector per decision of a space (a shared decision has one vector)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..space import SuperModule
from ..space.choice import Choice
from ..space.superposition import Mix
from .mixers import Mixer


class ArchParameters:
    """``alpha[name]`` (1-D, one entry per option) for every decision with more than one option.

    Args:
        space: the supernet.
        init_std: alphas start at ``init_std * N(0, 1)`` (DARTS uses 1e-3).
        generator: torch generator for the initialisation (reproducible runs).
        device: where the alphas live.
        decisions: restrict to these decision names (default: all with at least two options).
    """

    def __init__(
        self,
        space: SuperModule,
        init_std: float = 1e-3,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
        decisions: list[str] | None = None,
    ) -> None:
        all_decisions = space.decisions
        names = decisions if decisions is not None else [n for n, c in all_decisions.items() if len(c.options) > 1]
        unknown = [n for n in names if n not in all_decisions]
        if unknown:
            raise ValueError(f"unknown decisions {unknown}; this space has: {', '.join(all_decisions)}")
        self.choices: dict[str, Choice] = {n: all_decisions[n] for n in names}
        self.alpha: dict[str, torch.nn.Parameter] = {}
        for n, c in self.choices.items():
            init = init_std * torch.randn(len(c.options), generator=generator)
            self.alpha[n] = torch.nn.Parameter(init.to(device))

    def parameters(self) -> list[torch.nn.Parameter]:
        """The alpha tensors in decision order."""
        return list(self.alpha.values())

    def sample(self, mixer: Mixer, progress: float, generator: torch.Generator) -> dict[Choice, Mix]:
        """Mixture weights of every decision for one forward pass (differentiable w.r.t. alpha)."""
        return {self.choices[n]: mixer.sample(a, progress, generator) for n, a in self.alpha.items()}

    def probs(self, mixer: Mixer) -> dict[str, list[float]]:
        """Deterministic option probabilities per decision, as plain floats."""
        return {n: [float(v) for v in mixer.probs(a).cpu()] for n, a in self.alpha.items()}

    def argmax_arch(self, space: SuperModule, mixer: Mixer | None = None) -> dict[str, Any]:
        """The arch taking each decision's most likely option (decisions without alpha keep their active one)."""
        arch = dict(space.arch)
        for n, a in self.alpha.items():
            p = a.detach() if mixer is None else mixer.probs(a)
            arch[n] = self.choices[n].options[int(p.argmax())]
        return space.validate(arch)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``{"alpha.<name>": tensor}`` for checkpoints."""
        return {f"alpha.{n}": a.detach().cpu().clone() for n, a in self.alpha.items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Restore `state_tensors` output (shapes must match)."""
        for n, a in self.alpha.items():
            key = f"alpha.{n}"
            if key not in tensors:
                raise KeyError(f"checkpoint lacks architecture parameters {key!r}")
            t = tensors[key]
            if t.shape != a.shape:
                raise ValueError(f"{key}: checkpoint shape {tuple(t.shape)} differs from {tuple(a.shape)}")
            with torch.no_grad():
                a.copy_(t.to(a.device))
