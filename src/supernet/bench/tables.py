"""Ground-truth tables: ``arch -> {metric: value}``, loaded from files the user points at.

A `Table` maps an *arch key* to a dict of metrics. The key of an arch is

- for the ``nb201`` space: its official NAS-Bench-201 string (``|nor_conv_3x3~0|+|...|``);
- for every other space: the canonical JSON of the arch dict (sorted keys, no spaces), e.g.
  ``{"depth":2,"embed":64}``.

The generic file formats, which users write for their own spaces (and `supernet groundtruth` writes):

- **JSON**: either a plain object ``{arch key: {metric: number}}`` (the NAS-Bench-201 JSON tables have this shape)
  or ``{"format": "supernet-table", "version": 1, "space": ..., "metadata": {...}, "rows": {arch key: {...}}}``.
- **CSV**: a header ``arch,<metric>,<metric>,...`` and one row per arch (empty cell = missing value).

The library ships no tables: `load_nb201` and `load_table` read files the user has.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, read_json, write_json

ARCH_COLUMN = "arch"
TABLE_FORMAT = "supernet-table"
TABLE_VERSION = 1

NB201_DATASETS = ("cifar10", "cifar100", "imagenet")
NB201_COSTS_COLUMNS = {
    # costs CSV column -> (table metric, transform)
    "metric_flops": ("flops", lambda v: v),  # MFLOPs (NB201 convention: multiply-adds, in millions)
    "metric_params": ("params", lambda v: v),  # millions of parameters
    "metric_latency": ("latency", lambda v: v),  # seconds per batch, as recorded by the benchmark
    "metric_runtime": ("runtime", lambda v: v),  # training time of the epoch the row comes from (s)
    "metric_elapsed_time": ("elapsed_time", lambda v: v),
    "metric_valid_error": ("costs_val_acc", lambda v: 100.0 * (1.0 - v)),  # syne-tune's valid error, as %
    "metric_train_error": ("costs_train_acc", lambda v: 100.0 * (1.0 - v)),
}


class TableError(ValueError):
    """A table file or row is malformed, or an arch/metric is not in the table."""


def canonical_json(arch: Mapping[str, Any]) -> str:
    """The canonical JSON key of an arch dict: sorted keys, no whitespace."""
    if not isinstance(arch, Mapping):
        raise TableError(f"an arch must be a dict {{decision: option}}, got {type(arch).__name__}")
    return json.dumps(dict(arch), sort_keys=True, separators=(",", ":"))


def arch_key(arch: str | Mapping[str, Any], space: str | None = None) -> str:
    """The table key of ``arch``: a key string is returned unchanged; a dict becomes the NB201 string for
    ``space="nb201"`` and canonical JSON otherwise."""
    if isinstance(arch, str):
        return arch
    if space == "nb201":
        from ..spaces.nb201 import to_nb201_string

        return to_nb201_string(arch)
    return canonical_json(arch)


def parse_arch_key(key: str, space: str | None = None) -> dict[str, Any]:
    """The arch dict of a table key (inverse of `arch_key`)."""
    if space == "nb201" or (space is None and key.startswith("|")):
        from ..spaces.nb201 import from_nb201_string

        return from_nb201_string(key)
    try:
        arch = json.loads(key)
    except json.JSONDecodeError as err:
        raise TableError(f"table key {key!r} is neither an NB201 string nor the JSON of an arch dict: {err}") from None
    if not isinstance(arch, dict):
        raise TableError(f"table key {key!r} is JSON but not an object {{decision: option}}")
    return arch


def _number(value: Any, where: str) -> float:
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool):
        raise TableError(f"{where}: expected a number, got the boolean {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise TableError(f"{where}: expected a number, got {value!r}")


@dataclass
class Table:
    """A ground-truth table: ``rows[arch key] = {metric: value}`` (missing values are NaN).

    Attributes:
        rows: the rows, keyed by `arch_key`.
        space: the space the keys belong to (``"nb201"`` keys are NB201 strings), or None.
        metadata: free JSON metadata (how the table was made, the recipe, the source file).
    """

    rows: dict[str, dict[str, float]]
    space: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clean: dict[str, dict[str, float]] = {}
        for key, row in self.rows.items():
            if not isinstance(key, str):
                raise TableError(f"table keys must be strings, got {key!r}")
            if not isinstance(row, Mapping):
                raise TableError(f"row {key!r}: expected {{metric: number}}, got {type(row).__name__}")
            clean[key] = {str(m): _number(v, f"row {key!r}, metric {m!r}") for m, v in row.items()}
        self.rows = clean

    # -- access ---------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.rows)

    def __contains__(self, arch: object) -> bool:
        try:
            return self.key(arch) in self.rows  # type: ignore[arg-type]
        except (TableError, ValueError, TypeError):
            return False

    def __getitem__(self, arch: str | Mapping[str, Any]) -> dict[str, float]:
        key = self.key(arch)
        if key not in self.rows:
            raise TableError(f"arch {key!r} is not in the table ({len(self)} rows)")
        return self.rows[key]

    def key(self, arch: str | Mapping[str, Any]) -> str:
        """The key of ``arch`` in this table (see `arch_key`)."""
        return arch_key(arch, self.space)

    def arch(self, key: str) -> dict[str, Any]:
        """The arch dict of a key of this table."""
        return parse_arch_key(key, self.space)

    @property
    def metrics(self) -> list[str]:
        """Every metric name in the table, in first-seen order."""
        seen: dict[str, None] = {}
        for row in self.rows.values():
            seen.update(dict.fromkeys(row))
        return list(seen)

    def _check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise TableError(f"metric {metric!r} is not in the table; available: {', '.join(self.metrics)}")

    def values(self, metric: str, archs: Iterable[str | Mapping[str, Any]] | None = None) -> np.ndarray:
        """``metric`` of ``archs`` (default: every row, in table order) as a float array."""
        self._check_metric(metric)
        keys = list(self.rows) if archs is None else [self.key(a) for a in archs]
        out = np.empty(len(keys))
        for i, k in enumerate(keys):
            if k not in self.rows:
                raise TableError(f"arch {k!r} is not in the table ({len(self)} rows)")
            out[i] = self.rows[k].get(metric, math.nan)
        return out

    def best(self, metric: str, higher_is_better: bool = True) -> str:
        """The key of the row with the best (finite) ``metric``."""
        keys = list(self.rows)
        vals = self.values(metric)
        ok = np.isfinite(vals)
        if not ok.any():
            raise TableError(f"metric {metric!r} has no finite value in the table")
        vals = np.where(ok, vals, -np.inf if higher_is_better else np.inf)
        return keys[int(np.argmax(vals) if higher_is_better else np.argmin(vals))]

    def worst(self, metric: str, higher_is_better: bool = True) -> str:
        """The key of the row with the worst (finite) ``metric``."""
        return self.best(metric, higher_is_better=not higher_is_better)

    def merge(self, other: Table) -> Table:
        """A new table with the rows of both; metrics of a shared arch are combined (``other`` wins a clash)."""
        if self.space != other.space and None not in (self.space, other.space):
            raise TableError(f"cannot merge tables of spaces {self.space!r} and {other.space!r}")
        rows = {k: dict(v) for k, v in self.rows.items()}
        for k, v in other.rows.items():
            rows.setdefault(k, {}).update(v)
        return Table(rows, self.space or other.space, {**self.metadata, **other.metadata})

    # -- files ----------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the table atomically as JSON (``.json``) or CSV (``.csv``), chosen by the suffix."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            return write_json(
                path,
                {
                    "format": TABLE_FORMAT,
                    "version": TABLE_VERSION,
                    "space": self.space,
                    "metadata": self.metadata,
                    "rows": self.rows,
                },
            )
        if suffix == ".csv":
            metrics = self.metrics

            def write(f: io.TextIOBase) -> None:
                w = csv.writer(f)
                w.writerow([ARCH_COLUMN, *metrics])
                for k, row in self.rows.items():
                    w.writerow([k, *("" if not math.isfinite(row.get(m, math.nan)) else repr(row[m]) for m in metrics)])

            return atomic_write(path, write)
        raise TableError(f"cannot save a table as {path.name!r}: use a .json or .csv file name")

    @classmethod
    def load(cls, path: str | Path, space: str | None = None) -> Table:
        """Read a table in the generic JSON or CSV format (see the module doc); alias of `load_table`."""
        return load_table(path, space=space)


def _guess_space(keys: Iterable[str]) -> str | None:
    first = next(iter(keys), None)
    return "nb201" if first is not None and first.startswith("|") else None


def load_table(path: str | Path, space: str | None = None) -> Table:
    """Read a table in the generic JSON or CSV format (by suffix).

    Args:
        path: the file (``.json`` or ``.csv``).
        space: the space of the keys; None reads it from a wrapped JSON file, else guesses ``"nb201"`` when the
            keys are NB201 strings.

    Raises:
        FileNotFoundError: no such file. TableError: the file is not a table (the message says what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table file not found: {path}")
    suffix = path.suffix.lower()
    metadata: dict[str, Any] = {"source": str(path)}
    if suffix == ".json":
        data = read_json(path, what="benchmark table (JSON)")
        if not isinstance(data, dict):
            raise TableError(f"{path}: expected a JSON object {{arch key: {{metric: number}}}}")
        if data.get("format") == TABLE_FORMAT:
            if data.get("version") != TABLE_VERSION:
                raise TableError(f"{path}: table version {data.get('version')!r} unsupported (expected 1)")
            rows = data.get("rows")
            if not isinstance(rows, dict):
                raise TableError(f"{path}: 'rows' must be an object {{arch key: {{metric: number}}}}")
            space = space or data.get("space")
            metadata = {**(data.get("metadata") or {}), **metadata}
        else:
            rows = data
    elif suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or header[0] != ARCH_COLUMN:
                raise TableError(f"{path}: a CSV table needs a header starting with {ARCH_COLUMN!r}, got {header}")
            rows = {}
            for n, rec in enumerate(reader, start=2):
                if not rec:
                    continue
                if len(rec) != len(header):
                    raise TableError(f"{path}, line {n}: {len(rec)} cells, expected {len(header)} ({header})")
                cells = zip(header[1:], rec[1:], strict=True)
                rows[rec[0]] = {m: _number(v, f"{path}, line {n}, column {m!r}") for m, v in cells}
    else:
        raise TableError(f"{path}: unknown table format {suffix!r}; expected .json or .csv")
    if not rows:
        raise TableError(f"{path}: the table has no rows")
    return Table(rows, space or _guess_space(rows), metadata)


# -- NAS-Bench-201 ---------------------------------------------------------------------------------------------


def nb201_costs_key(ops: list[str]) -> str:
    """The NB201 string of the six ops in the costs CSV order (edges 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""
    if len(ops) != 6:
        raise TableError(f"an NB201 cell has 6 edges, got {len(ops)} ops: {ops}")
    return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"


def load_nb201_costs(path: str | Path) -> Table:
    """The NB201 CIFAR-10 costs CSV (``hp_x0..hp_x5`` + ``metric_*`` columns) as a table.

    Metrics: ``flops`` (M), ``params`` (M), ``latency``, ``runtime``, ``elapsed_time``, and the CSV's own
    validation/training accuracy in percent (``costs_val_acc``, ``costs_train_acc``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NB201 costs CSV not found: {path}")
    rows: dict[str, dict[str, float]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        missing = [c for c in [f"hp_x{i}" for i in range(6)] if c not in fields]
        if missing:
            raise TableError(f"{path}: not an NB201 costs CSV, missing columns {missing}")
        for n, rec in enumerate(reader, start=2):
            key = nb201_costs_key([rec[f"hp_x{i}"] for i in range(6)])
            row = {}
            for col, (name, fn) in NB201_COSTS_COLUMNS.items():
                if col in rec:
                    row[name] = fn(_number(rec[col], f"{path}, line {n}, column {col!r}"))
            rows[key] = row
    return Table(rows, "nb201", {"source": str(path)})


def load_nb201(path: str | Path, dataset: str = "cifar10", costs: bool = True) -> Table:
    """NAS-Bench-201 ground truth: ``val_acc_200``, ``test_acc_200``, ``rank`` (+ costs for CIFAR-10).

    Args:
        path: the directory holding ``nasbench201_<dataset>.json`` (and ``nasbench201_cifar10_costs.csv``),
            or one JSON table file.
        dataset: ``cifar10``, ``cifar100`` or ``imagenet`` (ImageNet16-120) when ``path`` is a directory.
        costs: merge the costs CSV (FLOPs, params, latency...) when it sits beside the JSON table.
    """
    path = Path(path)
    if path.is_dir():
        if dataset not in NB201_DATASETS:
            raise TableError(f"unknown NB201 dataset {dataset!r}; expected one of {list(NB201_DATASETS)}")
        json_path = path / f"nasbench201_{dataset}.json"
        costs_path = path / f"nasbench201_{dataset}_costs.csv"
    else:
        json_path, costs_path = path, path.with_name(path.stem + "_costs.csv")
    if not json_path.is_file():
        raise FileNotFoundError(f"NB201 table not found: {json_path} (expected nasbench201_<dataset>.json)")
    table = load_table(json_path, space="nb201")
    if costs and costs_path.is_file():
        table = table.merge(load_nb201_costs(costs_path))
    table.metadata = {"source": str(json_path), "dataset": dataset, "costs": str(costs_path) if costs else None}
    return table
