"""Performance predictors over architectures: fit on a few measured archs, predict the rest.

- `ArchEncoder`: one-hot / scaled encoding derived from ``space.choices``.
- `GBDTPredictor`: LightGBM on the encoding (GBDT-NAS); an ensemble over bagging seeds gives uncertainty.
- `PretrainedGBDTPredictor`: pretrained on free statistics (params, FLOPs, proxies) first (FBNetV3 idea).

All share ``fit(archs, y) -> self`` and ``predict(archs, return_std=False)``; ``predictor.objective()`` is a
callable ``arch -> predicted value`` for `supernet.searching`. Each predictor file registers its class in
`PREDICTORS` with ``@register_predictor(name)`` (``gbdt``, ``pretrained_gbdt``); importing the files here registers
them. LightGBM and scipy are imported only when a booster is trained or loaded, so listing the predictors is cheap.
"""

from .base import PREDICTORS, NotFittedError, Predictor, register_predictor
from .encoding import ArchEncoder, choices_from_archs
from .gbdt import DEFAULT_PARAMS, GBDTPredictor
from .io import load_predictor, save_predictor
from .metrics import kendall_tau, spearman
from .pretrain import PretrainedGBDTPredictor

__all__ = [
    "DEFAULT_PARAMS",
    "ArchEncoder",
    "GBDTPredictor",
    "NotFittedError",
    "PREDICTORS",
    "PretrainedGBDTPredictor",
    "Predictor",
    "choices_from_archs",
    "kendall_tau",
    "load_predictor",
    "register_predictor",
    "save_predictor",
    "spearman",
]
