"""TensorBoard event files of a run, written when the optional ``tensorboard`` package is installed.

``metrics.jsonl`` stays the record of a run; the event files are a view of it for ``tensorboard --logdir RUN_DIR``:

- training (`TrainBoard`, rank 0 only) writes every numeric value of every ``metrics.jsonl`` record (loss, lr,
  samples_per_s, archs_per_step, the strategy's metrics, the val losses of ``eval_every``) under the record's own
  key, at the record's step, to ``RUN_DIR/tensorboard/``; a gradient strategy's option probabilities (its alpha
  ``history``) go there too, as ``alpha/<decision>/<option>`` at the steps the strategy recorded them. A resumed run
  appends: its writer starts with ``purge_step = start + 1``, so TensorBoard drops what a killed process logged after
  the checkpoint it resumed from, as the resume truncates ``metrics.jsonl``.
- a search (`write_search_scalars`) writes each evaluated arch's objective values at step = its trial number to
  ``RUN_DIR/tensorboard/search/``, rewritten whole after each (resumed) search.

Install with ``pip install 'supernet[tensorboard]'``; without it nothing is written and nothing fails.
The writer is ``torch.utils.tensorboard.SummaryWriter``; scalars are stored as float32 (TensorBoard's own format).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

TB_DIR = "tensorboard"
SEARCH_SUBDIR = "search"
EXTRA = "pip install 'supernet[tensorboard]'"


def summary_writer_class() -> type | None:
    """``torch.utils.tensorboard.SummaryWriter``, or None when the ``tensorboard`` package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard imports the tensorboard package, an optional extra
        return None
    return SummaryWriter


def available() -> bool:
    """Whether TensorBoard event files can be written (the ``tensorboard`` package is installed)."""
    return summary_writer_class() is not None


def scalars_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The numeric values of a metrics record, as floats, without its ``step`` (strings, lists, None are left out)."""
    return {
        k: float(v)
        for k, v in record.items()
        if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


class TrainBoard:
    """The TensorBoard writer of one `train` call on rank 0: the metrics records, and alpha probabilities.

    Args:
        log_dir: where the event files go (``RUN_DIR/tensorboard``).
        start: the step the run starts from (0, or the checkpoint's step on resume); events a previous process
            wrote for later steps are purged.
        strategy: the training strategy; if it keeps a gradient strategy's ``history`` (``[{"step", "probs":
            {decision: [p, ...]}}]``), its entries are written as they appear.
        choices: ``{decision: options}`` of the space, to name the options in the alpha tags.
    """

    def __init__(
        self, log_dir: Path, start: int, strategy: Any = None, choices: Mapping[str, Sequence[Any]] | None = None
    ) -> None:
        writer_class = summary_writer_class()
        if writer_class is None:
            raise ImportError(f"TensorBoard logging needs the tensorboard package: {EXTRA}")
        self.writer = writer_class(log_dir=str(log_dir), purge_step=start + 1)
        self.log_dir = Path(log_dir)
        self.strategy = strategy
        self.choices = dict(choices or {})
        history = self._history()
        # entries up to ``start`` were written by the process that saved the checkpoint (they are kept)
        self.seen = sum(1 for e in history if int(e.get("step", 0)) <= start)

    def _history(self) -> list[Mapping[str, Any]]:
        history = getattr(self.strategy, "history", None)
        if not isinstance(history, list):
            return []
        return [e for e in history if isinstance(e, Mapping) and isinstance(e.get("probs"), Mapping)]

    def after_step(self) -> None:
        """Write the strategy's new alpha-history entries (cheap when there are none)."""
        history = self._history()
        for entry in history[self.seen :]:
            step = int(entry["step"])
            for decision, probs in entry["probs"].items():
                options = self.choices.get(decision) or range(len(probs))
                for option, p in zip(options, probs, strict=False):
                    self.writer.add_scalar(f"alpha/{decision}/{option}", float(p), step)
        if len(history) > self.seen:
            self.writer.flush()
            self.seen = len(history)

    def log(self, record: Mapping[str, Any]) -> None:
        """Write a ``metrics.jsonl`` record's scalars at its step, and flush (a killed run keeps what it logged)."""
        step = int(record["step"])
        for key, value in scalars_of(record).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def open_train_board(
    run_dir: Path, start: int, strategy: Any = None, choices: Mapping[str, Sequence[Any]] | None = None
) -> TrainBoard | None:
    """A `TrainBoard` writing to ``run_dir/tensorboard``, or None when tensorboard is not installed."""
    if not available():
        return None
    return TrainBoard(Path(run_dir) / TB_DIR, start, strategy, choices)


def write_search_scalars(
    log_dir: str | Path, entries: Iterable[Mapping[str, Any]], metrics: Sequence[str]
) -> Path | None:
    """Write a search's objective values per trial to ``log_dir`` (normally ``RUN_DIR/tensorboard/search``).

    Args:
        log_dir: the event-file directory; event files already there (an earlier search of the study) are
            replaced, since the entries hold every trial of the study.
        entries: the evaluated archs, ``{"trial": n, "metrics": {...}}`` (`SearchResult.entries`).
        metrics: the metrics to write (the search's objectives), each as a tag ``<metric>`` at step = trial.

    Returns:
        ``log_dir``, or None when tensorboard is not installed (nothing is written).
    """
    writer_class = summary_writer_class()
    if writer_class is None:
        return None
    out = Path(log_dir)
    if out.is_dir():
        for old in out.glob("events.out.tfevents.*"):
            old.unlink()
    writer = writer_class(log_dir=str(out))
    try:
        for entry in sorted(entries, key=lambda e: int(e["trial"])):
            values = entry.get("metrics") or {}
            for metric in metrics:
                v = values.get(metric)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    writer.add_scalar(metric, float(v), int(entry["trial"]))
    finally:
        writer.close()
    return out


def search_log_dir(run_dir: str | Path) -> Path:
    """``RUN_DIR/tensorboard/search``: where a run's search writes its scalars."""
    return Path(run_dir) / TB_DIR / SEARCH_SUBDIR
