"""Fixed-length numeric encodings of architectures, derived from a space's ``choices``."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _is_numeric(options: Sequence[Any]) -> bool:
    return all(isinstance(o, numbers.Real) and not isinstance(o, bool) for o in options)


class ArchEncoder:
    """Encode arch dicts as vectors: one-hot for categorical decisions, scaled value for numeric ones.

    A decision whose options are all numbers (widths, depths, ratios) becomes one column ``(v - min) /
    (max - min)`` (0 when it has a single option); any other decision (op names, mixed options) becomes one
    column per option. ``numeric="onehot"`` one-hot encodes numeric decisions too.

    Args:
        choices: ``{decision: options}``, e.g. ``space.choices``.
        numeric: ``"scale"`` (default) or ``"onehot"``.
    """

    def __init__(self, choices: Mapping[str, Sequence[Any]], numeric: str = "scale") -> None:
        if numeric not in ("scale", "onehot"):
            raise ValueError(f"numeric must be 'scale' or 'onehot', got {numeric!r}")
        if not choices:
            raise ValueError("cannot encode archs of a space without decisions")
        self.choices = {k: tuple(v) for k, v in choices.items()}
        self.numeric = numeric
        self.columns: list[str] = []
        self._plan: list[tuple[str, str, Any]] = []
        for name, options in self.choices.items():
            if numeric == "scale" and _is_numeric(options):
                lo, hi = float(min(options)), float(max(options))
                self._plan.append((name, "scale", (lo, hi)))
                self.columns.append(name)
            else:
                self._plan.append((name, "onehot", {o: i for i, o in enumerate(options)}))
                self.columns.extend(f"{name}={o}" for o in options)

    @property
    def dim(self) -> int:
        """Length of an encoding."""
        return len(self.columns)

    def encode(self, arch: Mapping[str, Any]) -> np.ndarray:
        """One arch as a float vector of length `dim` (a clear error for a missing decision or unknown option)."""
        out: list[float] = []
        for name, kind, info in self._plan:
            if name not in arch:
                raise KeyError(f"arch lacks decision {name!r}; expected decisions: {list(self.choices)}")
            value = arch[name]
            if kind == "scale":
                if not isinstance(value, numbers.Real) or isinstance(value, bool):
                    raise ValueError(f"decision {name!r} expects a number from {self.choices[name]}, got {value!r}")
                lo, hi = info
                out.append(0.0 if hi == lo else (float(value) - lo) / (hi - lo))
            else:
                if value not in info:
                    raise ValueError(f"decision {name!r} does not allow {value!r}; options: {self.choices[name]}")
                row = [0.0] * len(info)
                row[info[value]] = 1.0
                out.extend(row)
        return np.asarray(out, dtype=np.float64)

    def encode_many(self, archs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Archs as an ``(n, dim)`` matrix."""
        if len(archs) == 0:
            return np.zeros((0, self.dim))
        return np.stack([self.encode(a) for a in archs])


def choices_from_archs(archs: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """``{decision: options}`` observed in ``archs`` (options sorted when comparable), for tables without a space."""
    if not archs:
        raise ValueError("need at least one arch to infer the decisions from")
    seen: dict[str, dict[Any, None]] = {}
    for arch in archs:
        for k, v in arch.items():
            seen.setdefault(k, {})[v] = None
    out = {}
    for k, opts in seen.items():
        try:
            out[k] = tuple(sorted(opts))
        except TypeError:
            out[k] = tuple(opts)
    return out
