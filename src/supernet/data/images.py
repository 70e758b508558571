"""Image classification data: in-memory tensor datasets and a cached loader for class-folder tarballs.

A tarball holds images as ``<anything>/<class>/<file>.jpg`` (for example CIFAR-10 as
``train/airplane/0001.jpg``). :func:`image_tarball` decodes the images straight from the compressed
archive with PIL, optionally downsamples and subsets them, and caches the decoded uint8 arrays as an
``.npz`` file so the next load takes well under a second instead of decoding again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..files import atomic_write

# Per-channel statistics of the CIFAR-10 training set, on pixels scaled to [0, 1].
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Bump when the cache layout or the decoding changes, so stale caches are not reused.
CACHE_FORMAT_VERSION = 1
# Below this many images a progress bar is just noise.
_PROGRESS_MIN_IMAGES = 2000


@dataclass(eq=False)
class ArrayDataset:
    """An in-memory classification dataset; usable directly with ``torch.utils.data.DataLoader``.

    Attributes:
        x: Inputs, first dimension indexes examples (float, or uint8 for raw images).
        y: int64 class indices, shape ``(N,)``.
        classes: Class names; ``classes[y[i]]`` names example ``i``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.y.dtype != torch.int64 or self.y.ndim != 1:
            raise ValueError(f"y must be a 1-D int64 tensor, got {self.y.dtype} with shape {tuple(self.y.shape)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}) to index classes")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]

    def __repr__(self) -> str:
        return f"ArrayDataset(n={len(self)}, x={tuple(self.x.shape)} {self.x.dtype}, classes={len(self.classes)})"

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> ArrayDataset:
        """The examples at ``indices``, in that order."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        return ArrayDataset(self.x[index], self.y[index], list(self.classes))

    def split(self, val_fraction: float, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        """Deterministic stratified ``(train, val)`` split; each class gives ``val_fraction`` of its examples."""
        train_idx, val_idx = stratified_split(self.y.numpy(), val_fraction, seed)
        return self.subset(train_idx), self.subset(val_idx)

    def to(self, device: torch.device | str) -> ArrayDataset:
        """A copy with ``x`` and ``y`` on ``device``."""
        return ArrayDataset(self.x.to(device), self.y.to(device), list(self.classes))


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into ``(train, val)``, taking ``round(val_fraction * n_c)`` of each class.

    Both index arrays are sorted, so each split keeps the original example order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val_parts = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        val_parts.append(members[: round(val_fraction * len(members))])
    is_val = np.zeros(len(labels), dtype=bool)
    if val_parts:
        is_val[np.concatenate(val_parts)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images ``(N, H, W, 3)`` -> contiguous uint8 tensor ``(N, 3, H, W)`` (no scaling)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images shaped (N, H, W, 3), got {images.shape}")
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def normalize_images(
    images: torch.Tensor,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
) -> torch.Tensor:
    """uint8 images ``(N, C, H, W)`` -> float32 ``(pixel / 255 - mean) / std`` per channel.

    Use ``mean=(0, 0, 0), std=(1, 1, 1)`` to only scale to ``[0, 1]``.
    """
    if images.ndim != 4:
        raise ValueError(f"expected images shaped (N, C, H, W), got {tuple(images.shape)}")
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values (one per channel), got {len(mean)} and {len(std)}")
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean_t) / std_t


@dataclass(eq=False)
class ImageData:
    """Decoded images from :func:`image_tarball`, ordered by class, then by file name.

    Attributes:
        images: uint8 array ``(N, H, W, 3)``, RGB.
        labels: int64 array ``(N,)``, indices into ``classes``.
        classes: Sorted class folder names.
        from_cache: True when the arrays were read from the cache instead of decoded.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"ImageData(n={len(self)}, images={self.images.shape}, classes={self.classes})"

    def to_dataset(
        self,
        normalize: bool = True,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
    ) -> ArrayDataset:
        """Tensors in NCHW layout: float32 normalized with ``mean``/``std`` (default), or raw uint8.

        ``normalize=False`` keeps 1 byte per pixel (4x less memory); normalize each batch later with
        :func:`normalize_images`.
        """
        x = images_to_tensor(self.images)
        if normalize:
            x = normalize_images(x, mean, std)
        return ArrayDataset(x, torch.from_numpy(self.labels.astype(np.int64)), list(self.classes))


