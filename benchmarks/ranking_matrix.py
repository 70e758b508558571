"""Ranking matrix: `supernet bench nb201` for several strategies x seeds at matched compute, in one table.

Every cell (strategy, seed) trains its NB201 supernet on the same number of *path-examples*: optimizer steps x
single paths run per step x batch size. A strategy that runs several paths per step (sandwich: max + min + 2
random; fair: one path per option) gets proportionally fewer steps than ``uniform``, whose step count is the
preset's (or ``--steps`` / ``--epochs``). The rule lives in `matched_steps`; the paths per step come from each
strategy's `Strategy.paths_per_step`. Work a method does besides those passes (a distillation teacher, importance
bookkeeping) shows in the wall-time column.

Each cell runs ``supernet bench nb201`` in a subprocess with its own ``--out`` under ``OUT/<strategy>-s<seed>``.
A cell whose ``report.json`` exists is read, not rerun; an interrupted cell resumes (the bench resumes when rerun
with the same ``--out``), so re-running the same command after a crash or ``kill -9`` continues the matrix. The
table (one row per cell, then one mean row per strategy) is printed and written atomically to ``OUT/matrix.md``
and ``OUT/matrix.json``.

    .venv/bin/python benchmarks/ranking_matrix.py --preset tiny --strategies uniform,sandwich --seeds 0,1 \\
        --data-dir ../shared/data                                   # seconds per cell: checks the pipeline
    .venv/bin/python benchmarks/ranking_matrix.py --preset cpu --strategies uniform,fair,sandwich,pada \\
        --seeds 0,1 --data-dir ../shared/data --threads 1            # 7-21 min per cell on 2 CPU cores
    .venv/bin/python benchmarks/ranking_matrix.py --preset cpu --strategies uniform,pada,fewshot,fs-pada,gm \
        --variant 'fs-pada=fewshot:{"inner": "pada"}' --seeds 0,1 --data-dir ../shared/data --threads 1
                                    # a --variant row: a strategy with options, under its own label
    .venv/bin/python benchmarks/ranking_matrix.py --preset tiny --strategies uniform,mine --plugins mymethods \\
        --data-dir ../shared/data    # a plug-in strategy (``paths_per_step`` if it runs several paths)

Kendall tau is only worth something above the free floors in the same row (FLOPs tau, params tau on the same
archs; ranking all 15,625 NB201 archs by FLOPs gives 0.574): the ``> FLOPs`` column says whether it is.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CIFAR10_PER_CLASS = 5000
CIFAR10_CLASSES = 10
RUN_CELL = "import sys; from supernet.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class Cell:
    """One (strategy, seed) run of the matrix with its matched step count."""

    strategy: str
    seed: int
    steps: int
    paths_per_step: int
    batch_size: int
    out: Path
    label: str | None = None  # the row's name when it is a --variant (a strategy with options)
    options: str | None = None  # the strategy's options as JSON (variants only)

    @property
    def name(self) -> str:
        """The row's name: the variant's label, else the strategy."""
        return self.label or self.strategy

    @property
    def path_examples(self) -> int:
        """Examples times single paths trained: ``steps x paths_per_step x batch_size``."""
        return self.steps * self.paths_per_step * self.batch_size


# ------------------------------------------------------------------ strategies and the matched-compute rule


def load_strategies(names: Sequence[str], plugins: str | None = None) -> dict[str, type]:
    """The strategy classes of ``names``, after importing the plug-in modules ``plugins`` (comma-separated).

    Raises:
        ValueError: a plug-in failed to import, or a name is not registered (the message lists the registered ones).
    """
    from supernet.registry import load_plugins
    from supernet.training import STRATEGIES

    load_plugins(plugins, "--plugins")
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ValueError(
            f"unknown strategy {', '.join(map(repr, unknown))}; registered strategies: {', '.join(STRATEGIES.names())}"
            " (add your own with --plugins MODULE)"
        )
    return {n: STRATEGIES.get(n) for n in names}


NOT_SINGLE_PATH = (
    "it does not train single paths (its paths_per_step() is None); the gradient strategies also train their "
    "architecture weights on the task's validation batches, which in this benchmark are the held-out images the "
    "archs are ranked on. Run it with `supernet bench nb201` directly, not in this matrix"
)


def parse_variants(texts: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """``--variant LABEL=STRATEGY:JSON`` values as ``{label: (strategy, options)}``.

    Raises:
        ValueError: a value not of that form, options that are not a JSON object, or a label given twice.
    """
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for text in texts:
        label, sep, rest = text.partition("=")
        strategy, sep2, options = rest.partition(":")
        label, strategy = label.strip(), strategy.strip()
        if not sep or not label or not strategy:
            raise ValueError(f"--variant {text!r}: expected LABEL=STRATEGY or LABEL=STRATEGY:{{json options}}")
        try:
            parsed = json.loads(options) if sep2 else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"--variant {text!r}: the options are not JSON ({err})") from err
        if not isinstance(parsed, dict):
            raise ValueError(f"--variant {text!r}: the options must be a JSON object")
        if label in out:
            raise ValueError(f"--variant: label {label!r} is given twice")
        out[label] = (strategy, parsed)
    return out


def paths_per_step(name: str, cls: type, space: Any, options: dict[str, Any] | None = None) -> int:
    """Single-path forward/backward passes per step of strategy ``name`` (class ``cls``) with its default options
    on ``space``: the strategy's own `Strategy.paths_per_step`.

    Raises:
        ValueError: the strategy trains no single paths (None), or declares a count that is no positive int.
    """
    paths = cls(options or {}).paths_per_step(space)
    if paths is None:
        raise ValueError(f"strategy {name!r} cannot join the ranking matrix: {NOT_SINGLE_PATH}")
    if not isinstance(paths, int) or isinstance(paths, bool) or paths < 1:
        raise ValueError(f"strategy {name!r}: paths_per_step() must be a positive int, got {paths!r}")
    return paths


def matched_steps(
    name: str, cls: type, base_steps: int, space: Any, options: dict[str, Any] | None = None
) -> tuple[int, int]:
    """``(steps, paths_per_step)`` giving strategy ``name`` the training compute of ``base_steps`` uniform steps.

    The rule: every cell trains on the same number of path-examples, ``steps x paths_per_step x batch_size``
    (the batch size is the preset's, the same for all), so ``steps = max(1, round(base_steps / paths_per_step))``
    where ``base_steps`` is the uniform (one path per step) step count of the preset, ``--steps`` or
    ``--epochs``. Passes per step come from each strategy's `paths_per_step` with its default options (the
    benchmark passes none); on NB201 (6 decisions of 5 options each):

    ============  ===============  =====================================================================
    strategy      paths per step   why
    ============  ===============  =====================================================================
    uniform       1                one uniformly sampled arch
    pada          1                one arch drawn by path importance (bookkeeping: wall time)
    fair          5                ``group="max"``: max option count (one path per op); ``lcm``: lcm = 5
    sandwich      4                max + min + ``num_random`` = 2 random archs on the same batch
    alpha         4                as sandwich (alpha-divergence instead of KL)
    progressive   1                ``num_samples`` = 1 (the teacher forward, no backward: wall time)
    fewshot, gm   inner's          the inner strategy's (default uniform: 1); gm's gradient probes: wall time
    mos           inner's          NB201 has no entangled Linear layers: the cell fails at once, saying so
    darts, drnas  refused          a mixture of all ops, not one path; alpha trained on the ranking split
    gdas          refused          alpha trained on the ranking split
    ============  ===============  =====================================================================

    Raises:
        ValueError: the strategy is refused (see `paths_per_step`) or ``base_steps < 1``.
    """
    if base_steps < 1:
        raise ValueError(f"the uniform step count must be >= 1, got {base_steps}")
    paths = paths_per_step(name, cls, space, options)
    return max(1, round(base_steps / paths)), paths


def nb201_space() -> Any:
    """A small NB201 space: the decisions (6 edges x 5 ops) are those of every preset."""
    from supernet.spaces.nb201 import nb201

    return nb201(C=4, N=1)


def train_images_of(per_class: int | None, holdout_fraction: float) -> int:
    """Training images the bench keeps: each CIFAR-10 class gives ``round(holdout_fraction * n)`` to the held-out
    split (`supernet.data.images.stratified_split`)."""
    n = CIFAR10_PER_CLASS if per_class is None else per_class
    return CIFAR10_CLASSES * (n - round(holdout_fraction * n))


def base_steps_of(preset: str, steps: int | None, epochs: float | None) -> tuple[int, int, int]:
    """``(uniform steps, batch size, training images)`` of ``preset`` with ``--steps`` / ``--epochs`` applied."""
    from supernet.bench.nb201 import preset_config

    cfg = preset_config(preset, steps=steps, epochs=epochs)
    images = train_images_of(cfg.per_class, cfg.holdout_fraction)
    return cfg.train_steps(images), cfg.batch_size, images


def plan_cells(
    classes: dict[str, type],
    seeds: Sequence[int],
    base_steps: int,
    batch_size: int,
    out: Path,
    space: Any,
    variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
) -> list[Cell]:
    """Every (row, seed) cell with its matched step count, rows outermost. ``classes`` maps each row name (a
    strategy, or a label of ``variants``) to its strategy class."""
    cells = []
    variants = variants or {}
    for name, cls in classes.items():
        strategy, options = variants.get(name, (name, {}))
        steps, paths = matched_steps(name, cls, base_steps, space, options)
        for seed in seeds:
            cells.append(Cell(
                strategy, seed, steps, paths, batch_size, out / f"{safe_name(name)}-s{seed}",
                label=name if name in variants else None,
                options=json.dumps(options, sort_keys=True) if name in variants else None,
            ))
    return cells


def safe_name(name: str) -> str:
    """``name`` usable as a directory name."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# ------------------------------------------------------------------ running cells


