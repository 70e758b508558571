"""Search NAS-Bench-201 (CIFAR-10) with `supernet.estimate.Estimator` under a CPU budget and 20 ground-truth queries.

What it measures
----------------
The issue's search protocol: at most ``--budget-minutes`` (default 60) CPU-minutes for every signal evaluated
(proxies, FLOPs, a supernet), at most ``--queries`` (default 20) ground-truth queries (a table lookup standing in for
training an arch), ``--seeds`` (default 5) seeds; the figure is the mean *test* accuracy (``test_acc_200``) of the
arch each search returns, the queried arch with the best *validation* accuracy (``val_acc_200``: the query's
answer; test accuracy is never seen by a search). Optimum of the table: 94.37; target: 94.2 mean.

Strategies, each seed on the same candidate pool:

- ``random``: ``--queries`` archs drawn uniformly from all 15,625 (no signals, no CPU budget used);
- ``flops``: the pool's ``--queries`` largest-FLOPs archs (the free baseline the estimators have to beat);
- ``rank``: the pool's ``--queries`` best archs under the label-free estimator (``mode="rank"``: the AZ-NAS /
  VKDNW log-rank sum of ``--signals`` over the pool);
- ``rank+gbdt``: the first ``--warm`` queries as ``rank``, then one query at a time the pool's best unqueried
  arch under a few-label estimator (``mode="gbdt"``: LightGBM on the same signals, refitted to every answer so
  far; ``--acquisition mean`` or ``ucb`` = mean + ensemble spread).

Budget and pool. Signals are read from the cache of `benchmarks/proxies_nb201.py` (``--cache``: per arch, each
proxy's value *and the seconds it took*, measured with one thread on this 2-core machine). A seed's pool is a
seeded random order of the cached archs, cut where the summed measured seconds of the chosen signals would pass
the budget; so the pool is what ``--budget-minutes`` of CPU buys for these signals, each arch charged its own
measured cost. With ``--supernet-run`` (a finished ``supernet bench nb201`` run that `proxies_nb201.py` evaluated)
the supernet's accuracy is a signal too, and its training time (its ``timing.json``, or
``--supernet-train-minutes``) is charged first. Every proxy value was computed with proxy seed 0 (one minibatch
and initialisation); the search seeds differ in pool, random draws and LightGBM seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_nb201.py --data-dir ../shared/data
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_nb201.py --data-dir ../shared/data \\
        --signals flops,nwot,jacov,meco,az_expressivity,az_progressivity,az_trainability --acquisition ucb
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from proxies_nb201 import Cache, Signals  # a sibling script: benchmarks/ is on sys.path when run
from supernet.bench.nb201 import find_nb201_table
from supernet.bench.tables import Table, arch_key, load_nb201
from supernet.estimate import Estimator
from supernet.files import read_json, write_json, write_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = ROOT / "benchmarks" / "results" / "proxies_nb201"
DEFAULT_SIGNALS = "flops,nwot,jacov,meco,az_expressivity,az_progressivity,az_trainability"
STRATEGIES = ("random", "flops", "rank", "rank+gbdt")
OPTIMUM_NOTE = "the table's best test accuracy"
TARGET = 94.2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--signals", default=DEFAULT_SIGNALS,
                   help=f"comma-separated cached signals (default {DEFAULT_SIGNALS})")
    p.add_argument("--queries", type=int, default=20, help="ground-truth queries per search (default 20)")
    p.add_argument("--warm", type=int, default=10,
                   help="rank+gbdt: label-free queries before the first fit (default 10)")
    p.add_argument("--acquisition", choices=("mean", "ucb"), default="mean",
                   help="rank+gbdt: query the best predicted mean, or mean + ensemble spread (default mean)")
    p.add_argument("--budget-minutes", type=float, default=60.0, help="CPU-minutes for every signal (default 60)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="search seeds (default 0,1,2,3,4)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="proxies_nb201 output folder with cache.jsonl")
    p.add_argument("--supernet-run", default=None, help="a bench run whose accuracies the cache holds (a signal)")
    p.add_argument("--supernet-train-minutes", type=float, default=None,
                   help="CPU-minutes to charge for training that supernet (default: its logged step time)")
    p.add_argument("--inputs", choices=("table", "cifar"), default="table",
                   help="which cached proxy values: proxies_nb201's --inputs (default table: Gaussian noise where the "
                   "published protocol used it)")
    p.add_argument("--data-dir", default=None, help="folder with benchmarks/nb201/ (the NB201 table)")
    p.add_argument("--out", default="runs/search_nb201", help="report folder (report.md, report.json)")
    args = p.parse_args(argv)
    args.signal_list = [s for s in args.signals.split(",") if s]
    args.seed_list = [int(s) for s in args.seeds.split(",") if s]
    if args.supernet_run and "supernet" not in args.signal_list:
        args.signal_list.append("supernet")
    if args.queries < 1 or not 0 <= args.warm <= args.queries:
        p.error(f"need --queries >= 1 and 0 <= --warm <= --queries, got {args.queries} and {args.warm}")
    if not args.signal_list or not args.seed_list:
        p.error("need at least one signal and one seed")
    if args.budget_minutes <= 0:
        p.error(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    return args


def train_minutes(run_dir: Path) -> float:
    """CPU-minutes a bench run spent training (its ``timing.json``: ``train_s``, summed over sessions).

    Raises:
        SystemExit: the run has no timing record.
    """
    path = run_dir / "timing.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing (not a finished `supernet bench nb201` run): pass "
                         "--supernet-train-minutes")
    return float(read_json(path, dict[str, Any], "NB201 bench timing")["train_s"]) / 60.0


def usable_keys(sig: Signals, keys: Sequence[str], names: Sequence[str]) -> list[str]:
    """The cached archs that have every signal and its measured seconds (the candidates a pool is drawn from)."""
    out = []
    for k in keys:
        if all(math.isfinite(per_arch_seconds(sig, n, k)) and sig.complete(n, [k]) for n in names):
            out.append(k)
    return out


def per_arch_seconds(sig: Signals, name: str, key: str) -> float:
    """The measured seconds of signal ``name`` on arch ``key`` (NaN if not cached; 0 for table lookups)."""
    s = sig.seconds(name, [key])
    return math.nan if s is None else s


def draw_pool(keys: Sequence[str], cost: Mapping[str, float], budget_s: float, seed: int) -> tuple[list[str], float]:
    """A seeded random order of ``keys`` cut where the summed cost would pass ``budget_s``; its cost in seconds."""
    order = np.random.default_rng(seed).permutation(len(keys))
    pool, spent = [], 0.0
    for i in order:
        if spent + cost[keys[i]] > budget_s:
            break
        pool.append(keys[i])
        spent += cost[keys[i]]
    return pool, spent


def outcome(table: Table, queried: Sequence[str]) -> dict[str, Any]:
    """What a search returns: the queried arch with the best validation accuracy, and its test accuracy."""
    val = table.values("val_acc_200", queried)
    test = table.values("test_acc_200", queried)
    best = int(np.argmax(val))
    return {"arch": queried[best], "test": float(test[best]), "val": float(val[best]),
            "best_queried_test": float(test.max()), "queries": len(queried)}


def lookup_signals(sig: Signals, names: Sequence[str]) -> dict[str, Any]:
    """``{name: arch -> cached value}``: the estimator's signals, read from the cache by NB201 key."""

    def signal(name: str) -> Any:
        def fn(arch: Mapping[str, Any]) -> float:
            return float(sig.values(name, [arch_key(arch, "nb201")])[0, 0])

        return fn

    return {n: signal(n) for n in names}


