"""RoBoT and the GBDT predictors on NAS-Bench-201 CIFAR-10 (table lookups, no training).

RoBoT: 20 ground-truth queries (``val_acc_200`` lookups), the found arch's ``test_acc_200`` and its regret to the
benchmark optimum (94.37), over 5 seeds, on two pools:
  - the 725 NASLib archs with NASLib's precomputed proxy scores (zc_nasbench201_subset725.json);
  - the archs our own proxies were computed on by benchmarks/proxies_naslib.py (its --cache file), if present.
Baselines on the same pool: random search with 20 queries, and the best single proxy's top-20.

GBDT: Kendall tau on 2,000 held-out NB201 archs after training on 50/100/200 random archs (5 seeds), plain and
pretrained on params + FLOPs of all 15,625 archs (FBNetV3-style; free statistics from the costs CSV).

    .venv/bin/python benchmarks/proxies_robot_gbdt.py [--cache /tmp/proxies_naslib.jsonl]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from supernet import proxies as P
from supernet.bench import load_nb201
from supernet.predictors import GBDTPredictor, PretrainedGBDTPredictor, kendall_tau
from supernet.spaces import nb201, to_nb201_string

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OPTIMUM = 94.37
NASLIB_OPS = {0: "skip_connect", 1: "none", 2: "nor_conv_3x3", 3: "nor_conv_1x1", 4: "avg_pool_3x3"}
NASLIB_EDGES = ("edge_1_0", "edge_2_0", "edge_3_0", "edge_2_1", "edge_3_1", "edge_3_2")
ROBOT_PROXIES = ("synflow", "snip", "grasp", "fisher", "grad_norm", "jacov", "nwot", "l2_norm", "params", "flops")


def naslib_arch(t: str) -> dict[str, str]:
    ops = [int(v) for v in t.strip("()").split(",")]
    return {e: NASLIB_OPS[o] for e, o in zip(NASLIB_EDGES, ops, strict=True)}


def robot_pool(name: str, keys: list[str], scores: dict[str, np.ndarray], table, seeds: int, budget: int) -> None:
    val = table.values("val_acc_200", keys)
    test = table.values("test_acc_200", keys)
    rows = []
    for s in range(seeds):
        t0 = time.perf_counter()
        res = P.robot(scores, lambda i: float(val[i]), budget=budget, seed=s, sampler="gp")
        rows.append((test[res.best_index], time.perf_counter() - t0))
        rng = np.random.default_rng(s)
        pick = rng.choice(len(keys), size=budget, replace=False)
        rows[-1] += (test[pick[np.argmax(val[pick])]],)
    best_single = []
    for p, v in scores.items():
        top = np.argsort(-np.nan_to_num(v, nan=-np.inf, neginf=-np.inf))[:budget]
        best_single.append((test[top[np.argmax(val[top])]], p))
    bs = max(best_single)
    r = np.array(rows)
    print(
        f"\nRoBoT on {name}: {len(keys)} archs, {budget} queries, {seeds} seeds (pool's best test acc {test.max():.2f})"
    )
    print(f"{'method':<28} {'test acc (mean +- sd)':>22} {'regret to 94.37':>16}")
    print(f"{'RoBoT (GP)':<28} {r[:, 0].mean():>14.2f} +- {r[:, 0].std():.2f} {OPTIMUM - r[:, 0].mean():>16.2f}")
    print(f"{'random search':<28} {r[:, 2].mean():>14.2f} +- {r[:, 2].std():.2f} {OPTIMUM - r[:, 2].mean():>16.2f}")
    print(f"{'best single proxy top-20':<28} {bs[0]:>14.2f} ({bs[1]}) {OPTIMUM - bs[0]:>10.2f}")
    print(f"per-seed RoBoT test acc: {', '.join(f'{v:.2f}' for v in r[:, 0])}; mean wall {r[:, 1].mean():.1f} s")


def gbdt(table, seeds: int) -> None:
    space = nb201()
    keys = list(table)
    archs = [table.arch(k) for k in keys]
    y = table.values("val_acc_200", keys)
    free = {"params": table.values("params", keys), "flops": table.values("flops", keys)}
    print(f"\nGBDT on NB201 CIFAR-10 val_acc_200: Kendall tau on 2,000 held-out archs, {seeds} seeds")
    print(f"{'train':>6} {'GBDT':>14} {'pretrained (boost)':>20} {'pretrained (feature)':>22} {'FLOPs alone':>12}")
    for n in (50, 100, 200):
        res = {"plain": [], "boost": [], "feature": [], "flops": []}
        for s in range(seeds):
            perm = np.random.default_rng(s).permutation(len(keys))
            tr, te = perm[:n], perm[n : n + 2000]
            a_tr, a_te = [archs[i] for i in tr], [archs[i] for i in te]
            res["plain"].append(kendall_tau(GBDTPredictor(space.choices, seed=s).fit(a_tr, y[tr]).predict(a_te), y[te]))
            for mode in ("boost", "feature"):
                pre = PretrainedGBDTPredictor(space.choices, mode=mode, seed=s)
                pool = perm[n + 2000 : n + 2000 + 3000]  # unlabelled archs for pretraining (free statistics only)
                pre.pretrain([archs[i] for i in pool], {k: v[pool] for k, v in free.items()})
                res[mode].append(kendall_tau(pre.fit(a_tr, y[tr]).predict(a_te), y[te]))
            res["flops"].append(kendall_tau(free["flops"][te], y[te]))
        f = {k: f"{np.mean(v):.3f} +- {np.std(v):.3f}" for k, v in res.items()}
        print(f"{n:>6} {f['plain']:>14} {f['boost']:>20} {f['feature']:>22} {np.mean(res['flops']):>12.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="/tmp/proxies_naslib.jsonl", help="our proxy scores (proxies_naslib.py)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=20)
    ap.add_argument("--skip-gbdt", action="store_true")
    ap.add_argument("--skip-robot", action="store_true")
    ap.add_argument("--skip-naslib-pool", action="store_true", help="RoBoT only on the pool of our own scores")
    args = ap.parse_args()
    table = load_nb201(DATA / "benchmarks" / "nb201", dataset="cifar10")
    naslib = json.loads((DATA / "benchmarks" / "naslib_zc" / "zc_nasbench201_subset725.json").read_text())["cifar10"]
    keys = [to_nb201_string(naslib_arch(k)) for k in naslib]
    scores = {
        p: np.array([naslib[k].get(p, {}).get("score", np.nan) for k in naslib], dtype=float) for p in ROBOT_PROXIES
    }
    if not args.skip_robot and not args.skip_naslib_pool:
        robot_pool("NASLib's 725 archs, NASLib's proxy scores", keys, scores, table, args.seeds, args.budget)
    cache = Path(args.cache)
    if cache.exists() and not args.skip_robot:
        recs: dict[str, dict] = {}
        for line in cache.read_text().splitlines():
            rec = json.loads(line)
            recs[rec["arch"]] = rec
        ours = [p for p in ROBOT_PROXIES if all(p in r["scores"] for r in recs.values())]
        ks = list(recs)
        ours_scores = {p: np.array([recs[k]["scores"][p] for k in ks], dtype=float) for p in ours}
        keys2 = [to_nb201_string(naslib_arch(k)) for k in ks]
        robot_pool(
            f"{len(ks)} archs, our proxy scores ({', '.join(ours)})", keys2, ours_scores, table, args.seeds, args.budget
        )
    if not args.skip_gbdt:
        gbdt(table, args.seeds)


if __name__ == "__main__":
    main()
