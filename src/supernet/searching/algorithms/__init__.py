"""Search algorithms (`ALGORITHMS`): each builds the Optuna sampler that proposes archs; one file per algorithm.

The built-in ones register here, explicitly; a user's own register themselves with ``@ALGORITHMS.register(name)``
from their own module (see `base`).
"""

# isort: off
from . import random, evolution, nsga2  # noqa: F401  (each registers its algorithm; this order is the listing order)
# isort: on
from .base import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    SamplerRequest,
    SearchAlgorithm,
    default_population,
    trial_is_feasible,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "SamplerRequest",
    "SearchAlgorithm",
    "default_population",
    "trial_is_feasible",
]
