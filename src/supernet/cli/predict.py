"""``supernet predict fit|eval``: fit a GBDT performance predictor on a table and score its ranking."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE = """examples:
  supernet predict fit nb201_gt.json --target val_acc_200 --train-size 100 --out predictor.json
  supernet predict eval nb201_gt.json --target val_acc_200 --model predictor.json
  supernet predict eval nb201_gt.json --target val_acc_200 --train-size 50 --repeats 5
  supernet predict eval table.csv --target accuracy --pretrain-on params,flops,nwot --train-size 20"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand with ``fit`` and ``eval``."""
    from ..predictors import PREDICTORS
    from ._util import method_list

    predictors = f"predictors (--predictor):\n{method_list(PREDICTORS.describe())}"
    p = sub.add_parser(
        "predict",
        help="fit / evaluate a performance predictor (GBDT) on a table (arch -> metrics)",
        description=(
            "Fit a predictor (by default LightGBM on the arch encoding: one-hot / scaled decisions) to predict a "
            "table metric, optionally pretrained on free statistics of every row (params, FLOPs, proxy scores; the "
            f"FBNetV3 idea), and score it by Kendall tau / Spearman on held-out rows.\n\n{predictors}"
        ),
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, helptext in (("fit", "fit on a table and save the predictor"), ("eval", "score a predictor's ranking")):
        q = actions.add_parser(
            name, help=helptext, description=predictors, epilog=EXAMPLE,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        q.add_argument("table", type=Path, help="table (.json or .csv) of arch -> metrics")
        q.add_argument("--target", required=True, help="metric to predict (higher = better)")
        q.add_argument("--space", help="space of the table's keys (default: guessed); decisions come from the archs")
        q.add_argument("--train-size", type=int, help="rows to fit on (default: all for fit, half for eval)")
        q.add_argument(
            "--predictor", choices=PREDICTORS.names(),
            help="predictor (default: gbdt, or pretrained_gbdt with --pretrain-on)",
        )
        q.add_argument("--pretrain-on", help="comma-separated metrics of the table to pretrain on (free statistics)")
        q.add_argument("--mode", choices=["boost", "feature"], default="boost", help="pretraining mode")
        q.add_argument("--models", type=int, default=5, help="ensemble size (default %(default)s)")
        q.add_argument("--seed", type=int, default=0)
        if name == "fit":
            q.add_argument("--out", type=Path, required=True, help="predictor file (.json)")
        else:
            q.add_argument("--model", type=Path, help="a saved predictor to score on every row (no fitting)")
            q.add_argument("--repeats", type=int, default=1, help="random train/test splits (default %(default)s)")
            q.add_argument("--json", action="store_true", help="print the result as JSON")
            q.add_argument("--no-progress", action="store_true", help="no progress bar over the repeated splits")
        q.set_defaults(func=run)


def _rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], np.ndarray, Any]:
    from ..bench import load_table

    table = load_table(args.table, space=args.space)
    keys = list(table)
    y = table.values(args.target, keys)
    ok = np.isfinite(y)
    if ok.sum() < 4:
        raise ValueError(f"metric {args.target!r} has only {int(ok.sum())} finite values; need at least 4")
    keys = [k for k, good in zip(keys, ok, strict=True) if good]
    return [table.arch(k) for k in keys], y[ok], (table, keys)


def _make(args: argparse.Namespace, archs: list[dict[str, Any]], table_info: Any, seed: int) -> Any:
    """The predictor ``--predictor`` names, built as ``cls(choices, n_models=..., seed=...)`` (and pretrained)."""
    from ..predictors import PREDICTORS, choices_from_archs

    name = args.predictor or ("pretrained_gbdt" if args.pretrain_on else "gbdt")
    cls = PREDICTORS.get(name)
    choices = choices_from_archs(archs)
    if not args.pretrain_on:
        return cls(choices, n_models=args.models, seed=seed)
    if not callable(getattr(cls, "pretrain", None)):
        raise ValueError(f"predictor {name!r} cannot pretrain on free statistics: drop --pretrain-on or pick another")
    table, keys = table_info
    stats = {m.strip(): table.values(m.strip(), keys) for m in args.pretrain_on.split(",") if m.strip()}
    pred = cls(choices, mode=args.mode, n_models=args.models, seed=seed)  # type: ignore[call-arg]
    return pred.pretrain(archs, stats)


def run(args: argparse.Namespace) -> int:
    """Fit or evaluate; print the figures."""
    from ..predictors import GBDTPredictor, kendall_tau, load_predictor, save_predictor, spearman

    try:
        archs, y, info = _rows(args)
        n = len(archs)
        if args.action == "fit":
            size = n if args.train_size is None else args.train_size
            if not 2 <= size <= n:
                raise ValueError(f"--train-size must lie in 2..{n} (rows with a finite {args.target!r}), got {size}")
            idx = np.random.default_rng(args.seed).permutation(n)[:size]
            pred = _make(args, archs, info, args.seed)
            if not isinstance(pred, GBDTPredictor):
                raise ValueError(f"--out saves GBDT predictors only; {type(pred).__name__} cannot be saved")
            pred.fit([archs[i] for i in idx], y[idx])
            meta = {"table": str(args.table), "target": args.target, "train_size": int(size)}
            save_predictor(pred, args.out, metadata=meta)
            print(f"fitted on {size} rows of {args.table}; wrote {args.out}")
            return 0
        results = []
        if args.model is not None:
            pred = load_predictor(args.model)
            p = pred.predict(archs)
            results.append({"test_size": n, "kendall_tau": kendall_tau(p, y), "spearman": spearman(p, y)})
        else:
            size = n // 2 if args.train_size is None else args.train_size
            if not 2 <= size < n:
                raise ValueError(f"--train-size must lie in 2..{n - 1} to leave test rows, got {size}")
            from tqdm.auto import tqdm

            splits = tqdm(range(args.repeats), desc="predict splits", unit="split",
                          disable=args.no_progress or args.repeats < 2)
            for r in splits:
                perm = np.random.default_rng(args.seed + r).permutation(n)
                tr, te = perm[:size], perm[size:]
                pred = _make(args, archs, info, args.seed + r).fit([archs[i] for i in tr], y[tr])
                p = pred.predict([archs[i] for i in te])
                results.append(
                    {
                        "train_size": int(size),
                        "test_size": len(te),
                        "kendall_tau": kendall_tau(p, y[te]),
                        "spearman": spearman(p, y[te]),
                    }
                )
    except (ValueError, KeyError, FileNotFoundError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"supernet predict: error: {msg}", file=sys.stderr)
        return 2
    taus = [r["kendall_tau"] for r in results]
    summary = {"target": args.target, "runs": results, "kendall_tau_mean": float(np.mean(taus))}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for r in results:
            print(
                f"train {r.get('train_size', '-')}, test {r['test_size']}: "
                f"Kendall tau {r['kendall_tau']:.3f}, Spearman {r['spearman']:.3f}"
            )
        if len(results) > 1:
            print(f"mean Kendall tau over {len(results)} splits: {summary['kendall_tau_mean']:.3f}")
    return 0
