"""CIFAR-10 for ranking benchmarks, following the NAS-Bench-201 protocol.

NAS-Bench-201 ranks archs by their accuracy on a *held-out part of the training set* (its ``cifar10-valid``
split); the test set is never used for ranking. `cifar10_splits` does the same: it decodes the training JPEG
tarball once (cached by `supernet.data.image_tarball`), optionally at 16x16 and on a class-balanced subset, and
splits it, stratified and seeded, into a part to train the supernet on and a held-out part to rank with.

`RandomCropFlip` is the standard augmentation (random crop after zero padding, random horizontal flip) on batched
tensors, drawing every random number from the ``torch.Generator`` it is given, so training stays reproducible
and resumable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import CIFAR10_MEAN, CIFAR10_STD, ArrayDataset, image_tarball, normalize_images

TRAIN_TARBALL = "cifar10-train.tar.gz"
DATA_ENV = "SUPERNET_DATA"


class Normalize:
    """uint8 ``(N, 3, H, W)`` images -> float32 normalised with the CIFAR-10 mean/std (picklable callable)."""

    def __init__(self, mean: tuple[float, ...] = CIFAR10_MEAN, std: tuple[float, ...] = CIFAR10_STD) -> None:
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_images(x, self.mean, self.std) if x.dtype == torch.uint8 else x.float()


class RandomCropFlip:
    """Random crop of the original size after ``padding`` zero pixels on each side, then a random horizontal flip.

    Works on a batch ``(N, C, H, W)`` of any dtype; each image gets its own offsets and flip. On normalised
    images zero padding is the dataset's mean colour. All randomness comes from ``generator`` (on the CPU).
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.padding, self.flip = int(padding), bool(flip)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        if self.padding:
            p = self.padding
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (N, H, 1)
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (N, 1, W)
            batch = torch.arange(n, device=x.device)[:, None, None]
            x = padded[batch, :, rows, cols].permute(0, 3, 1, 2)  # advanced indices first: (N, H, W, C)
        if self.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"


@dataclass
class ImageSplits:
    """A supernet-training split and a held-out ranking split of one image training set (uint8 NCHW tensors)."""

    train: ArrayDataset
    holdout: ArrayDataset
    info: dict[str, Any]

    def task(self, augment: bool = True, padding: int = 4) -> Any:
        """A `supernet.training.ClassificationTask`: train on ``train`` (augmented), evaluate on ``holdout``."""
        from ..training.tasks import ClassificationTask

        return ClassificationTask(
            self.train, self.holdout, transform=Normalize(), augment=RandomCropFlip(padding) if augment else None
        )


def find_tarball(data_dir: str | Path | None, name: str = TRAIN_TARBALL) -> Path:
    """Locate ``name`` in ``data_dir`` or ``data_dir/images`` (``data_dir`` defaults to ``$SUPERNET_DATA``).

    Raises:
        FileNotFoundError: naming every place looked at and how to point at the data.
    """
    root = data_dir if data_dir is not None else os.environ.get(DATA_ENV)
    if root is None:
        raise FileNotFoundError(
            f"no image data given: pass --data-dir (a folder holding {name} or images/{name}) or set ${DATA_ENV}"
        )
    root = Path(root).expanduser()
    candidates = [root, root / name, root / "images" / name]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{name} not found; looked at: {', '.join(str(c) for c in candidates[1:])}")


def cifar10_splits(
    data_dir: str | Path | None = None,
    size: int | None = None,
    per_class: int | None = None,
    holdout_fraction: float = 0.5,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    tarball: str | Path | None = None,
) -> ImageSplits:
    """CIFAR-10 training images split into a supernet-training part and a held-out ranking part.

    Args:
        data_dir: folder with ``cifar10-train.tar.gz`` (or ``images/cifar10-train.tar.gz``); default ``$SUPERNET_DATA``.
        size: resize to ``size x size`` (16 for the cheap preset); None keeps 32x32.
        per_class: keep this many images per class (class-balanced subset, seeded); None keeps all 5,000.
        holdout_fraction: share of each class held out for ranking (NAS-Bench-201's cifar10-valid uses 0.5).
        seed: seeds the subset and the split.
        cache_dir: where decoded arrays are cached (default ``$SUPERNET_CACHE`` or ``~/.cache/supernet``).
        tarball: an explicit tarball path (overrides ``data_dir``).
    """
    path = Path(tarball) if tarball is not None else find_tarball(data_dir)
    data = image_tarball(path, size=size, subset=per_class, seed=seed, cache_dir=cache_dir)
    full = data.to_dataset(normalize=False)
    train, holdout = full.split(holdout_fraction, seed=seed)
    info = {
        "tarball": str(path),
        "size": int(full.x.shape[-1]),
        "per_class": per_class,
        "holdout_fraction": holdout_fraction,
        "train_images": len(train),
        "holdout_images": len(holdout),
        "seed": seed,
        "classes": list(full.classes),
    }
    return ImageSplits(train, holdout, info)
