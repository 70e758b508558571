"""The official NATS-Bench file format (bz2-compressed pickles), read through a restricted unpickler.

NATS-Bench ships ``meta.pickle.pbz2`` (every arch string) and one ``NNNNNN.pickle.pbz2`` per arch (per-epoch
curves for each dataset and seed). These are pickles, and unpickling runs code named in the file, so they are
only ever read with `RestrictedUnpickler`: its ``find_class`` allows exactly the globals these files reference
(found by disassembling them with ``pickletools``):

- ``collections.OrderedDict`` (the curves' containers);
- ``numpy.dtype`` and ``numpy.core.multiarray.scalar`` (``numpy._core.multiarray.scalar`` under numpy 2), which
  rebuild numpy float scalars such as ``params``. Both are wrapped: only plain numeric dtypes (bool, int, uint,
  float, complex) are accepted, so no object array or structured record can be rebuilt.

Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...) raises `ForbiddenPickleError` while
the file is being read, before the callable could run. Persistent ids are refused too.
"""

from __future__ import annotations

import bz2
import collections
import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .tables import Table, TableError

_NUMERIC_KINDS = frozenset("biufc")
_SCALAR_FN = np.float64(0.0).__reduce__()[0]  # numpy's scalar reconstructor, wherever this numpy keeps it


class ForbiddenPickleError(pickle.UnpicklingError):
    """A pickle referenced a global that the restricted unpickler does not allow."""


def _safe_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
        raise ForbiddenPickleError(f"refusing numpy dtype {dtype!r}: only numeric dtypes are allowed")
    return dtype


def _safe_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
        raise ForbiddenPickleError(f"refusing a numpy scalar of dtype {dtype!r}: only numeric dtypes are allowed")
    if not isinstance(data, bytes):
        raise ForbiddenPickleError(f"a numpy scalar must be rebuilt from bytes, got {type(data).__name__}")
    return _SCALAR_FN(dtype, data)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("numpy", "dtype"): _safe_dtype,
    ("numpy.core.multiarray", "scalar"): _safe_scalar,
    ("numpy._core.multiarray", "scalar"): _safe_scalar,
}
"""The only globals a NATS-Bench pickle may reference, mapped to what they load as."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS` and refuses persistent ids."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise ForbiddenPickleError(
                f"refusing to load global {module}.{name} from a pickle; a NATS-Bench file may only reference: "
                f"{allowed}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise ForbiddenPickleError(f"refusing persistent id {pid!r}: NATS-Bench files have none")


def restricted_load(file: BinaryIO) -> Any:
    """Unpickle from an open binary file with `RestrictedUnpickler`."""
    return RestrictedUnpickler(file).load()


def restricted_loads(data: bytes) -> Any:
    """Unpickle bytes with `RestrictedUnpickler`."""
    return restricted_load(io.BytesIO(data))


def load_nats_pickle(path: str | Path) -> Any:
    """Read one NATS-Bench ``.pickle.pbz2`` (or plain ``.pickle``) file with the restricted unpickler.

    Raises:
        FileNotFoundError: no such file. ForbiddenPickleError: the file references a disallowed global.
        TableError: the file is not a bz2 pickle.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NATS-Bench file not found: {path}")
    opener = bz2.open if path.suffix == ".pbz2" else open
    try:
        with opener(path, "rb") as f:
            return restricted_load(f)
    except (OSError, EOFError) as err:  # bz2 raises OSError on bad data
        raise TableError(f"{path}: not a NATS-Bench bz2 pickle ({err})") from None


def load_nats_meta(directory: str | Path) -> dict[str, Any]:
    """``meta.pickle.pbz2`` of a NATS-Bench directory: ``{"meta_archs": [arch strings], "total_archs": n, ...}``."""
    meta = load_nats_pickle(Path(directory) / "meta.pickle.pbz2")
    if not isinstance(meta, dict) or "meta_archs" not in meta:
        raise TableError(f"{directory}: meta.pickle.pbz2 has no 'meta_archs' list")
    return meta


_ARCH_FILE = re.compile(r"^(\d{6})\.pickle\.pbz2$")


def _final_acc(curve: dict[str, float], name: str, epochs: int) -> float | None:
    key = f"{name}@{epochs - 1}"
    return float(curve[key]) if key in curve else None


def load_nats_table(
    directory: str | Path,
    dataset: str = "cifar10-valid",
    hp: str | None = None,
) -> Table:
    """A ground-truth table from a NATS-Bench ("simple" files) directory, averaged over the seeds it holds.

    Args:
        directory: a ``NATS-tss-*`` (topology = NAS-Bench-201 cells) or ``NATS-sss-*`` (sizes) directory.
        dataset: ``cifar10-valid``, ``cifar10``, ``cifar100`` or ``ImageNet16-120``.
        hp: the training schedule (``"12"``/``"200"`` for tss, ``"01"``/``"12"``/``"90"`` for sss); None takes the
            longest one the files hold.

    Metrics of each arch: ``<eval name>_acc`` (final-epoch accuracy, e.g. ``x-valid_acc``, ``ori-test_acc``),
    ``train_acc`` (final epoch), ``params`` (M), ``flops`` (M), ``latency`` (s), ``seeds`` (runs averaged).
    Keys are the files' arch strings (NB201 strings for tss, channel strings like ``8:16:32:64:64`` for sss).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"NATS-Bench directory not found: {directory}")
    files = sorted(p for p in directory.iterdir() if _ARCH_FILE.match(p.name))
    if not files:
        raise TableError(f"{directory}: no NNNNNN.pickle.pbz2 arch files")
    rows: dict[str, dict[str, float]] = {}
    used_hp = None
    for path in files:
        record = load_nats_pickle(path)
        if not isinstance(record, dict) or not record:
            raise TableError(f"{path}: expected {{schedule: results}}, got {type(record).__name__}")
        key_hp = hp if hp is not None else max(record, key=lambda h: int(h))
        if key_hp not in record:
            raise TableError(f"{path}: no schedule {key_hp!r}; it has {sorted(record)}")
        info = record[key_hp]
        results = [r for (ds, _seed), r in info["all_results"].items() if ds == dataset]
        if not results:
            names = sorted({ds for ds, _ in info["all_results"]})
            raise TableError(f"{path}: no results for dataset {dataset!r}; it has {names}")
        sums: dict[str, list[float]] = collections.defaultdict(list)
        for r in results:
            epochs = int(r["epochs"])
            for name in r["eval_names"]:
                acc = _final_acc(r["eval_acc1es"], name, epochs)
                if acc is not None:
                    sums[f"{name}_acc"].append(acc)
            sums["train_acc"].append(float(r["train_acc1es"][epochs - 1]))
            sums["params"].append(float(r["params"]))
            sums["flops"].append(float(r["flop"]))
            if r.get("latency"):
                sums["latency"].append(float(np.mean([float(v) for v in r["latency"]])))
        key = str(info["arch_str"])
        if key in rows:
            warnings.warn(f"{path}: arch {key!r} appears in more than one file; keeping the first", stacklevel=2)
            continue
        rows[key] = {m: float(np.mean(v)) for m, v in sums.items()}
        rows[key]["seeds"] = float(len(results))
        rows[key]["index"] = float(info["arch_index"])
        used_hp = key_hp
    space = "nb201" if next(iter(rows)).startswith("|") else "nats-sss"
    return Table(rows, space, {"source": str(directory), "dataset": dataset, "hp": used_hp})
