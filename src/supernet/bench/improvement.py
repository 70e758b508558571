"""Relative improvement of a found arch over random archs, read from a ground-truth table.

Yang et al., "NAS Evaluation is Frustratingly Hard" (ICLR 2020): ``RI = 100 x (m_found - m_random) / m_random``
where ``m_random`` is the mean metric of randomly drawn archs. A search method that does not beat random sampling
by a clear RI is not doing much.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .metrics import relative_improvement
from .tables import Table


def relative_improvement_from_table(
    table: Table,
    found: str | Mapping[str, Any],
    metric: str,
    random_archs: Sequence[str | Mapping[str, Any]] | None = None,
    n_random: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Relative improvement (in %) of arch ``found`` over random archs, both looked up in ``table``.

    Args:
        table: the ground truth.
        found: the arch a search returned (dict or table key).
        metric: the table metric (larger is better, e.g. ``val_acc_200``).
        random_archs: the random archs to compare with; None draws ``n_random`` rows uniformly (seeded), or uses
            every row when ``n_random`` is None (the exact mean over a uniformly random arch of the table).

    Returns:
        ``{"relative_improvement", "found", "random_mean", "random_count"}``.
    """
    found_value = float(table[found][metric]) if metric in table[found] else float("nan")
    if not np.isfinite(found_value):
        raise ValueError(f"the found arch has no value for metric {metric!r} in the table")
    if random_archs is not None:
        values = table.values(metric, random_archs)
    elif n_random is not None:
        keys = sorted(table.rows)
        if not 1 <= n_random <= len(keys):
            raise ValueError(f"n_random must lie in 1..{len(keys)}, got {n_random}")
        pick = np.random.default_rng(seed).choice(len(keys), size=n_random, replace=False)
        values = table.values(metric, [keys[i] for i in pick])
    else:
        values = table.values(metric)
    values = values[np.isfinite(values)]
    return {
        "relative_improvement": relative_improvement(found_value, values),
        "found": found_value,
        "random_mean": float(values.mean()),
        "random_count": float(values.size),
    }