def search_one(table: Table, sig: Signals, args: argparse.Namespace, pool: list[str], seed: int) -> dict[str, Any]:
    """Every strategy on one seed's pool: ``{strategy: outcome}``."""
    rng = np.random.default_rng(10_000 + seed)
    everything = sorted(table.rows)
    out: dict[str, Any] = {}
    picks = rng.choice(len(everything), size=args.queries, replace=False)
    out["random"] = outcome(table, [everything[i] for i in picks])
    n = min(args.queries, len(pool))
    flops = sig.values("flops" if "flops" in args.signal_list else "table_flops", pool)[0]
    out["flops"] = outcome(table, [pool[i] for i in np.argsort(-flops, kind="stable")[:n]])

    archs = [table.arch(k) for k in pool]
    signals = lookup_signals(sig, args.signal_list)
    rank = Estimator(signals, mode="rank").fit(archs)
    order = np.argsort(-np.asarray(rank.predict(archs)), kind="stable")
    out["rank"] = outcome(table, [pool[i] for i in order[:n]])

    queried = [int(i) for i in order[: min(args.warm, n)]]
    fits = 0
    while len(queried) < n:
        est = Estimator(signals, mode="gbdt", seed=seed).fit(
            [archs[i] for i in queried], table.values("val_acc_200", [pool[i] for i in queried]))
        fits += 1
        mean, std = est.predict(archs, return_std=True)
        score = np.asarray(mean) + (np.asarray(std) if args.acquisition == "ucb" else 0.0)
        score[queried] = -np.inf
        queried.append(int(np.argmax(score)))
    out["rank+gbdt"] = {**outcome(table, [pool[i] for i in queried]), "fits": fits}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every seed's searches and the summary."""
    table = load_nb201(find_nb201_table(args.data_dir))
    cache = Cache(Path(args.cache) / "cache.jsonl")
    proxies = [n for n in args.signal_list if n not in ("supernet", "table_flops", "table_params")]
    sig = Signals(table, cache, [0], proxies, args.supernet_run, args.inputs)
    budget_s = 60.0 * args.budget_minutes
    fixed_s = 0.0
    if args.supernet_run:
        fixed_s = 60.0 * (args.supernet_train_minutes if args.supernet_train_minutes is not None
                          else train_minutes(Path(args.supernet_run)))
        if fixed_s >= budget_s:
            raise SystemExit(f"error: training the supernet took {fixed_s / 60:.1f} CPU-minutes, the whole budget of "
                             f"{args.budget_minutes:g}")
    cached = sorted({k for (k, _s) in cache.proxy} | {k for (_r, k) in cache.supernet})
    keys = usable_keys(sig, cached, args.signal_list)
    if len(keys) < args.queries:
        raise SystemExit(f"error: only {len(keys)} cached archs have every signal of {args.signal_list} with its "
                         f"seconds in {args.cache}; need at least --queries = {args.queries}. Compute them with "
                         "benchmarks/proxies_nb201.py first.")
    cost = {k: sum(per_arch_seconds(sig, n, k) for n in args.signal_list) for k in keys}
    per_seed = []
    for seed in args.seed_list:
        pool, spent = draw_pool(keys, cost, budget_s - fixed_s, seed)
        if len(pool) < args.queries:
            raise SystemExit(f"error: the budget buys only {len(pool)} archs' signals (< --queries {args.queries})")
        res = search_one(table, sig, args, pool, seed)
        per_seed.append({"seed": seed, "pool": len(pool), "cpu_minutes": (fixed_s + spent) / 60.0,
                         "capped_by_cache": len(pool) == len(keys), "results": res})
    summary = {}
    for s in STRATEGIES:
        test = np.array([p["results"][s]["test"] for p in per_seed])
        oracle = np.array([p["results"][s]["best_queried_test"] for p in per_seed])
        summary[s] = {"mean_test": float(test.mean()), "std_test": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
                      "per_seed": test.tolist(), "mean_best_queried_test": float(oracle.mean())}
    all_test = table.values("test_acc_200")
    return {
        "settings": {k: v for k, v in vars(args).items() if k not in ("signal_list", "seed_list")}
        | {"signals": args.signal_list, "seeds": args.seed_list},
        "cached_archs": len(keys),
        "mean_seconds_per_arch": float(np.mean(list(cost.values()))),
        "supernet_train_minutes": fixed_s / 60.0,
        "optimum_test": float(all_test.max()),
        "target": TARGET,
        "per_seed": per_seed,
        "summary": summary,
    }


