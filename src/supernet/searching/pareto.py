"""Pareto fronts of search results, and writing them as JSON, CSV and a PNG plot (atomically)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import write_bytes, write_text
from .objectives import Objective


def dominates(a: Sequence[float], b: Sequence[float], objectives: Sequence[Objective]) -> bool:
    """Whether objective vector ``a`` is at least as good as ``b`` everywhere and strictly better somewhere."""
    better = False
    for x, y, o in zip(a, b, objectives, strict=True):
        if o.better(y, x):
            return False
        if o.better(x, y):
            better = True
    return better


def pareto_front(entries: Sequence[dict[str, Any]], objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    """The non-dominated entries (each has ``metrics``), sorted by the first objective (best first)."""
    vecs = [[float(e["metrics"][o.metric]) for o in objectives] for e in entries]
    front = [
        e
        for i, e in enumerate(entries)
        if not any(dominates(vecs[j], vecs[i], objectives) for j in range(len(entries)) if j != i)
    ]
    first = objectives[0]
    sign = 1.0 if first.direction == "minimize" else -1.0
    return sorted(front, key=lambda e: (sign * float(e["metrics"][first.metric]), e.get("trial", 0)))


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], metric_names: Sequence[str]) -> None:
    """One row per entry: index, trial, each metric, the arch as JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["index", "trial", *metric_names, "arch"])
    for i, e in enumerate(rows):
        writer.writerow(
            [i, e.get("trial", ""), *(e["metrics"].get(m, "") for m in metric_names), json.dumps(e["arch"])]
        )
    write_text(path, buf.getvalue())


def plot_front(
    path: str | Path,
    entries: Sequence[dict[str, Any]],
    front: Sequence[dict[str, Any]],
    objectives: Sequence[Objective],
    title: str = "search",
) -> None:
    """Scatter of every evaluated arch with the Pareto front highlighted (first two objectives; PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), dpi=120)
    ax = fig.add_subplot()
    if len(objectives) >= 2:
        xo, yo = objectives[1], objectives[0]
        xs = [e["metrics"][xo.metric] for e in entries]
        ys = [e["metrics"][yo.metric] for e in entries]
        ax.scatter(xs, ys, s=14, alpha=0.4, color="tab:gray", label="evaluated")
        pts = sorted((f["metrics"][xo.metric], f["metrics"][yo.metric]) for f in front)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color="tab:red", label="Pareto front")
        ax.set_xlabel(f"{xo.metric} ({xo.direction[:3]})")
        ax.set_ylabel(f"{yo.metric} ({yo.direction[:3]})")
    else:
        o = objectives[0]
        ax.plot([e.get("trial", i) for i, e in enumerate(entries)], [e["metrics"][o.metric] for e in entries], ".")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{o.metric} ({o.direction[:3]})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(objectives) >= 2:
        ax.legend(loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes(path, buf.getvalue())
