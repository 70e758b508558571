"""scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), ready as tensors."""

from __future__ import annotations

import numpy as np
import torch

from supernet.data.images import ArrayDataset

# sklearn stores digit pixels as integers 0..16.
_DIGITS_MAX_PIXEL = 16.0


def digits_dataset() -> ArrayDataset:
    """All 1,797 digits: x float32 ``(N, 1, 8, 8)`` in ``[0, 1]``, y int64 in ``0..9``."""
    from sklearn.datasets import load_digits  # imported lazily: sklearn takes a while to import

    bunch = load_digits()
    x = torch.from_numpy((bunch.images / _DIGITS_MAX_PIXEL).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return ArrayDataset(x, y, [str(name) for name in bunch.target_names])


def digits(val_fraction: float = 0.2, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """The digits as a deterministic stratified ``(train, val)`` split (see :meth:`ArrayDataset.split`)."""
    return digits_dataset().split(val_fraction, seed)
