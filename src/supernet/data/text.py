"""Character-level text datasets (Tiny Shakespeare is embedded in the package)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

Split = Literal["train", "val"]

# The file ships inside the package so the default demo needs no external data.
_EMBEDDED_TEXT = "tinyshakespeare.txt"
SHAKESPEARE_CHARS = 1_115_394  # characters in the embedded corpus


def _code_points(text: str) -> np.ndarray:
    """Unicode code points of ``text`` as uint32, without a Python-level loop."""
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


@dataclass(repr=False, eq=False)
class CharText:
    """A character-level corpus: a vocabulary and train/val token id streams.

    Attributes:
        vocab: The sorted distinct characters; token id ``i`` is ``vocab[i]``.
        train: 1-D int64 tensor of token ids for training.
        val: 1-D int64 tensor of token ids for validation (may be empty).
        dataset: Which named dataset this is, as the ``data:`` config that rebuilds it (e.g.
            ``{"name": "shakespeare", "val_fraction": 0.1}``); recorded in ``run.json``. None for other text.
    """

    vocab: str
    train: torch.Tensor
    val: torch.Tensor
    dataset: dict[str, Any] | None = None
    _codes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.vocab:
            raise ValueError("vocab must contain at least one character")
        if len(set(self.vocab)) != len(self.vocab) or list(self.vocab) != sorted(self.vocab):
            raise ValueError("vocab must be the sorted distinct characters of the text")
        self._codes = _code_points(self.vocab)

    def __repr__(self) -> str:
        return (
            f"CharText(vocab_size={self.vocab_size}, train_tokens={self.train.numel()}, val_tokens={self.val.numel()})"
        )

    @property
    def vocab_size(self) -> int:
        """Number of distinct characters (the size of a model's embedding/output layer)."""
        return len(self.vocab)

    def encode(self, text: str) -> torch.Tensor:
        """Turn ``text`` into a 1-D int64 tensor of token ids.

        Raises:
            ValueError: if ``text`` contains a character outside the vocabulary.
        """
        codes = _code_points(text)
        ids = np.searchsorted(self._codes, codes)
        ids_in_range = np.minimum(ids, len(self._codes) - 1)
        unknown = self._codes[ids_in_range] != codes
        if unknown.any():
            position = int(np.argmax(unknown))
            raise ValueError(
                f"character {text[position]!r} at position {position} is not in the vocabulary "
                f"of {self.vocab_size} characters"
            )
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Turn a 1-D sequence of token ids back into text.

        Raises:
            ValueError: if an id is outside ``[0, vocab_size)``.
        """
        array = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        array = array.reshape(-1).astype(np.int64)
        bad = (array < 0) | (array >= self.vocab_size)
        if bad.any():
            raise ValueError(f"token id {int(array[np.argmax(bad)])} is outside [0, {self.vocab_size})")
        return self._codes[array].astype("<u4").tobytes().decode("utf-32-le")

    def get_batch(
        self,
        split: Split,
        batch_size: int,
        block_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``batch_size`` random windows of ``block_size`` tokens (nanoGPT style).

        Returns:
            ``(x, y)``, both int64 of shape ``(batch_size, block_size)``, where ``y`` is ``x``
            shifted one token ahead: ``y[:, t]`` is the token that follows ``x[:, t]``.

        Raises:
            ValueError: for a split other than ``"train"``/``"val"``, a non-positive size, or a
                split with fewer than ``block_size + 1`` tokens.
        """
        if split == "train":
            data = self.train
        elif split == "val":
            data = self.val
        else:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be positive, got {batch_size} and {block_size}")
        if data.numel() <= block_size:
            raise ValueError(
                f"block_size={block_size} needs at least {block_size + 1} tokens, but the "
                f"{split!r} split has {data.numel()}"
            )
        starts = torch.randint(data.numel() - block_size, (batch_size,), generator=generator)
        positions = starts[:, None] + torch.arange(block_size)
        x, y = data[positions], data[positions + 1]
        return x.to(device), y.to(device)


def char_text(text: str, val_fraction: float = 0.1) -> CharText:
    """Build a :class:`CharText` from any text: the first ``1 - val_fraction`` is train, the rest val.

    The split is contiguous (not shuffled) so validation text is unseen prose, not interleaved lines.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not text:
        raise ValueError("text is empty")
    vocab = "".join(sorted(set(text)))
    corpus = CharText(vocab, torch.empty(0, dtype=torch.int64), torch.empty(0, dtype=torch.int64))
    ids = corpus.encode(text)
    n_train = int(len(ids) * (1.0 - val_fraction))
    corpus.train, corpus.val = ids[:n_train], ids[n_train:]
    return corpus


def char_text_file(path: str | Path, val_fraction: float = 0.1, encoding: str = "utf-8") -> CharText:
    """Build a :class:`CharText` from a text file (see :func:`char_text`)."""
    return char_text(Path(path).read_text(encoding=encoding), val_fraction)


def shakespeare_text() -> str:
    """The raw Tiny Shakespeare corpus embedded in the package (`SHAKESPEARE_CHARS` characters)."""
    return resources.files(__package__).joinpath(_EMBEDDED_TEXT).read_text(encoding="utf-8")


def shakespeare(val_fraction: float = 0.1) -> CharText:
    """Tiny Shakespeare as a char-level dataset (65 characters); first 90% train, last 10% val."""
    corpus = char_text(shakespeare_text(), val_fraction)
    corpus.dataset = {"name": "shakespeare", "val_fraction": val_fraction}
    return corpus
