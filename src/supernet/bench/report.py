"""Benchmark outputs: the predicted-vs-true scatter plot and the Markdown summary (written atomically)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..files import atomic_write, write_text

PAPER_TAUS: dict[str, float] = {
    "SPOS (one-shot, uniform)": 0.49,
    "few-shot NAS": 0.55,
    "PA&DA": 0.71,
}
"""Kendall tau of supernet vs ground-truth accuracy on NAS-Bench-201 CIFAR-10 reported in the literature."""

README_FLOPS_TAU_ALL = 0.574
"""FLOPs-only Kendall tau on all 15,625 NB201 archs (data README; against the costs CSV's validation error)."""


def scatter_plot(
    path: str | Path,
    predicted: Sequence[float],
    true: Sequence[float],
    roles: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "supernet accuracy (held-out train images, %)",
    ylabel: str = "ground-truth accuracy (%)",
) -> Path:
    """Save a predicted-vs-true scatter plot as PNG (matplotlib Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    roles = list(roles) if roles is not None else ["sampled"] * len(predicted)
    styles = {
        "sampled": ("tab:blue", "o", "sampled"),
        "best": ("tab:green", "*", "table best"),
        "worst": ("tab:red", "X", "table worst"),
    }
    for role, (color, marker, label) in styles.items():
        idx = [i for i, r in enumerate(roles) if r == role]
        if idx:
            ax.scatter(
                [predicted[i] for i in idx],
                [true[i] for i in idx],
                c=color,
                marker=marker,
                s=60 if role != "sampled" else 18,
                alpha=0.8,
                label=label,
            )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write(path, lambda f: f.write(buf.getvalue()), binary=True)


def _fmt(est: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not est or est.get("value") is None:
        return "n/a"
    v, lo, hi = est["value"], est.get("low"), est.get("high")
    if lo is None or hi is None:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown_summary(report: Mapping[str, Any]) -> str:
    """The Markdown summary of a `supernet bench` report (see `supernet.bench.nb201.run_nb201_bench`)."""
    cfg = report["config"]
    m = report["metrics"]
    floors = report["floors"]
    timing = report.get("timing", {})
    lines = [
        f"# NAS-Bench-201 ranking benchmark: `{cfg['strategy']}`, preset `{cfg['preset']}`, seed {cfg['seed']}",
        "",
        f"Supernet: C={cfg['C']}, N={cfg['N']}, {cfg['size']}x{cfg['size']} images, "
        f"{report['data']['train_images']:,} training / {report['data']['holdout_images']:,} held-out images "
        f"(both from the CIFAR-10 *training* set; the test set is never used), {cfg['steps']:,} steps of batch "
        f"{cfg['batch_size']} ({cfg['epochs_done']:.1f} epochs), {cfg['optimizer']} lr {cfg['lr']}.",
        f"Ranked {len(report['archs'])} archs ({cfg['archs']} sampled uniformly with seed {cfg['seed']} + the table's "
        f"best and worst) by held-out accuracy with inherited weights after BN recalibration on "
        f"{cfg['bn_images']:,} training images; ground truth `{cfg['metric']}` of the table.",
        "",
        f"Metrics below use the {report.get('sampled_archs', len(report['archs']))} uniformly sampled archs only "
        "(unbiased for the whole space); the right column adds the table's best and worst.",
        "",
        "| metric | sampled archs [95% bootstrap CI] | with best + worst |",
        "|---|---|---|",
    ]
    extra = report.get("metrics_with_extremes", {})
    for name, est in m.items():
        lines.append(f"| {name} | {_fmt(est)} | {_fmt(extra.get(name))} |")
    for role, e in (report.get("extremes") or {}).items():
        lines.append("")
        lines.append(
            f"Table {role} (true {e['true']:.2f}) is ranked {e['predicted_rank']} of {e['of']} by the supernet."
        )
    lines += [
        "",
        "## Free floors (a supernet that does not beat these adds nothing)",
        "",
        "| ranking by | Kendall tau on the same archs | on all table archs |",
        "|---|---|---|",
        f"| supernet | {_fmt(m.get('kendall_tau'))} | - |",
        f"| FLOPs only | {_fmt(floors.get('flops_tau'))} | {_fmt(floors.get('flops_tau_all'))} |",
        f"| params only | {_fmt(floors.get('params_tau'))} | {_fmt(floors.get('params_tau_all'))} |",
        "",
        f"The data README quotes FLOPs-only tau {README_FLOPS_TAU_ALL} on all 15,625 archs (against the costs CSV's "
        "validation accuracy; against the NB201 table's `val_acc_200` it is the 'all table archs' figure above).",
        f"Verdict: supernet tau {_fmt(m.get('kendall_tau'))} vs FLOPs tau {_fmt(floors.get('flops_tau'))} on the "
        f"same archs: **{report['verdict']}**.",
        "",
        "Literature (NB201 CIFAR-10, full training): "
        + ", ".join(f"{k} {v}" for k, v in PAPER_TAUS.items())
        + ". The `cpu` preset trains a far smaller supernet for minutes, so it is a smoke-level measurement, "
        "not a reproduction of these numbers.",
        "",
    ]
    top = report.get("top_predicted")
    if top:
        lines += [
            f"Top predicted arch of all evaluated (the table's optimum among them): `{top['key']}`: true "
            f"{cfg['metric']} {top['true']:.2f}, regret {top['regret']:.2f} points, relative improvement over the "
            "mean sampled arch "
            f"{top['relative_improvement']:+.1f} %.",
            "",
        ]
    notes = report.get("preset_notes") or {}
    if notes:
        lines += ["## Preset choices", ""] + [f"- **{k}**: {v}" for k, v in notes.items()] + [""]
    if timing:
        lines += [
            "## Wall time",
            "",
            f"training {timing.get('train_s', 0):.0f} s, evaluation {timing.get('eval_s', 0):.0f} s, "
            f"total {timing.get('total_s', 0):.0f} s (summed over resumed sessions) on {report['device']}.",
            "",
        ]
    return "\n".join(lines)


def write_summary(path: str | Path, report: Mapping[str, Any]) -> Path:
    """Write `markdown_summary` of ``report`` to ``path`` atomically."""
    return write_text(path, markdown_summary(report))