def cell_command(cell: Cell, args: argparse.Namespace) -> list[str]:
    """The ``supernet bench nb201`` command line of ``cell`` (run with this Python)."""
    cmd = [
        sys.executable,
        "-c",
        RUN_CELL,
        "bench",
        "nb201",
        "--preset",
        args.preset,
        "--strategy",
        cell.strategy,
        *(["--strategy-options", cell.options] if cell.options is not None else []),
        "--seed",
        str(cell.seed),
        "--steps",
        str(cell.steps),
        "--out",
        str(cell.out),
    ]
    for flag, value in (
        ("--epochs", args.epochs),
        ("--archs", args.archs),
        ("--data-dir", args.data_dir),
        ("--threads", args.threads),
        ("--device", args.device),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    if args.no_progress:
        cmd.append("--no-progress")
    return cmd


def cell_env(args: argparse.Namespace) -> dict[str, str]:
    """The subprocess environment: the plug-ins to import, and the thread count for OpenMP."""
    env = dict(os.environ)
    if args.plugins:
        env["SUPERNET_PLUGINS"] = ",".join(p for p in (env.get("SUPERNET_PLUGINS"), args.plugins) if p)
    if args.threads is not None:
        env["OMP_NUM_THREADS"] = str(args.threads)
    return env


def read_report(cell: Cell) -> dict[str, Any] | None:
    """The cell's report.json (None when the cell has not finished); checks it was made for this cell."""
    from supernet.files import read_json

    path = cell.out / "report.json"
    if not path.is_file():
        return None
    report = read_json(path, dict[str, Any], "NB201 bench report")
    cfg = report.get("config", {})
    want: dict[str, Any] = {"strategy": cell.strategy, "seed": cell.seed, "steps": cell.steps}
    if cell.options is not None:
        want["strategy_options"] = json.loads(cell.options)
    diff = {k: (cfg.get(k), v) for k, v in want.items() if cfg.get(k) != v}
    if diff:
        detail = "; ".join(f"{k}: report has {a!r}, matrix wants {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path} was made with other settings ({detail}); use another --out")
    return report


def run_cell(cell: Cell, args: argparse.Namespace, index: int, total: int) -> dict[str, Any] | None:
    """The cell's report: read if it exists, else run (or resume) the bench for it; None when the run failed."""
    label = f"[{index}/{total}] {cell_label(cell)}"
    report = read_report(cell)
    if report is not None:
        print(f"{label}: done already ({cell.out}/report.json)", flush=True)
        return report
    state = "resuming" if cell.out.exists() else "running"
    print(
        f"{label}: {state} {cell.steps} steps x {cell.paths_per_step} paths x batch {cell.batch_size} "
        f"= {cell.path_examples:,} path-examples -> {cell.out}",
        flush=True,
    )
    t0 = time.perf_counter()
    rc = subprocess.run(cell_command(cell, args), env=cell_env(args), check=False).returncode
    if rc != 0:
        print(f"{label}: FAILED (exit status {rc}); rerun the same command to retry it", file=sys.stderr, flush=True)
        return None
    print(f"{label}: finished in {time.perf_counter() - t0:.0f} s", flush=True)
    return read_report(cell)


# ------------------------------------------------------------------ the table


COLUMNS = {
    "strategy": "strategy",
    "seed": "seed",
    "steps": "steps x paths",
    "path_examples": "path-examples",
    "tau": "Kendall tau [95% CI]",
    "sparse_tau": "sparse tau",
    "rho": "Spearman rho",
    "p5": "P@5%",
    "regret": "regret (top-1)",
    "flops_tau": "FLOPs tau",
    "params_tau": "params tau",
    "beats_flops": "> FLOPs",
    "wall_s": "wall s (train+eval)",
    "params_m": "supernet params (M)",
    "peak_mib": "peak RSS MiB",
}

VERDICTS = {"above the FLOPs floor (beyond its CI)": "yes", "above the FLOPs floor, but within its CI": "within CI"}


def _value(est: dict[str, Any] | None) -> float | None:
    return None if est is None else est.get("value")


def cell_row(cell: Cell, report: dict[str, Any]) -> dict[str, Any]:
    """One table row (numbers, not strings) from a cell's report.json."""
    m, floors, t = report["metrics"], report.get("floors", {}), report["timing"]
    tau = m["kendall_tau"]
    verdict = report.get("verdict", "")
    return {
        "strategy": cell.name,
        "seed": cell.seed,
        "steps": cell.steps,
        "paths_per_step": cell.paths_per_step,
        "path_examples": cell.path_examples,
        "tau": tau["value"],
        "tau_low": tau.get("low"),
        "tau_high": tau.get("high"),
        "sparse_tau": _value(m.get("sparse_kendall_tau")),
        "rho": _value(m.get("spearman_rho")),
        "p5": _value(m.get("precision@0.05")),
        "regret": report.get("top_predicted", {}).get("regret"),
        "flops_tau": _value(floors.get("flops_tau")),
        "params_tau": _value(floors.get("params_tau")),
        "beats_flops": VERDICTS.get(verdict, "no" if verdict.startswith("NOT") else "n/a"),
        "wall_s": t["train_s"] + t["eval_s"],
        "params_m": _scaled(report.get("memory", {}).get("supernet_params"), 1e-6),
        "peak_mib": report.get("memory", {}).get("peak_rss_mib"),
        "train_s": t["train_s"],
        "eval_s": t["eval_s"],
        "train_images": report.get("data", {}).get("train_images"),
        "archs": report.get("sampled_archs"),
    }


def _mean(values: list[Any]) -> float | None:
    nums = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.fmean(nums) if nums else None


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per strategy: the mean over its seeds of every number (``tau_sd``: the spread across seeds)."""
    out = []
    for name in dict.fromkeys(r["strategy"] for r in rows):
        group = [r for r in rows if r["strategy"] == name]
        mean = {
            k: _mean([r[k] for r in group])
            for k in (
                "tau",
                "sparse_tau",
                "rho",
                "p5",
                "regret",
                "flops_tau",
                "params_tau",
                "wall_s",
                "params_m",
                "peak_mib",
                "train_s",
                "eval_s",
            )
        }
        taus = [r["tau"] for r in group if r["tau"] is not None]
        out.append(
            {
                **mean,
                "strategy": name,
                "seed": f"mean of {len(group)}",
                "steps": group[0]["steps"],
                "paths_per_step": group[0]["paths_per_step"],
                "path_examples": group[0]["path_examples"],
                "tau_sd": statistics.stdev(taus) if len(taus) > 1 else None,
                "beats_flops": f"{sum(r['beats_flops'] == 'yes' for r in group)}/{len(group)} yes",
            }
        )
    return out


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_row(row: dict[str, Any]) -> dict[str, str]:
    """The printed cells of a cell row or a summary row."""
    if row.get("tau_low") is not None:
        tau = f"{row['tau']:.3f} [{row['tau_low']:.3f}, {row['tau_high']:.3f}]"
    elif row.get("tau_sd") is not None:
        tau = f"{row['tau']:.3f} ± {row['tau_sd']:.3f} (sd)"
    else:
        tau = _num(row["tau"])
    return {
        "strategy": row["strategy"],
        "seed": str(row["seed"]),
        "steps": f"{row['steps']} x {row['paths_per_step']}",
        "path_examples": f"{row['path_examples']:,}",
        "tau": tau,
        "sparse_tau": _num(row["sparse_tau"]),
        "rho": _num(row["rho"]),
        "p5": _num(row["p5"], 2),
        "regret": _num(row["regret"], 2),
        "flops_tau": _num(row["flops_tau"]),
        "params_tau": _num(row["params_tau"]),
        "beats_flops": row["beats_flops"],
        "wall_s": _num(row["wall_s"], 0),
        "params_m": _num(row.get("params_m"), 2),
        "peak_mib": _num(row.get("peak_mib"), 0),
    }


def markdown_table(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> str:
    """The matrix as a Markdown table: the cell rows, then the per-strategy mean rows in bold."""
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(format_row(row).values()) + " |")
    for row in summary:
        lines.append("| " + " | ".join(f"**{v}**" for v in format_row(row).values()) + " |")
    return "\n".join(lines)


def matrix_markdown(rows: list[dict[str, Any]], settings: dict[str, Any], failed: list[str]) -> str:
    """matrix.md: a heading with the settings, the table and how to read it."""
    text = [
        f"# NB201 ranking matrix: preset {settings['preset']}, matched compute",
        "",
        f"Every cell trains {settings['target_path_examples']:,} path-examples (uniform: {settings['base_steps']} "
        f"steps x batch {settings['batch_size']}; a strategy running p paths per step gets steps / p).",
        "",
        markdown_table(rows, summary_rows(rows)) if rows else "(no finished cell yet)",
        "",
        "Kendall tau, sparse tau, Spearman rho and P@5% compare the supernet's ranking of the uniformly sampled "
        "archs with NAS-Bench-201's val_acc_200 (CI: bootstrap over archs; mean rows: ± the sd across seeds). "
        "regret: table accuracy of the table's best arch minus that of the arch the supernet ranks first. FLOPs tau "
        "and params tau rank the same archs by FLOPs / params: the free floors (all 15,625 archs by FLOPs: 0.574). "
        "A tau not above them adds nothing over counting FLOPs (`> FLOPs`: beyond the floor's CI). Wall time: "
        "training + evaluation seconds the bench recorded (a session killed while training loses its time).",
    ]
    if failed:
        text += ["", f"Unfinished cells (rerun the command to resume them): {', '.join(failed)}"]
    return "\n".join(text) + "\n"


def write_matrix(out: Path, rows: list[dict[str, Any]], settings: dict[str, Any], failed: list[str]) -> str:
    """Write matrix.json and matrix.md atomically under ``out``; returns the Markdown."""
    from supernet.files import write_json, write_text

    md = matrix_markdown(rows, settings, failed)
    write_json(
        out / "matrix.json", {"settings": settings, "cells": rows, "summary": summary_rows(rows), "unfinished": failed}
    )
    write_text(out / "matrix.md", md)
    return md


# ------------------------------------------------------------------ command line


def parse_list(text: str, kind: Callable[[str], Any] = str) -> list[Any]:
    """Comma-separated values, stripped, empties and repeats dropped (order kept)."""
    return list(dict.fromkeys(kind(part.strip()) for part in text.split(",") if part.strip()))


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    from supernet.bench.nb201 import PRESETS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--strategies", default="uniform,fair,sandwich",
                   help="comma-separated strategy names (or --variant labels)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=STRATEGY:JSON",
                   help='a row of a strategy with options, e.g. fewshot-pada=fewshot:{"inner": "pada"} (repeatable)')
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default 0,1)")
    p.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="the bench's preset (default cpu)")
    p.add_argument("--plugins", help="comma-separated modules to import first (they register strategies)")
    p.add_argument("--data-dir", help="folder with images/cifar10-train.tar.gz and benchmarks/nb201/")
    p.add_argument("--out", type=Path, help="matrix directory (default runs/ranking_matrix-<preset>)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each cell (default 1)")
    p.add_argument("--archs", type=int, help="archs to rank (passed to the bench)")
    p.add_argument("--epochs", type=float, help="uniform training epochs (others: matched; passed to the bench)")
    p.add_argument("--steps", type=int, help="uniform optimizer steps (others: matched; overrides --epochs)")
    p.add_argument("--device", help="cuda, cpu or auto (passed to the bench)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars in the cells")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Plan, run (or resume) every cell, and write the table; exit status 1 when a cell failed, 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        names, seeds = parse_list(args.strategies), parse_list(args.seeds, int)
        if not names or not seeds:
            raise ValueError("--strategies and --seeds need at least one value each")
        variants = parse_variants(args.variant)
        unused = [label for label in variants if label not in names]
        if unused:
            raise ValueError(f"--variant {', '.join(unused)} not named in --strategies")
        strategy_classes = load_strategies([variants.get(n, (n, {}))[0] for n in names], args.plugins)
        classes = {n: strategy_classes[variants.get(n, (n, {}))[0]] for n in names}
        base, batch, images = base_steps_of(args.preset, args.steps, args.epochs)
        out = args.out or Path(f"runs/ranking_matrix-{args.preset}")
        cells = plan_cells(classes, seeds, base, batch, out, nb201_space(), variants)
    except ValueError as err:
        print(f"ranking_matrix: error: {err}", file=sys.stderr)
        return 2
    settings = {
        "preset": args.preset,
        "strategies": names,
        "seeds": seeds,
        "base_steps": base,
        "batch_size": batch,
        "target_path_examples": base * batch,
        "paths_per_step": {c.name: c.paths_per_step for c in cells},
        "variants": {label: {"strategy": st, "options": o} for label, (st, o) in variants.items()},
        "train_images": images,
        "archs": args.archs,
        "epochs": args.epochs,
        "steps": args.steps,
        "plan": [{**asdict(c), "out": str(c.out)} for c in cells],
    }
    try:
        failed = run_matrix(cells, args, out, settings)
    except ValueError as err:  # a finished cell made with other settings, an unreadable report
        print(f"ranking_matrix: error: {err}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def run_matrix(cells: list[Cell], args: argparse.Namespace, out: Path, settings: dict[str, Any]) -> list[str]:
    """Run every cell in turn, rewriting the table after each; print it; return the cells that failed."""
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for i, cell in enumerate(cells, start=1):
        report = run_cell(cell, args, i, len(cells))
        if report is None:
            failed.append(cell_label(cell))
        else:
            rows.append({**cell_row(cell, report), "observed_paths_per_step": observed_paths(cell)})
            warn_train_images(rows[-1], settings["train_images"])
            warn_paths(rows[-1])
        pending = [cell_label(c) for c in cells[i:]]
        write_matrix(out, rows, settings, failed + pending)  # after every cell: a partial table survives a kill
    print()
    print(write_matrix(out, rows, settings, failed))
    print(f"written: {out}/matrix.md, {out}/matrix.json")
    return failed


def cell_label(cell: Cell) -> str:
    """``strategy seed N``."""
    return f"{cell.name} seed {cell.seed}"


def observed_paths(cell: Cell) -> float | None:
    """The mean ``archs_per_step`` (archs the strategy's step reported running) over the cell's training log."""
    from supernet.files import read_jsonl

    seen = [r["archs_per_step"] for r in read_jsonl(cell.out / "train" / "metrics.jsonl") if "archs_per_step" in r]
    return statistics.fmean(seen) if seen else None


def warn_paths(row: dict[str, Any]) -> None:
    """Warn when the training log's archs per step differ from the paths per step the step count assumed."""
    seen = row.get("observed_paths_per_step")
    if seen is not None and abs(seen - row["paths_per_step"]) > 1e-9:
        print(
            f"warning: {row['strategy']} seed {row['seed']} logged {seen:g} archs per step, the matched step count "
            f"assumed {row['paths_per_step']}: its compute is not matched",
            file=sys.stderr,
        )


def warn_train_images(row: dict[str, Any], expected: int | None) -> None:
    """Warn when the bench trained on another number of images than the uniform step count assumed (the cells
    still match each other, as each gets an explicit --steps; only the uniform base differs from the preset's)."""
    if expected is not None and row["train_images"] is not None and row["train_images"] != expected:
        print(
            f"warning: {row['strategy']} seed {row['seed']} trained on {row['train_images']} images, the step "
            f"count assumed {expected}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    sys.exit(main())
