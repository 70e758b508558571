"""Differentiable NAS: DARTS, GDAS, DrNAS and ProxylessNAS on cell and entangled spaces, with TangleNAS weight
superposition.

- mixers (registry `MIXERS`): `SoftmaxMixer` (DARTS), `DirichletMixer` (DrNAS), `GumbelMixer` (GDAS),
  `BinaryGateMixer` (ProxylessNAS);
- `ArchParameters` (one alpha per decision) and the bilevel `Architect` (first or second order);
- selection: `argmax_arch`, `perturbation_select`;
- the training strategies ``darts``, ``gdas``, ``drnas``, ``proxyless`` for ``sn.train(space, data, strategy=...)``:
  each file registers its class in `supernet.training.STRATEGIES`, and importing them here is what registers them
  (``import supernet`` imports this package);
- `superposition` (re-exported from the space layers) runs any space under mixture weights.
"""

from ..space.superposition import Mix, active_mixes, superposition
from .alphas import ArchParameters
from .architect import Architect
from .base import GradientOptions, GradientStrategy
from .darts import DARTS
from .drnas import DrNAS, DrNASOptions
from .gdas import GDAS, GDASOptions
from .mixers import MIXERS, DirichletMixer, GumbelMixer, Mixer, SoftmaxMixer, concentration, register_mixer
from .plot import plot_alpha_history
from .proxyless import BinaryGateMixer, ProxylessNAS, ProxylessOptions
from .selection import argmax_arch, perturbation_pick, perturbation_select, projected_mixture, selection_order

__all__ = [
    "DARTS",
    "GDAS",
    "ArchParameters",
    "Architect",
    "BinaryGateMixer",
    "DirichletMixer",
    "DrNAS",
    "DrNASOptions",
    "GDASOptions",
    "GradientOptions",
    "GradientStrategy",
    "GumbelMixer",
    "MIXERS",
    "Mix",
    "Mixer",
    "ProxylessNAS",
    "ProxylessOptions",
    "SoftmaxMixer",
    "active_mixes",
    "argmax_arch",
    "concentration",
    "perturbation_pick",
    "perturbation_select",
    "plot_alpha_history",
    "projected_mixture",
    "register_mixer",
    "selection_order",
    "superposition",
]
