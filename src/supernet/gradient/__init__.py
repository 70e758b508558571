"""Differentiable NAS: DARTS, GDAS and DrNAS on cell and entangled spaces, with TangleNAS weight superposition.

- mixers: `SoftmaxMixer` (DARTS), `DirichletMixer` (DrNAS), `GumbelMixer` (GDAS);
- `ArchParameters` (one alpha per decision) and the bilevel `Architect` (first or second order);
- selection: `argmax_arch`, `perturbation_select`;
- strategies ``darts``, ``gdas``, ``drnas`` for ``sn.train(space, data, strategy=...)``;
- `superposition` (re-exported from the space layers) runs any space under mixture weights.
"""

from ..space.layers import Mix, active_mixes, superposition
from .alphas import ArchParameters
from .architect import Architect
from .base import GradientOptions, GradientStrategy
from .darts import DARTS
from .drnas import DrNAS, DrNASOptions
from .gdas import GDAS, GDASOptions
from .mixers import DirichletMixer, GumbelMixer, Mixer, SoftmaxMixer, concentration
from .plot import plot_alpha_history
from .selection import argmax_arch, perturbation_pick, perturbation_select, projected_mixture, selection_order

__all__ = [
    "DARTS",
    "GDAS",
    "ArchParameters",
    "Architect",
    "DirichletMixer",
    "DrNAS",
    "DrNASOptions",
    "GDASOptions",
    "GradientOptions",
    "GradientStrategy",
    "GumbelMixer",
    "Mix",
    "Mixer",
    "SoftmaxMixer",
    "active_mixes",
    "argmax_arch",
    "concentration",
    "perturbation_pick",
    "perturbation_select",
    "plot_alpha_history",
    "projected_mixture",
    "selection_order",
    "superposition",
]
