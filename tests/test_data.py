"""Tests for supernet.data: char text, digits, and the cached image-tarball loader."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from supernet.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    ArrayDataset,
    CharText,
    char_text,
    char_text_file,
    digits,
    image_tarball,
    normalize_images,
    shakespeare,
)
from supernet.data import images as images_module

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ---------------------------------------------------------------- text


@pytest.fixture(scope="module")
def shakespeare_text() -> CharText:
    return shakespeare()


def test_shakespeare_vocab_and_split(shakespeare_text: CharText) -> None:
    assert shakespeare_text.vocab_size == 65
    assert list(shakespeare_text.vocab) == sorted(set(shakespeare_text.vocab))
    total = shakespeare_text.train.numel() + shakespeare_text.val.numel()
    assert total == 1_115_394
    assert shakespeare_text.train.numel() == int(total * 0.9)
    assert shakespeare_text.train.dtype == torch.int64
    assert shakespeare_text.decode(shakespeare_text.train[:14]) == "First Citizen:"


def test_encode_decode_round_trip(shakespeare_text: CharText) -> None:
    text = "To be, or not to be: that is the question.\nROMEO!"
    ids = shakespeare_text.encode(text)
    assert ids.dtype == torch.int64 and ids.shape == (len(text),)
    assert shakespeare_text.decode(ids) == text
    assert shakespeare_text.decode(ids.tolist()) == text
    assert shakespeare_text.encode("").numel() == 0
    # The whole validation split survives a round trip.
    val_text = shakespeare_text.decode(shakespeare_text.val)
    assert torch.equal(shakespeare_text.encode(val_text), shakespeare_text.val)


def test_encode_unknown_character_names_it(shakespeare_text: CharText) -> None:
    with pytest.raises(ValueError, match="'#'"):
        shakespeare_text.encode("abc#def")
    with pytest.raises(ValueError, match="outside"):
        shakespeare_text.decode([0, 65])


def test_get_batch_shapes_and_shift(shakespeare_text: CharText) -> None:
    x, y = shakespeare_text.get_batch("train", batch_size=5, block_size=16, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    # Each row is a real 17-token window of the split: y's last token follows x's last token in the data.
    windows = shakespeare_text.train.unfold(0, 17, 1)
    for row_x, row_y in zip(x, y, strict=True):
        window = torch.cat([row_x, row_y[-1:]])
        assert (windows == window).all(dim=1).any()


def test_get_batch_is_deterministic_with_seeded_generator(shakespeare_text: CharText) -> None:
    first = shakespeare_text.get_batch("val", 4, 8, generator=torch.Generator().manual_seed(123))
    second = shakespeare_text.get_batch("val", 4, 8, generator=torch.Generator().manual_seed(123))
    other = shakespeare_text.get_batch("val", 4, 8, generator=torch.Generator().manual_seed(124))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.equal(first[0], other[0])


def test_get_batch_errors() -> None:
    corpus = char_text("abcdefghij", val_fraction=0.3)  # 7 train tokens, 3 val tokens
    assert corpus.train.numel() == 7 and corpus.val.numel() == 3
    with pytest.raises(ValueError, match="'train' or 'val'"):
        corpus.get_batch("test", 2, 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 4 tokens"):
        corpus.get_batch("val", 2, 3)
    with pytest.raises(ValueError, match="positive"):
        corpus.get_batch("train", 0, 2)
    x, y = corpus.get_batch("val", 3, 2)  # the largest block the val split allows
    assert x.shape == (3, 2)
    assert torch.equal(x, corpus.val[:2].expand(3, 2)) and torch.equal(y, corpus.val[1:].expand(3, 2))


def test_char_text_from_user_text_and_file(tmp_path: Path) -> None:
    text = "hello wörld\n" * 20
    corpus = char_text(text)
    assert corpus.vocab == "".join(sorted(set(text)))
    assert corpus.decode(torch.cat([corpus.train, corpus.val])) == text
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    from_file = char_text_file(path, val_fraction=0.5)
    assert from_file.vocab == corpus.vocab
    assert from_file.train.numel() == from_file.val.numel() == len(text) // 2
    with pytest.raises(ValueError, match="val_fraction"):
        char_text(text, val_fraction=1.0)
    with pytest.raises(ValueError, match="empty"):
        char_text("")


# ---------------------------------------------------------------- digits


def test_digits_shapes_ranges_and_determinism() -> None:
    train, val = digits()
    assert len(train) + len(val) == 1797
    assert len(val) == pytest.approx(0.2 * 1797, abs=10)
    assert train.x.shape[1:] == val.x.shape[1:] == (1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert train.classes == [str(d) for d in range(10)]
    assert set(val.y.tolist()) == set(range(10))  # stratified: every class is in val
    train_again, val_again = digits()
    assert torch.equal(val.x, val_again.x) and torch.equal(train.y, train_again.y)
    _, val_other_seed = digits(seed=1)
    assert not torch.equal(val.x, val_other_seed.x)


def test_array_dataset_validation_and_indexing() -> None:
    data = ArrayDataset(torch.arange(6.0).view(6, 1), torch.tensor([0, 1, 0, 1, 0, 1]), ["a", "b"])
    x, y = data[3]
    assert float(x) == 3.0 and int(y) == 1
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    assert next(iter(loader))[0].shape == (4, 1)
    with pytest.raises(ValueError, match="int64"):
        ArrayDataset(torch.zeros(2, 1), torch.zeros(2, dtype=torch.int32), ["a"])
    with pytest.raises(ValueError, match="examples"):
        ArrayDataset(torch.zeros(3, 1), torch.zeros(2, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="labels"):
        ArrayDataset(torch.zeros(2, 1), torch.tensor([0, 2]), ["a", "b"])


# ---------------------------------------------------------------- image tarballs

CLASS_COLORS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "ship": (30, 30, 200)}


def _jpeg_bytes(color: tuple[int, int, int], size: int = 16) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _add_file(archive: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    archive.addfile(info, io.BytesIO(payload))


def _make_tarball(path: Path, per_class: dict[str, int], image_size: int = 16) -> Path:
    """A tiny CIFAR-like tarball: train/<class>/NNNN.jpg, one solid colour per class."""
    with tarfile.open(path, "w:gz") as archive:
        # Write classes in non-sorted order, as real archives do.
        for class_name in sorted(per_class, reverse=True):
            for index in range(per_class[class_name]):
                payload = _jpeg_bytes(CLASS_COLORS[class_name], image_size)
                _add_file(archive, f"train/{class_name}/{index:04d}.jpg", payload)
        _add_file(archive, "train/README.txt", b"not an image")
    return path


@pytest.fixture
def small_tarball(tmp_path: Path) -> Path:
    return _make_tarball(tmp_path / "tiny-train.tar.gz", {"cat": 4, "dog": 3, "ship": 5})


def test_labels_match_class_folders(small_tarball: Path, tmp_path: Path) -> None:
    data = image_tarball(small_tarball, cache_dir=tmp_path / "cache")
    assert data.classes == ["cat", "dog", "ship"]
    assert data.images.shape == (12, 16, 16, 3) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [0] * 4 + [1] * 3 + [2] * 5
    for image, label in zip(data.images, data.labels, strict=True):
        expected = np.array(CLASS_COLORS[data.classes[label]])
        assert np.abs(image.reshape(-1, 3).mean(axis=0) - expected).max() < 6  # JPEG is lossy
    assert not data.from_cache


def test_size_downsamples(small_tarball: Path, tmp_path: Path) -> None:
    data = image_tarball(small_tarball, size=8, cache_dir=tmp_path / "cache")
    assert data.images.shape == (12, 8, 8, 3)
    assert np.abs(data.images[0].reshape(-1, 3).mean(axis=0) - np.array(CLASS_COLORS["cat"])).max() < 6


def test_subset_is_class_balanced_and_seeded(tmp_path: Path) -> None:
    tarball = _make_tarball(tmp_path / "balanced.tar.gz", {"cat": 6, "dog": 6, "ship": 6}, image_size=4)
    cache = tmp_path / "cache"
    data = image_tarball(tarball, subset=2, seed=3, cache_dir=cache)
    assert np.bincount(data.labels).tolist() == [2, 2, 2]
    # A class smaller than the subset keeps all its images.
    uneven = _make_tarball(tmp_path / "uneven.tar.gz", {"cat": 1, "dog": 4, "ship": 4}, image_size=4)
    assert np.bincount(image_tarball(uneven, subset=3, cache_dir=cache).labels).tolist() == [1, 3, 3]

    # Same seed picks the same files; the subset choice is visible through which members get decoded.
    def chosen_names(seed: int) -> list[str]:
        members = images_module._choose_subset(images_module._read_members(tarball), 2, seed)
        return [name for _, name, _ in members]

    assert chosen_names(3) == chosen_names(3)
    assert any(chosen_names(3) != chosen_names(seed) for seed in range(4, 10))


def test_second_load_hits_cache(small_tarball: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    first = image_tarball(small_tarball, size=8, cache_dir=cache)
    cache_files = list(cache.glob("*.npz"))
    assert len(cache_files) == 1 and cache_files[0].name.startswith("tiny-")
    assert not list(cache.glob("*.tmp"))  # the atomic write left no temp file behind

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tarball was decoded again instead of read from the cache")

    monkeypatch.setattr(images_module, "_load_from_tarball", no_decoding)
    second = image_tarball(small_tarball, size=8, cache_dir=cache)
    assert second.from_cache
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(first.labels, second.labels) and second.labels.dtype == np.int64
    assert second.classes == first.classes
    # Different options are a different cache entry, so they must decode.
    with pytest.raises(AssertionError, match="decoded again"):
        image_tarball(small_tarball, size=4, cache_dir=cache)


def test_cache_invalidated_when_tarball_changes(small_tarball: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    image_tarball(small_tarball, cache_dir=cache)
    _make_tarball(small_tarball, {"cat": 1, "dog": 1})  # same path, new content
    reloaded = image_tarball(small_tarball, cache_dir=cache)
    assert not reloaded.from_cache and len(reloaded) == 2


def test_corrupt_cache_is_ignored(small_tarball: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    image_tarball(small_tarball, cache_dir=cache)
    (cache_file,) = cache.glob("*.npz")
    cache_file.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable image cache"):
        data = image_tarball(small_tarball, cache_dir=cache)
    assert not data.from_cache and len(data) == 12
    assert image_tarball(small_tarball, cache_dir=cache).from_cache  # rewritten


def test_cache_dir_env_var_and_no_cache(small_tarball: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERNET_CACHE", str(tmp_path / "env-cache"))
    image_tarball(small_tarball)
    assert len(list((tmp_path / "env-cache").glob("*.npz"))) == 1
    monkeypatch.setenv("SUPERNET_CACHE", str(tmp_path / "unused"))
    assert not image_tarball(small_tarball, use_cache=False).from_cache
    assert not (tmp_path / "unused").exists()


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="not found"):
        image_tarball(tmp_path / "missing.tar.gz", cache_dir=cache)

    not_a_tar = tmp_path / "junk.tar.gz"
    not_a_tar.write_bytes(b"this is not a tarball" * 10)
    with pytest.raises(ValueError, match="not a readable tar archive"):
        image_tarball(not_a_tar, cache_dir=cache)

    no_classes = tmp_path / "flat.tar.gz"
    with tarfile.open(no_classes, "w:gz") as archive:
        _add_file(archive, "0001.jpg", _jpeg_bytes((1, 2, 3)))  # no class folder
        _add_file(archive, "train/cat/notes.txt", b"text")
    with pytest.raises(ValueError, match="no images in class folders"):
        image_tarball(no_classes, cache_dir=cache)

    corrupt_jpeg = tmp_path / "corrupt.tar.gz"
    with tarfile.open(corrupt_jpeg, "w:gz") as archive:
        _add_file(archive, "train/cat/0001.jpg", _jpeg_bytes((1, 2, 3)))
        _add_file(archive, "train/cat/0002.jpg", b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ValueError, match=r"0002\.jpg"):
        image_tarball(corrupt_jpeg, cache_dir=cache)

    mixed_sizes = tmp_path / "mixed.tar.gz"
    with tarfile.open(mixed_sizes, "w:gz") as archive:
        _add_file(archive, "train/cat/0001.jpg", _jpeg_bytes((1, 2, 3), size=16))
        _add_file(archive, "train/dog/0001.jpg", _jpeg_bytes((1, 2, 3), size=8))
    with pytest.raises(ValueError, match="pass size="):
        image_tarball(mixed_sizes, cache_dir=cache)
    assert image_tarball(mixed_sizes, size=8, cache_dir=cache).images.shape == (2, 8, 8, 3)

    valid = _make_tarball(tmp_path / "ok.tar.gz", {"cat": 1})
    for bad_size in (0, -4):
        with pytest.raises(ValueError, match="size"):
            image_tarball(valid, size=bad_size, cache_dir=cache)
    with pytest.raises(TypeError, match="size"):
        image_tarball(valid, size=2.5, cache_dir=cache)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="subset"):
        image_tarball(valid, subset=0, cache_dir=cache)


def test_to_dataset_normalizes_nchw(small_tarball: Path, tmp_path: Path) -> None:
    data = image_tarball(small_tarball, cache_dir=tmp_path / "cache")
    dataset = data.to_dataset()
    assert dataset.x.shape == (12, 3, 16, 16) and dataset.x.dtype == torch.float32
    assert dataset.classes == data.classes and torch.equal(dataset.y, torch.from_numpy(data.labels))
    pixel = data.images[0, 0, 0].astype(np.float64) / 255.0
    expected = (pixel - np.array(CIFAR10_MEAN)) / np.array(CIFAR10_STD)
    assert np.allclose(dataset.x[0, :, 0, 0].numpy(), expected, atol=1e-5)

    raw = data.to_dataset(normalize=False)
    assert raw.x.dtype == torch.uint8 and raw.x.shape == (12, 3, 16, 16)
    unit = normalize_images(raw.x, mean=(0, 0, 0), std=(1, 1, 1))
    assert float(unit.min()) >= 0.0 and float(unit.max()) <= 1.0
    assert torch.allclose(normalize_images(raw.x), dataset.x)
    with pytest.raises(ValueError, match="one per channel"):
        normalize_images(raw.x, mean=(0.5,), std=(0.5,))

    train, val = dataset.split(0.25, seed=0)
    assert len(train) + len(val) == 12 and set(val.y.tolist()) == {0, 1, 2}


def test_real_cifar10_test_subset(tmp_path: Path) -> None:
    tarball = SHARED_DATA / "images" / "cifar10-test.tar.gz"
    if not tarball.is_file():
        pytest.skip(f"shared data not available at {SHARED_DATA}")
    data = image_tarball(tarball, subset=5, size=16, cache_dir=tmp_path)
    assert data.classes == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    assert data.images.shape == (50, 16, 16, 3)
    assert np.bincount(data.labels).tolist() == [5] * 10
    assert 20 < data.images.mean() < 235  # real pictures, not blank
    assert image_tarball(tarball, subset=5, size=16, cache_dir=tmp_path).from_cache
