"""Tasks: what a supernet is trained and evaluated on (batches, loss, metrics).

A `Task` hides the data format from the training loop and the strategies: it draws random training batches
from a seeded ``torch.Generator``, yields deterministic evaluation batches, and computes the loss and metrics
from the model's outputs. `LMTask` wraps a char-level corpus (next-token prediction), `ClassificationTask`
wraps tensors (with optional per-batch transform and training-only augmentation).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


class Task(ABC):
    """The data and objective of a run. Subclasses implement batches; loss/metrics work on flattened logits."""

    kind: str = "task"
    #: Which named dataset the task's data is, as the ``data:`` config that rebuilds it; recorded in ``run.json``
    #: (``task.dataset``) so a run directory can be searched and exported without the user passing the data.
    #: None when the data came from elsewhere (then the user passes ``task=``).
    dataset: dict[str, Any] | None = None

    @abstractmethod
    def train_batch(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Batch:
        """``batch_size`` random training examples ``(inputs, targets)`` drawn with ``generator``."""

    @abstractmethod
    def eval_batches(
        self,
        split: str = "val",
        batch_size: int = 64,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> Iterator[Batch]:
        """Deterministic batches covering ``split`` ("train" or "val") in order, at most ``max_batches``."""

    @abstractmethod
    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        """An input batch of the right shape and dtype (for FLOPs and latency)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """A JSON description recorded in ``run.json``."""

    def train_size(self) -> int | None:
        """How many training examples `train_examples` can index (None: this task only draws random batches).

        Strategies that choose their training examples (PA&DA's data importance) need it.
        """
        return None

    def train_examples(
        self, indices: torch.Tensor, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Batch:
        """The training examples at ``indices`` (``0 <= i < train_size()``), augmented with ``generator``."""
        raise NotImplementedError(f"{type(self).__name__} draws random batches only: it cannot index its examples")

    def _identity(self) -> dict[str, Any]:
        return {} if self.dataset is None else {"dataset": dict(self.dataset)}

    def val_batch(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Batch:
        """``batch_size`` random validation examples (for bilevel strategies); defaults to training data."""
        return self.train_batch(batch_size, generator, device)

    def flat(self, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits as rows ``(N, classes)`` and targets ``(N,)`` (an LM has one row per token)."""
        if outputs.ndim < 2:
            raise ValueError(f"expected logits with a class dimension, got shape {tuple(outputs.shape)}")
        return outputs.reshape(-1, outputs.shape[-1]), targets.reshape(-1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross entropy (computed in float32 even under autocast)."""
        logits, y = self.flat(outputs, targets)
        return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Sums over the batch: ``loss_sum`` (cross entropy), ``correct`` (top-1), ``count``."""
        logits, y = self.flat(outputs, targets)
        loss_sum = F.cross_entropy(logits.float(), y, reduction="sum")
        correct = (logits.argmax(dim=-1) == y).sum()
        return {"loss_sum": float(loss_sum), "correct": float(correct), "count": float(y.numel())}


class LMTask(Task):
    """Next-token prediction on a `supernet.data.CharText` with windows of ``block_size`` tokens.

    Training batches are random windows (``CharText.get_batch``); evaluation batches are consecutive
    non-overlapping windows of the split, so evaluation is deterministic and covers the split in order.
    """

    kind = "lm"

    def __init__(self, text: Any, block_size: int) -> None:
        for attr in ("train", "val", "vocab_size"):
            if not hasattr(text, attr):
                raise TypeError(f"LMTask needs a CharText-like object with .train/.val/.vocab_size, got {text!r}")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.text = text
        self.block_size = int(block_size)
        for split in ("train", "val"):
            n = getattr(text, split).numel()
            if n <= self.block_size:
                raise ValueError(
                    f"the {split!r} split has {n} tokens; block_size={self.block_size} needs at least "
                    f"{self.block_size + 1}"
                )

    def _split(self, split: str) -> torch.Tensor:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return getattr(self.text, split)

    def _windows(self, data: torch.Tensor, starts: torch.Tensor, device: torch.device | str) -> Batch:
        pos = starts[:, None] + torch.arange(self.block_size)
        return data[pos].to(device), data[pos + 1].to(device)

    def train_size(self) -> int:
        """Training windows: one example per start position (``train tokens - block_size``)."""
        return self.text.train.numel() - self.block_size

    def train_examples(
        self, indices: torch.Tensor, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Batch:
        """The windows starting at ``indices``."""
        return self._windows(self.text.train, indices, device)

    def train_batch(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Batch:
        starts = torch.randint(self.train_size(), (batch_size,), generator=generator)
        return self.train_examples(starts, generator, device)

    def val_batch(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Batch:
        data = self.text.val
        starts = torch.randint(data.numel() - self.block_size, (batch_size,), generator=generator)
        return self._windows(data, starts, device)

    def eval_batches(
        self,
        split: str = "val",
        batch_size: int = 64,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> Iterator[Batch]:
        data = self._split(split)
        starts = torch.arange(0, data.numel() - self.block_size, self.block_size)
        for i, lo in enumerate(range(0, len(starts), batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            yield self._windows(data, starts[lo : lo + batch_size], device)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self.text.train[: self.block_size].repeat(batch_size, 1)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "block_size": self.block_size,
            "vocab_size": int(self.text.vocab_size),
            "train_tokens": int(self.text.train.numel()),
            "val_tokens": int(self.text.val.numel()),
            **self._identity(),
        }


def _xy(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(data, "x") and hasattr(data, "y"):
        x, y = data.x, data.y
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError(f"{what} must be an ArrayDataset or an (x, y) pair of tensors, got {type(data).__name__}")
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if y.ndim != 1 or y.dtype != torch.int64:
        raise ValueError(f"{what} labels must be a 1-D int64 tensor, got {y.dtype} shape {tuple(y.shape)}")
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{what} has {len(x)} inputs and {len(y)} labels; they must match and be non-empty")
    return x, y


class ClassificationTask(Task):
    """Classification on in-memory tensors.

    Args:
        train, val: `supernet.data.ArrayDataset` or ``(x, y)`` pairs (y int64 class indices).
        transform: ``fn(x) -> x`` applied to every batch on the device (e.g. uint8 images to normalised floats).
        augment: ``fn(x, generator) -> x`` applied to training batches only, after ``transform``; it must draw
            its randomness from ``generator`` so runs stay reproducible and resumable.
    """

    kind = "classification"

    def __init__(
        self,
        train: Any,
        val: Any,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        self.train_x, self.train_y = _xy(train, "train data")
        self.val_x, self.val_y = _xy(val, "val data")
        self.transform, self.augment = transform, augment
        classes = getattr(train, "classes", None)
        self.num_classes = len(classes) if classes is not None else int(self.train_y.max()) + 1

    def _prep(self, x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        x = x.to(device)
        if self.transform is not None:
            x = self.transform(x)
        elif not x.is_floating_point():
            x = x.float()
        return x

    def train_size(self) -> int:
        """The number of training examples."""
        return len(self.train_y)

    def train_examples(
        self, indices: torch.Tensor, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> Batch:
        """The training examples at ``indices``, transformed and augmented."""
        x = self._prep(self.train_x[indices], device)
        if self.augment is not None:
            x = self.augment(x, generator)
        return x, self.train_y[indices].to(device)

    def train_batch(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Batch:
        idx = torch.randint(self.train_size(), (batch_size,), generator=generator)
        return self.train_examples(idx, generator, device)

    def val_batch(self, batch_size: int, generator: torch.Generator, device: torch.device | str = "cpu") -> Batch:
        idx = torch.randint(len(self.val_y), (batch_size,), generator=generator)
        return self._prep(self.val_x[idx], device), self.val_y[idx].to(device)

    def eval_batches(
        self,
        split: str = "val",
        batch_size: int = 64,
        max_batches: int | None = None,
        device: torch.device | str = "cpu",
    ) -> Iterator[Batch]:
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        x, y = (self.train_x, self.train_y) if split == "train" else (self.val_x, self.val_y)
        for i, lo in enumerate(range(0, len(y), batch_size)):
            if max_batches is not None and i >= max_batches:
                return
            yield self._prep(x[lo : lo + batch_size], device), y[lo : lo + batch_size].to(device)

    def example_input(self, batch_size: int = 1) -> torch.Tensor:
        return self._prep(self.train_x[:batch_size], "cpu")

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "num_classes": self.num_classes,
            "input_shape": list(self.train_x.shape[1:]),
            "train_examples": len(self.train_y),
            "val_examples": len(self.val_y),
            "augment": self.augment is not None,
            **self._identity(),
        }


def crop_flip(padding: int = 4, flip: bool = True) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The standard CIFAR augmentation as a `ClassificationTask` ``augment`` hook.

    Each image ``(N, C, H, W)`` is zero-padded by ``padding``, cropped back to ``H x W`` at a random offset, and
    (with ``flip``) mirrored left-right with probability 1/2; randomness comes from the given generator.
    """

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator).tolist()
        flips = (torch.rand(n, generator=generator) < 0.5).tolist() if flip else [False] * n
        padded = F.pad(x, (padding, padding, padding, padding))
        out = torch.empty_like(x)
        for i, ((dy, dx), f) in enumerate(zip(offsets, flips, strict=True)):
            crop = padded[i, :, dy : dy + h, dx : dx + w]
            out[i] = crop.flip(-1) if f else crop
        return out

    return augment


def make_task(data: Any, block_size: int | None = None, val_fraction: float = 0.1, seed: int = 0) -> Task:
    """Turn what a user passes to `sn.train` into a `Task`.

    Accepts a `Task` (returned as is), a `CharText` (-> `LMTask`, needs ``block_size``), a ``(train, val)`` pair
    of `ArrayDataset` / ``(x, y)`` pairs, one `ArrayDataset` (split stratified by ``val_fraction``) or an
    `ImageData` (normalised with CIFAR-10 statistics, then split).
    """
    if isinstance(data, Task):
        return data
    if hasattr(data, "vocab") and hasattr(data, "get_batch"):
        if block_size is None:
            raise ValueError("a text dataset needs a block_size (set config.block_size or use a space with one)")
        task = LMTask(data, block_size)
        task.dataset = getattr(data, "dataset", None)
        return task
    if hasattr(data, "images") and hasattr(data, "labels") and hasattr(data, "to_dataset"):
        data = data.to_dataset()
    if hasattr(data, "split") and hasattr(data, "x") and hasattr(data, "y"):
        train, val = data.split(val_fraction, seed)
        return ClassificationTask(train, val)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        first = data[0]
        if hasattr(first, "x") or (isinstance(first, (tuple, list)) and len(first) == 2):
            return ClassificationTask(data[0], data[1])
    raise TypeError(
        f"cannot train on {type(data).__name__}: pass a Task, a CharText, an ImageData, an ArrayDataset, or a "
        "(train, val) pair of ArrayDatasets / (x, y) tensor pairs"
    )


def _describe_task(task: Task) -> str:
    try:
        info = dict(task.describe())
    except Exception:
        return f"{type(task).__name__} data"
    kind = info.pop("kind", type(task).__name__)
    return f"{kind} data ({', '.join(f'{k}={v}' for k, v in info.items())})"


def _describe_space(space: nn.Module) -> str:
    spec = getattr(space, "spec", None)
    if isinstance(spec, dict) and spec.get("space"):
        return repr(spec["space"])
    inner = getattr(space, "net", None)
    return f"{type(space).__name__}({type(inner).__name__})" if inner is not None else type(space).__name__


def _one_line(err: BaseException, limit: int = 300) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(err).__name__}: {text}"


def _lm_vocab(task: LMTask) -> int:
    """The number of token ids the data uses: at least its vocab size and the largest id + 1."""
    top = max(int(task.text.train.max()), int(task.text.val.max()))
    return max(int(task.text.vocab_size), top + 1)


def _fit_problem(out: Any, x: torch.Tensor, task: Task, vocab: int | None) -> str | None:
    """What is wrong with a forward's output for ``task`` (None when it fits)."""
    if not isinstance(out, torch.Tensor):
        return f"the space returns a {type(out).__name__}, but training needs a tensor of logits"
    if out.ndim < 2:
        return f"the space returns shape {tuple(out.shape)}, but training needs logits with a class dimension"
    if isinstance(task, LMTask) and vocab is not None:
        if tuple(out.shape[:-1]) != tuple(x.shape):
            return (
                f"the space returns shape {tuple(out.shape)} for token ids of shape {tuple(x.shape)}; a language "
                f"model must return (batch, tokens, vocab) = {(*x.shape, vocab)}"
            )
        if out.shape[-1] < vocab:
            return (
                f"vocab too small: the data has {vocab} token ids but the space outputs {out.shape[-1]} logits "
                f"per token; build the space with vocab_size={vocab}"
            )
    if isinstance(task, ClassificationTask):
        n = task.num_classes
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            return (
                f"the space returns shape {tuple(out.shape)} for a batch of {x.shape[0]}; classification needs "
                f"(batch, classes) = ({x.shape[0]}, {n})"
            )
        if out.shape[-1] != n:
            return (
                f"the space outputs {out.shape[-1]} classes but the data has {n}; build the space with "
                f"num_classes={n}"
            )
    return None


def check_fits(space: nn.Module, task: Task) -> None:
    """Check that ``space`` can train on ``task`` before training starts.

    Forwards the space's largest and smallest archs on ``task.example_input(2)`` (eval mode, no grad; for a
    language model one token is set to the largest token id of the data), and checks the output's shape:
    ``(batch, num_classes)`` for classification, ``(batch, tokens, >= vocab)`` for a language model. The space's
    arch and train/eval mode are restored afterwards.

    Raises:
        ConfigError: one line naming the data, the space and the problem (e.g. "vocab too small", a wrong
            number of classes, or the error the forward raised).
    """
    from ..validation import ConfigError

    where = f"the {_describe_task(task)} does not fit space {_describe_space(space)}"
    first = next(iter(space.parameters()), None)
    if first is None:
        first = next(iter(space.buffers()), None)
    device = first.device if first is not None else torch.device("cpu")
    vocab: int | None = None
    try:
        x = task.example_input(2)
        if isinstance(task, LMTask):
            vocab = _lm_vocab(task)
            x = x.clone()
            x[-1, -1] = vocab - 1  # the largest token id: an embedding with too few rows fails on it
        x = x.to(device)
    except Exception as err:
        raise ConfigError(f"{where}: cannot make an example input: {_one_line(err)}") from err
    archs: list[tuple[str, Any]] = [("the largest arch", None)]
    if hasattr(space, "max_arch") and hasattr(space, "set_arch"):
        archs = [("the largest arch", space.max_arch()), ("the smallest arch", space.min_arch())]
        if archs[0][1] == archs[1][1]:
            archs = archs[:1]
    previous = getattr(space, "arch", None)
    was_training = space.training
    space.eval()
    try:
        for label, arch in archs:
            if arch is not None:
                space.set_arch(arch)
            try:
                with torch.no_grad():
                    out = space(x)
            except Exception as err:
                problem = _one_line(err)
                if vocab is not None and isinstance(err, IndexError):
                    problem = (
                        f"vocab too small: token id {vocab - 1} is out of range for the space (the data has {vocab} "
                        f"token ids); build the space with vocab_size={vocab} ({problem})"
                    )
                raise ConfigError(f"{where}: {label} fails on an example batch: {problem}") from err
            problem = _fit_problem(out, x, task, vocab)
            if problem is not None:
                raise ConfigError(f"{where}: {label}: {problem}")
    finally:
        if previous is not None:
            space.set_arch(previous)
        space.train(was_training)