def default_cache_dir() -> Path:
    """``$SUPERNET_CACHE`` if set, else ``~/.cache/supernet``."""
    override = os.environ.get("SUPERNET_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "supernet"


def image_tarball(
    path: str | Path,
    *,
    size: int | None = None,
    subset: int | None = None,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    progress: bool | None = None,
) -> ImageData:
    """Load a tarball (``.tar``, ``.tar.gz``, ...) of class-folder images, e.g. ``train/<class>/0001.jpg``.

    The class of an image is the folder that directly contains it; classes are sorted by name and
    labelled ``0..K-1``. Images are decoded with PIL straight from the archive (nothing is extracted to
    disk) and converted to RGB.

    Args:
        path: The tarball.
        size: Resize every image to ``size x size`` pixels (PIL ``BOX`` filter, i.e. area averaging,
            when shrinking; ``BILINEAR`` when enlarging). ``None`` keeps the stored size, which must
            then be the same for all images.
        subset: Keep this many images per class (class-balanced), chosen at random with ``seed``.
            A class with fewer images keeps all of them. ``None`` keeps everything.
        seed: Seed for choosing the subset.
        cache_dir: Where decoded arrays are cached; default :func:`default_cache_dir`.
        use_cache: Read and write the cache (False always decodes and writes nothing).
        progress: Show a progress bar while decoding; ``None`` shows it for large loads on a terminal.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for a bad ``size``/``subset``, an unreadable archive, an archive without
            ``<class>/<image>`` members, an image that does not decode, or mixed image sizes without ``size``.
    """
    _check_positive_int("size", size)
    _check_positive_int("subset", subset)
    tarball = Path(path).expanduser().resolve()
    if not tarball.is_file():
        raise FileNotFoundError(f"image tarball not found: {tarball}")
    if not use_cache:
        return _load_from_tarball(tarball, size=size, subset=subset, seed=seed, progress=progress)

    cache_file = _cache_path(tarball, size=size, subset=subset, seed=seed, cache_dir=cache_dir)
    cached = _read_cache(cache_file)
    if cached is not None:
        return cached
    data = _load_from_tarball(tarball, size=size, subset=subset, seed=seed, progress=progress)
    try:
        _write_cache(cache_file, data)
    except OSError as error:  # a read-only or full disk should not stop training
        warnings.warn(f"could not write image cache {cache_file}: {error}", stacklevel=2)
    return data


def _check_positive_int(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int or None, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value}")


def _cache_path(
    tarball: Path, *, size: int | None, subset: int | None, seed: int, cache_dir: str | Path | None
) -> Path:
    """Cache file keyed by the tarball's identity (path, byte size, mtime) and every load option."""
    stat = tarball.stat()
    subset_seed = int(seed) if subset is not None else None  # the seed changes nothing without a subset
    key = [str(tarball), stat.st_size, stat.st_mtime_ns, size, subset, subset_seed, CACHE_FORMAT_VERSION]
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    stem = tarball.name.split(".")[0] or "images"
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return directory / f"{stem}-{digest}.npz"


def _read_cache(cache_file: Path) -> ImageData | None:
    """The cached arrays, or None when there is no usable cache file (a broken one is ignored)."""
    if not cache_file.is_file():
        return None
    try:
        with np.load(cache_file, allow_pickle=False) as archive:
            images, labels, classes = archive["images"], archive["labels"], archive["classes"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        warnings.warn(f"ignoring unreadable image cache {cache_file}: {error}", stacklevel=3)
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        warnings.warn(f"ignoring malformed image cache {cache_file}", stacklevel=3)
        return None
    return ImageData(images, labels.astype(np.int64), [str(c) for c in classes], from_cache=True)


def _write_cache(cache_file: Path, data: ImageData) -> None:
    """Write atomically: a temp file in the same directory, then ``os.replace``, so readers never see half a file."""
    # Uncompressed: JPEG-decoded pixels barely compress, and loading stays ~0.5 s for 50k images.
    atomic_write(
        cache_file,
        lambda handle: np.savez(
            handle, images=data.images, labels=data.labels, classes=np.array(data.classes, dtype=str)
        ),
        binary=True,
    )


def _read_members(tarball: Path) -> list[tuple[str, str, bytes]]:
    """``(class_name, member_name, encoded_bytes)`` for every image file, streamed in archive order."""
    members = []
    try:
        with tarfile.open(tarball, mode="r|*") as archive:
            for member in archive:
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 2 or parts[-1].startswith("."):
                    continue
                if not parts[-1].lower().endswith(IMAGE_SUFFIXES):
                    continue
                handle = archive.extractfile(member)
                if handle is not None:
                    members.append((parts[-2], member.name, handle.read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise ValueError(f"{tarball} is not a readable tar archive: {error}") from error
    return members


def _choose_subset(
    members: list[tuple[str, str, bytes]], per_class: int | None, seed: int
) -> list[tuple[str, str, bytes]]:
    """Sort by (class, name) and keep ``per_class`` random members of each class (all if None)."""
    members = sorted(members, key=lambda m: (m[0], m[1]))
    if per_class is None:
        return members
    rng = np.random.default_rng(seed)
    class_names = np.array([m[0] for m in members])
    chosen: list[int] = []
    for class_name in sorted(set(class_names.tolist())):
        indices = np.flatnonzero(class_names == class_name)
        if len(indices) > per_class:
            indices = np.sort(rng.choice(indices, size=per_class, replace=False))
        chosen.extend(indices.tolist())
    return [members[i] for i in chosen]


def _decode_image(blob: bytes, size: int | None) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as image:
        rgb = image.convert("RGB")
    if size is not None and rgb.size != (size, size):
        shrinking = size <= min(rgb.size)
        rgb = rgb.resize((size, size), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    return np.asarray(rgb)


def _load_from_tarball(
    tarball: Path, *, size: int | None, subset: int | None, seed: int, progress: bool | None
) -> ImageData:
    """Decode the (subset of) images in ``tarball``; the slow path that the cache avoids."""
    members = _choose_subset(_read_members(tarball), subset, seed)
    if not members:
        raise ValueError(
            f"{tarball} holds no images in class folders (expected members like 'train/<class>/0001.jpg' "
            f"with suffix {'/'.join(IMAGE_SUFFIXES)})"
        )
    classes = sorted({class_name for class_name, _, _ in members})
    label_of = {class_name: label for label, class_name in enumerate(classes)}
    labels = np.array([label_of[class_name] for class_name, _, _ in members], dtype=np.int64)

    if progress is None:  # tqdm's disable=None means "show only on a terminal"
        disable_bar = None if len(members) >= _PROGRESS_MIN_IMAGES else True
    else:
        disable_bar = not progress
    images: np.ndarray | None = None
    bar = tqdm(members, desc=f"decoding {tarball.name}", unit="img", leave=False, disable=disable_bar)
    for index, (_, name, blob) in enumerate(bar):
        try:
            pixels = _decode_image(blob, size)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            raise ValueError(f"could not decode image {name!r} in {tarball}: {error}") from error
        if images is None:
            images = np.empty((len(members), *pixels.shape), dtype=np.uint8)
        elif pixels.shape != images.shape[1:]:
            raise ValueError(
                f"image {name!r} in {tarball} is {pixels.shape[1]}x{pixels.shape[0]} but earlier ones are "
                f"{images.shape[2]}x{images.shape[1]}; pass size= to resize all images to one size"
            )
        images[index] = pixels
    assert images is not None  # members is non-empty
    return ImageData(images, labels, classes)
