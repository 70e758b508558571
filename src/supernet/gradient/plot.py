"""Plot of each decision's option probabilities over training (matplotlib, Agg backend)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import write_bytes


def plot_alpha_history(
    history: Sequence[Mapping[str, Any]],
    options: Mapping[str, Sequence[Any]],
    path: str | Path,
    max_panels: int = 24,
) -> Path:
    """Write a PNG with one panel per decision: probability of each option against the training step.

    Args:
        history: entries ``{"step": int, "probs": {decision: [p_0, p_1, ...]}}``.
        options: ``{decision: options}`` for the legends.
        path: the PNG to write (atomically).
        max_panels: at most this many decisions are drawn (the first ones).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        raise ValueError("the alpha history is empty: nothing to plot")
    names = [n for n in history[-1]["probs"] if n in options][:max_panels]
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.6 * rows), squeeze=False)
    steps = [h["step"] for h in history]
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        for i, opt in enumerate(options[name]):
            ax.plot(steps, [h["probs"][name][i] for h in history], label=str(opt))
        ax.set_title(name, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    for k in range(len(names), rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=80)
    finally:
        plt.close(fig)
    return write_bytes(path, buf.getvalue())