def render(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    st = report["settings"]
    lines = [
        "# NB201 CIFAR-10 search with the estimator",
        "",
        f"Signals: {', '.join(st['signals'])}; {report['mean_seconds_per_arch']:.2f} CPU-s per arch (measured, "
        f"cached); budget {st['budget_minutes']:g} CPU-minutes (supernet training "
        f"{report['supernet_train_minutes']:.1f}); "
        f"{st['queries']} queries (rank+gbdt: {st['warm']} label-free, then {st['acquisition']}); seeds {st['seeds']}; "
        f"{report['cached_archs']} cached archs to draw pools from.",
        "",
        "Per seed: pool size and CPU-minutes charged: "
        + ", ".join(f"s{p['seed']}: {p['pool']} archs, {p['cpu_minutes']:.1f} min" for p in report["per_seed"]),
        "",
    ]
    if any(p["capped_by_cache"] for p in report["per_seed"]):
        lines += ["**The pool is every cached arch**: the budget would buy more archs than the cache holds, so the "
                  "seeds share one pool (they differ only in the random baseline and LightGBM seeds).", ""]
    lines += [
        f"| strategy | mean test acc of the returned arch (± sd) | per seed | mean best test among queried | "
        f"target {report['target']} |",
        "|---|---|---|---|---|",
    ]
    for s, row in report["summary"].items():
        met = "MET" if row["mean_test"] >= report["target"] else "not met"
        per_seed = ", ".join(f"{v:.2f}" for v in row["per_seed"])
        lines.append(f"| {s} | {row['mean_test']:.2f} ± {row['std_test']:.2f} | {per_seed} | "
                     f"{row['mean_best_queried_test']:.2f} | {met} |")
    lines += ["", f"Optimum ({OPTIMUM_NOTE}): {report['optimum_test']:.2f}. The returned arch is the queried arch with "
              "the best validation accuracy; 'best test among queried' is what an oracle pick would give."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    out = Path(args.out)
    write_json(out / "report.json", report)
    text = render(report)
    write_text(out / "report.md", text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
