"""Datasets for supernet demos and benchmarks.

- :func:`shakespeare` / :func:`char_text`: char-level text (Tiny Shakespeare ships with the package).
- :func:`digits`: scikit-learn's 8x8 digits as tensors.
- :func:`image_tarball`: class-folder image tarballs such as CIFAR-10 JPEGs, decoded once and cached.
"""

from supernet.data.digits import digits, digits_dataset
from supernet.data.images import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ArrayDataset,
    ImageData,
    default_cache_dir,
    image_tarball,
    images_to_tensor,
    normalize_images,
    stratified_split,
)
from supernet.data.text import CharText, char_text, char_text_file, shakespeare, shakespeare_text

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "ArrayDataset",
    "CharText",
    "ImageData",
    "char_text",
    "char_text_file",
    "default_cache_dir",
    "digits",
    "digits_dataset",
    "image_tarball",
    "images_to_tensor",
    "normalize_images",
    "shakespeare",
    "shakespeare_text",
    "stratified_split",
]
