"""Printing a Pareto front as a rich table."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table


def front_table(pareto: Mapping[str, Any], max_rows: int = 20, title: str | None = None) -> Table:
    """A table of the front in a pareto.json dict (or `SearchResult.to_json()`): index, metrics, arch."""
    front: Sequence[Mapping[str, Any]] = pareto.get("front", [])
    objectives = [o["metric"] for o in pareto.get("objectives", [])]
    metrics = list(dict.fromkeys(objectives + [m for e in front for m in e["metrics"]]))
    rejected = f", {pareto['rejected']} rejected before evaluation" if pareto.get("rejected") else ""
    table = Table(
        title=title
        or f"Pareto front: {len(front)} of {pareto.get('distinct_archs', '?')} archs "
        f"({pareto.get('algorithm') or pareto.get('strategy')}, {pareto.get('evaluations', '?')} evaluations"
        f"{rejected})"
    )
    table.add_column("#", justify="right")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("arch", overflow="fold")
    for i, e in enumerate(front[:max_rows]):
        table.add_row(str(i), *(_fmt(m, e["metrics"].get(m)) for m in metrics), _short_arch(e["arch"], e.get("key")))
    if len(front) > max_rows:
        table.caption = f"... {len(front) - max_rows} more in pareto.csv"
    return table


def _fmt(metric: str, v: Any) -> str:
    if v is None:
        return "-"
    if metric in ("params", "flops"):
        return f"{int(v):,}"
    if metric == "latency":
        return f"{1000 * float(v):.2f} ms"
    return f"{float(v):.4f}"


def _short_arch(arch: Mapping[str, Any], key: str | None) -> str:
    active = json.loads(key) if key else dict(arch)
    return " ".join(f"{k}={v}" for k, v in active.items())
